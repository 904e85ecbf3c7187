"""`rnaret vienna`: the ViennaRNA baseline (model `vienna`) on a structure dataset.

Writes into ``--output-dir`` (each file atomically):

- ``metrics.tsv``: ``f1, precision, recall, f1_pk, precision_pk, recall_pk, n, n_pk`` of the MFE
  structures (of the MEA ones with ``--method mea``), then, whenever MEA was computed,
  ``mea_f1, mea_precision, mea_recall, mea_f1_pk, mea_precision_pk, mea_recall_pk``.
  Definitions in ``rnaret.metrics``.
- ``predictions.dbn``: the MFE structures (MEA with ``--method mea``), 3-line records;
  ``predictions_mea.dbn`` too with ``--method both``.
- ``per_sequence.tsv``: ``id, length, n_true_pairs`` and per method ``{m}_energy, {m}_n_pairs,
  {m}_precision, {m}_recall, {m}_f1, {m}_f1_pk`` (``NA`` where the true structure has no
  pseudoknot), for F1 distributions.
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

HELP = "fold a structure dataset with ViennaRNA (MFE and/or MEA) and score it"

PK_KEYS = ("f1", "precision", "recall", "f1_pk", "precision_pk", "recall_pk")


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True,
                        help="structure dataset: .csv/.tsv table, .dbn, .ct, .bpseq, or a folder of .bpseq/.ct "
                             "files (walked recursively)")
    parser.add_argument("--split", default=None,
                        help="read only the table rows whose 'split' column equals this value")
    parser.add_argument("--output-dir", required=True, help="folder for metrics.tsv and predictions")
    parser.add_argument("--threads", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--method", choices=("mfe", "mea", "both"), default="both",
                        help="structures to predict (default both: MFE is the main row)")
    parser.add_argument("--gamma", type=float, default=1.0, help="MEA weight gamma (default 1.0)")
    parser.add_argument("--max-bp-span", type=int, default=None,
                        help="maximum base-pair span (default: unlimited)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _format(value) -> str:
    if isinstance(value, float):
        return "NA" if value != value else repr(value)
    return str(value)


def run(args) -> int:
    from rnaret.io.atomic import atomic_open
    from rnaret.io.errors import InputError
    from rnaret.io.dataset_readers import read_dataset
    from rnaret.io.structure import StructureRecord, parse_dot_bracket, write_dbn
    from rnaret.metrics import structure_scores, write_metrics_tsv
    from rnaret.vienna import fold_many, normalize_sequence

    if args.threads < 1:
        raise InputError(None, f"--threads must be at least 1, got {args.threads}")
    if args.max_bp_span is not None and args.max_bp_span < 1:
        raise InputError(None, f"--max-bp-span must be positive, got {args.max_bp_span}")
    records = list(read_dataset(args.dataset, "structure", args.split))
    for rec in records:
        try:
            normalize_sequence(rec.sequence)
        except ValueError as exc:
            raise InputError(args.dataset, str(exc), record=rec.id) from None
    methods = ("mfe", "mea") if args.method == "both" else (args.method,)
    out = Path(args.output_dir)
    print(f"rnaret vienna: {len(records)} sequences from {args.dataset}, methods {'+'.join(methods)}, "
          f"gamma {args.gamma}, max_bp_span {args.max_bp_span or 'unlimited'}, {args.threads} process(es)",
          file=sys.stderr)
    start = time.perf_counter()
    preds = fold_many([r.sequence for r in records], methods, threads=args.threads, gamma=args.gamma,
                      max_bp_span=args.max_bp_span, progress=not args.quiet)
    seconds = time.perf_counter() - start

    true = [r.pairs for r in records]
    scores = {}
    predicted = {}
    for m in methods:
        structures = [getattr(p, f"{m}_structure") for p in preds]
        predicted[m] = [parse_dot_bracket(s, record=r.id) for s, r in zip(structures, records)]
        scores[m] = structure_scores(true, predicted[m])

    main = methods[0]
    metrics = dict(scores[main][0])
    if "mea" in methods:
        metrics.update({f"mea_{k}": scores["mea"][0][k] for k in PK_KEYS})
    write_metrics_tsv(metrics, out / "metrics.tsv")

    def as_records(m):
        return [StructureRecord(r.id, r.sequence, pairs) for r, pairs in zip(records, predicted[m])]

    write_dbn(as_records(main), out / "predictions.dbn")
    if len(methods) == 2:
        write_dbn(as_records("mea"), out / "predictions_mea.dbn")

    columns = ["id", "length", "n_true_pairs"]
    for m in methods:
        columns += [f"{m}_energy", f"{m}_n_pairs", f"{m}_precision", f"{m}_recall", f"{m}_f1", f"{m}_f1_pk"]
    with atomic_open(out / "per_sequence.tsv", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for k, (rec, pred) in enumerate(zip(records, preds)):
            row = [rec.id, len(rec.sequence), len(rec.pairs)]
            for m in methods:
                s = scores[m][1][k]
                row += [getattr(pred, f"{m}_energy"), s["n_pred"], s["precision"], s["recall"], s["f1"],
                        s["f1_pk"]]
            writer.writerow([_format(v) for v in row])

    summary = ", ".join(f"{m.upper()} F1 {scores[m][0]['f1']:.4f}" for m in methods)
    print(f"rnaret vienna: {summary} on {len(records)} sequences ({seconds:.1f} s); wrote {out}",
          file=sys.stderr)
    return 0
