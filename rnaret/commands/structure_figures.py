"""`rnaret structure-figures`: per-sequence F1 distribution and example contact maps of one
structure model's test predictions.

    rnaret structure-figures --truth resources/structure/bprna_test.csv \\
        --prediction MFE=results/structure/bprna/vienna/predictions.dbn \\
        --prediction MEA=results/structure/bprna/vienna/predictions_mea.dbn \\
        --title "vienna on bprna" --f1-png f1.png --maps-png maps.png

Predictions and truth are any structure format ``rnaret.io.structure.read_structures`` reads,
matched by id; per-sequence F1 is ``rnaret.metrics.structure_scores`` (the tables' F1). With
``--per-sequence`` (the per-sequence TSV a structure rule wrote, e.g. ViennaRNA's
``per_sequence.tsv`` with ``mfe_f1`` and ``mea_f1``), the distributions are read from its F1
columns instead, one per column (label: the prefix in upper case). The contact maps show the first prediction's ``--examples`` sequences, picked at evenly spaced length
quantiles among the sequences with at least one true pair.
"""
from __future__ import annotations

import sys

HELP = "plot per-sequence F1 distributions and predicted vs true contact maps of structure predictions"


def add_arguments(parser) -> None:
    parser.add_argument("--truth", required=True, help="the test split (table, .dbn, .ct, .bpseq folder)")
    parser.add_argument("--split", default=None,
                        help="rows of the truth table whose `split` column equals this value")
    parser.add_argument("--prediction", action="append", required=True, metavar="LABEL=PATH",
                        help="predicted structures, labelled (repeat for variants, e.g. MFE=..., MEA=...)")
    parser.add_argument("--per-sequence", default=None,
                        help="per-sequence scores TSV (`id` and `f1` or `<label>_f1` columns, e.g. "
                             "`mfe_f1`, `mea_f1`): F1 distributions from it instead of from --prediction")
    parser.add_argument("--title", default="", help="figure title (e.g. 'vienna on bprna')")
    parser.add_argument("--f1-png", required=True, help="per-sequence F1 histogram and violin (PNG)")
    parser.add_argument("--maps-png", required=True, help="predicted vs true contact maps (PNG)")
    parser.add_argument("--examples", type=int, default=4, help="sequences in the contact-map figure (default 4)")


def parse_labelled(items: list[str]) -> list[tuple[str, str]]:
    """``["MFE=a.dbn", "b.dbn"]`` -> ``[("MFE", "a.dbn"), ("b", "b.dbn")]`` (label: file stem)."""
    from pathlib import Path

    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).name.split(".")[0], item
        out.append((label, path))
    return out


def read_per_sequence_f1(path, ids) -> dict[str, list[float]]:
    """F1 columns of a per-sequence TSV: ``{label: values in the order of ids}``.

    Columns ``f1`` (label "F1") and ``<prefix>_f1`` (label "<PREFIX>"); ``id`` must list every id
    of ``ids``. Raises ``InputError`` for a missing column or id, or a value that is not a number.
    """
    import csv

    from rnaret.io.errors import InputError

    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        columns = reader.fieldnames or []
        f1_columns = [c for c in columns if c == "f1" or c.endswith("_f1")]
        if "id" not in columns or not f1_columns:
            raise InputError(path, f"needs an 'id' column and 'f1' or '<label>_f1' columns; found {columns}")
        rows = {}
        for row in reader:
            rows[row["id"]] = row
    out = {}
    for column in f1_columns:
        label = "F1" if column == "f1" else column[: -len("_f1")].upper()
        values = []
        for rid in ids:
            if rid not in rows:
                raise InputError(path, "no per-sequence row for a test sequence", record=rid)
            try:
                values.append(float(rows[rid][column]))
            except ValueError:
                raise InputError(path, f"{column} {rows[rid][column]!r} is not a number", record=rid) from None
        out[label] = values
    return out


def pick_examples(records, count: int) -> list:
    """``count`` records at evenly spaced length quantiles among those with a true pair
    (deterministic: ties broken by id)."""
    pool = sorted((r for r in records if r.pairs), key=lambda r: (len(r.sequence), r.id)) or \
        sorted(records, key=lambda r: (len(r.sequence), r.id))
    if count >= len(pool):
        return pool
    step = len(pool) / count
    return [pool[int(step * (i + 0.5))] for i in range(count)]


def run(args) -> int:
    from rnaret.figures import plot_contact_maps, plot_f1_distribution
    from rnaret.io.errors import InputError
    from rnaret.io.structure import read_structures
    from rnaret.metrics import structure_scores

    if args.examples < 1:
        raise InputError(None, f"--examples must be >= 1, got {args.examples}")
    truth = list(read_structures(args.truth, args.split))
    by_id = {r.id: r for r in truth}
    f1s, first = {}, None
    for label, path in parse_labelled(args.prediction):
        predicted = {r.id: r for r in read_structures(path)}
        missing = [i for i in by_id if i not in predicted]
        if missing:
            raise InputError(path, f"no prediction for {len(missing)} test sequence(s), e.g. {missing[0]!r}")
        for rid, rec in predicted.items():
            if rid in by_id and len(rec.sequence) != len(by_id[rid].sequence):
                raise InputError(path, f"predicted length {len(rec.sequence)} != true length "
                                       f"{len(by_id[rid].sequence)}", record=rid)
        _, per_sequence = structure_scores([r.pairs for r in truth], [predicted[i].pairs for i in by_id])
        f1s[label] = [s["f1"] for s in per_sequence]
        if first is None:
            first = (label, predicted)
    if args.per_sequence:
        f1s = read_per_sequence_f1(args.per_sequence, list(by_id))
    title = args.title or "structure predictions"
    plot_f1_distribution(f1s, args.f1_png, f"Per-sequence base-pair F1: {title}")
    label, predicted = first
    examples = [(r.id, len(r.sequence), r.pairs, predicted[r.id].pairs)
                for r in pick_examples(truth, args.examples)]
    plot_contact_maps(examples, args.maps_png, f"{title} ({label})" if len(f1s) > 1 else title)
    summary = ", ".join(f"{k} mean F1 {sum(v) / len(v):.4f}" for k, v in f1s.items())
    print(f"rnaret structure-figures: {len(truth)} sequences; {summary}", file=sys.stderr)
    return 0
