"""`rnaret finetune`: fine-tune a task head (and the encoder) on a dataset; keep the best checkpoint.

Writes ``--out`` (a folder, atomically): ``task.json``, ``encoder/``, ``head.safetensors``,
``train_log.tsv`` (one row per validation). ``rnaret evaluate --checkpoint OUT`` scores it.
The run folder (``--run-dir``, default ``OUT.train``) holds a checkpoint per epoch: a rerun after
a kill continues from it when started from the same settings and inputs.
"""
from __future__ import annotations

HELP = "fine-tune a downstream task (interaction, coding, ...) from a pretrained checkpoint or onehot"


def add_split_arguments(parser) -> None:
    """The dataset options shared by finetune and evaluate."""
    parser.add_argument("--dataset-config", metavar="YAML",
                        help="pipeline config (uses datasets.TASK.DATASET) or a file holding one dataset "
                             "entry {train: PATH, valid: PATH, test: PATH}")
    parser.add_argument("--dataset", help="dataset name inside --dataset-config")
    parser.add_argument("--split", action="append", default=[], metavar="NAME=PATH[#VALUE]",
                        help="add or replace a split (repeatable), e.g. --split train=a.tsv; with "
                             "#VALUE only the rows whose split column is VALUE (train=t.tsv#train)")
    parser.add_argument("--labels", action="append", default=[], metavar="NAME=TABLE",
                        help="the side table of labels (id, label) of a split given as a FASTA "
                             "(repeatable; the generic tasks), e.g. --labels train=train_labels.tsv")
    parser.add_argument("--settings", metavar="YAML|JSON",
                        help="pipeline config (uses finetune.preset, finetune.TASK.settings and model_settings), "
                             "or a mapping of task settings: a YAML/JSON file or the JSON object itself")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one task setting (repeatable), e.g. --set epochs=2")
    from rnaret.device import add_device_argument
    from rnaret.precision import add_precision_argument

    add_device_argument(parser)
    add_precision_argument(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of torch (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    from rnaret.tasks.protocol import add_protocol_argument

    add_protocol_argument(parser)


def set_threads(threads: int | None) -> None:
    """Give torch ``threads`` CPU threads (None: leave torch's default); InputError when < 1."""
    from rnaret.io.errors import InputError

    if threads is None:
        return
    if threads < 1:
        raise InputError(None, f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def add_arguments(parser) -> None:
    from rnaret.tasks import TASKS

    parser.add_argument("--task", required=True, choices=sorted(TASKS), help="the downstream task")
    parser.add_argument("--init", required=True, metavar="CHECKPOINT|onehot",
                        help="pretrained encoder (our checkpoint folder or a published .pth), a fine-tuned "
                             "checkpoint to continue, or 'onehot' for the one-hot control")
    parser.add_argument("--out", required=True, help="output folder of the fine-tuned checkpoint")
    parser.add_argument("--model-name", default=None,
                        help="model name whose finetune.TASK.model_settings apply (with --settings)")
    parser.add_argument("--run-dir", default=None,
                        help="the resumable run folder, a checkpoint per epoch (default: OUT.train); a rerun "
                             "continues it when started from the same settings and inputs, else replaces it")
    parser.add_argument("--restart", action="store_true",
                        help="delete the run folder and start over instead of resuming")
    add_split_arguments(parser)


def run(args) -> int:
    from rnaret.io.errors import InputError
    from rnaret.tasks.protocol import DEFAULT_PROTOCOL, protocol_precision
    from rnaret.tasks.run import dataset_entry, run_finetune, task_settings

    set_threads(args.threads)
    entry = dataset_entry(args.task, args.dataset_config, args.dataset, args.split, labels=args.labels)
    model_name = args.model_name or ("onehot" if args.init == "onehot" else None)
    settings = task_settings(args.task, args.settings, args.set, model=model_name, protocol=args.protocol)
    precision = protocol_precision(settings.get("protocol") or DEFAULT_PROTOCOL, args.precision)
    try:
        run_finetune(args.task, entry, args.init, args.out, settings=settings, device=args.device,
                     progress=not args.quiet, precision=precision, run_dir=args.run_dir,
                     restart=args.restart)
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(args.settings, str(exc)) from None
    return 0
