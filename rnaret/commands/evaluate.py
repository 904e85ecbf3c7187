"""`rnaret evaluate`: score a fine-tuned checkpoint (ours, or a released fine-tuned published
``.pth``) on one split of a dataset, without training.

``--protocol published`` computes what the published scripts compute (docs/protocol.md).
Writes into ``--out``: ``metrics.tsv`` (``metric<TAB>value``, with a ``protocol`` row and the
counts of what reading left out), ``predictions.tsv`` (one row per
input, in input order) and the task's figures (``roc.png`` for interaction and coding).
"""
from __future__ import annotations

HELP = "evaluate a fine-tuned (or released fine-tuned published) model on a test split"


def add_arguments(parser) -> None:
    from rnaret.commands.finetune import add_split_arguments
    from rnaret.tasks import TASKS

    parser.add_argument("--checkpoint", required=True,
                        help="fine-tuned checkpoint folder, or a released fine-tuned .pth (needs --task)")
    parser.add_argument("--task", choices=sorted(TASKS), default=None,
                        help="the task (read from the checkpoint folder; required for a .pth)")
    parser.add_argument("--eval-split", default="test", help="which split to evaluate (default test)")
    parser.add_argument("--out", required=True, help="output folder for metrics.tsv, predictions, figures")
    add_split_arguments(parser)


def run(args) -> int:
    from rnaret.io.errors import InputError
    from rnaret.checkpoint.finetuned import is_finetuned_checkpoint, read_task_meta
    from rnaret.tasks.protocol import DEFAULT_PROTOCOL, protocol_precision
    from rnaret.tasks.run import dataset_entry, run_evaluate, task_settings

    from rnaret.commands.finetune import set_threads

    set_threads(args.threads)
    task_name = args.task
    if task_name is None:
        if not is_finetuned_checkpoint(args.checkpoint):
            raise InputError(args.checkpoint, "not a fine-tuned checkpoint folder; give --task for a .pth")
        task_name = read_task_meta(args.checkpoint)["task"]
    entry = dataset_entry(task_name, args.dataset_config, args.dataset, args.split, labels=args.labels)
    settings = task_settings(task_name, args.settings, args.set, protocol=args.protocol)
    precision = protocol_precision(settings.get("protocol") or DEFAULT_PROTOCOL, args.precision)
    try:
        run_evaluate(args.checkpoint, entry, args.out, split=args.eval_split, task_name=task_name,
                     settings=settings, device=args.device, progress=not args.quiet, precision=precision)
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(args.settings, str(exc)) from None
    return 0
