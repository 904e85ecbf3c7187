"""`rnaret classify`: coding probability of each transcript of a FASTA with a fine-tuned coding model.

Output TSV (atomic), one row per record in input order: ``id``, ``length``, ``score`` (the best
30-nt window's mean CDS probability), ``prediction`` (``coding`` when score >= 0.5, else
``noncoding``), ``window_start`` (1-based start of the best window). With ``--positions``,
a second TSV (gzipped when it ends in .gz) holds ``id`` and ``probabilities``: the per-position
CDS probabilities, comma-separated, 3 decimals.
"""
from __future__ import annotations

HELP = "coding probability per transcript of a FASTA (fine-tuned coding model)"


def add_arguments(parser) -> None:
    parser.add_argument("fasta", help="transcripts (FASTA, plain or .gz); U or T")
    parser.add_argument("--checkpoint", required=True,
                        help="fine-tuned coding checkpoint folder, or a released lnc_*_5mer.pth")
    from rnaret.cli import add_model_run_arguments, add_out_argument

    add_out_argument(parser, "output TSV (id, length, score, prediction, window_start)")
    parser.add_argument("--positions", default=None, metavar="FILE",
                        help="also write per-position CDS probabilities here (TSV; .gz: gzipped)")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="token budget per batch (default: the checkpoint's eval_max_tokens)")
    add_model_run_arguments(parser)


def run(args) -> int:
    import gzip
    import sys

    import numpy as np
    import torch

    from rnaret.data.progress import progress
    from rnaret.io.atomic import atomic_open, atomic_path
    from rnaret.io.errors import InputError
    from rnaret.device import resolve_device
    from rnaret.precision import autocast, configure_precision
    from rnaret.tasks.finetune import make_batches
    from rnaret.tasks.run import load_for_evaluation
    from rnaret.io.transcripts import read_transcripts

    from rnaret.cli import plural
    from rnaret.commands.finetune import set_threads

    set_threads(args.threads)
    if args.max_tokens is not None and args.max_tokens < 1:
        raise InputError(None, f"--max-tokens must be positive, got {args.max_tokens}")
    transcripts = list(read_transcripts(args.fasta, labelled=False))  # bad input stops before the model loads
    task, model = load_for_evaluation(args.checkpoint, "coding")
    examples = [task.example(t, args.fasta) for t in transcripts]
    device = resolve_device(args.device)
    precision = configure_precision(device, args.precision)
    model.to(device).eval()
    budget = int(args.max_tokens or task.settings["eval_max_tokens"])
    window = int(task.settings.get("window") or 30)
    rows: list = [None] * len(examples)
    tracks: list = [None] * len(examples)
    print(f"rnaret classify: {plural(len(examples), 'transcript')} from {args.fasta}, k={task.k}, device {device}, {precision}",
          file=sys.stderr)
    with torch.no_grad(), progress(total=len(examples), desc="classify", unit="seq", disable=args.quiet) as bar:
        for indices in make_batches([len(e.tokens) for e in examples], max_tokens=budget):
            batch = task.collate([examples[i] for i in indices]).to(device)
            with autocast(device, precision):
                output = model(batch.tokens, batch.padding_mask)
            output = output.float()
            probabilities = task.position_probabilities(output, batch)
            for i, row, probs in zip(indices, task.predict(output, batch), probabilities):
                padded = np.pad(probs, (0, max(0, window - len(probs))))
                means = np.convolve(padded, np.ones(window) / window, mode="valid")
                rows[i] = (row["id"], row["length"], row["score"],
                           "coding" if row["prediction"] else "noncoding", int(np.argmax(means)) + 1)
                tracks[i] = probs
            bar.update(len(indices))
    with atomic_open(args.out) as handle:
        handle.write("id\tlength\tscore\tprediction\twindow_start\n")
        for rid, length, score, label, start in rows:
            handle.write(f"{rid}\t{length}\t{score:.6g}\t{label}\t{start}\n")
    if args.positions:
        with atomic_path(args.positions) as tmp:
            opener = gzip.open if str(args.positions).endswith(".gz") else open
            with opener(tmp, "wt") as handle:
                handle.write("id\tprobabilities\n")
                for (rid, *_), probs in zip(rows, tracks):
                    handle.write(rid + "\t" + ",".join(f"{p:.3f}" for p in probs) + "\n")
    n_coding = sum(r[3] == "coding" for r in rows)
    print(f"rnaret classify: {n_coding} coding, {len(rows) - n_coding} noncoding -> {args.out}", file=sys.stderr)
    return 0
