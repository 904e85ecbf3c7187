"""`rnaret structure-figures`: per-sequence F1 distribution and example contact maps of one
structure model's test predictions.

    rnaret structure-figures --truth resources/structure/bprna_test.csv \\
        --prediction MFE=results/structure/bprna/vienna/predictions.dbn \\
        --prediction MEA=results/structure/bprna/vienna/predictions_mea.dbn \\
        --title "vienna on bprna" --f1-png f1.png --maps-png maps.png

F1 distributions come either from ``--prediction`` files (any structure format
``rnaret.io.structure.read_structures`` reads, matched to the truth by id and scored with
``rnaret.metrics.structure_scores``, the tables' F1), or from ``--per-sequence``: the per-sequence
TSV a structure rule wrote with that same code (ViennaRNA's ``per_sequence.tsv`` with ``mfe_f1``
and ``mea_f1``, a fine-tuned model's ``predictions.tsv`` with ``f1``), one distribution per F1
column (label: the column's prefix in upper case, ``--label`` for a plain ``f1``). The contact
maps show the first ``--prediction``'s structures of ``--examples`` sequences, picked at evenly
spaced length quantiles among the sequences with at least one true pair
(``rnaret.figures.pick_examples``).
"""
from __future__ import annotations

import sys

from rnaret.figures import pick_examples

HELP = "plot per-sequence F1 distributions and predicted vs true contact maps of structure predictions"


def add_arguments(parser) -> None:
    parser.add_argument("--truth", required=True, help="the test split (table, .dbn, .ct, .bpseq folder)")
    parser.add_argument("--split", default=None,
                        help="rows of the truth table whose `split` column equals this value")
    parser.add_argument("--prediction", action="append", default=[], metavar="[LABEL=]PATH",
                        help="predicted structures (repeat for variants, e.g. MFE=..., MEA=...); "
                             "needed for --maps-png")
    parser.add_argument("--per-sequence", default=None,
                        help="per-sequence scores TSV (`id` and `f1` or `<label>_f1` columns): the F1 "
                             "distributions are read from it instead of computed from --prediction")
    parser.add_argument("--label", default="F1", help="label of a plain `f1` column or unlabelled prediction")
    parser.add_argument("--title", default="", help="figure title (e.g. 'vienna on bprna')")
    parser.add_argument("--f1-png", default=None, help="per-sequence F1 histogram and violin (PNG)")
    parser.add_argument("--maps-png", default=None, help="predicted vs true contact maps (PNG)")
    parser.add_argument("--examples", type=int, default=4, help="sequences in the contact-map figure (default 4)")


def parse_labelled(items: list[str], default_label: str = "F1") -> list[tuple[str, str]]:
    """``["MFE=a.dbn", "b.dbn"]`` -> ``[("MFE", "a.dbn"), (default_label, "b.dbn")]``."""
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        out.append((label, path) if sep and label else (default_label, item))
    return out


def read_per_sequence_f1(path, ids, default_label: str = "F1") -> dict[str, list[float]]:
    """F1 columns of a per-sequence TSV: ``{label: values in the order of ids}``.

    Columns ``f1`` (label ``default_label``) and ``<prefix>_f1`` (label "<PREFIX>"); ``id`` must
    list every id of ``ids``. Raises ``InputError`` for a missing column or id, or a value that
    is not a number.
    """
    import csv

    from rnaret.io.errors import InputError

    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        columns = reader.fieldnames or []
        f1_columns = [c for c in columns if c == "f1" or c.endswith("_f1")]
        if "id" not in columns or not f1_columns:
            raise InputError(path, f"needs an 'id' column and 'f1' or '<label>_f1' columns; found {columns}")
        rows = {row["id"]: row for row in reader}
    out = {}
    for column in f1_columns:
        label = default_label if column == "f1" else column[: -len("_f1")].upper()
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


def read_predictions(path, truth_by_id: dict) -> dict:
    """``{id: StructureRecord}`` of a prediction file, checked against the truth: every test id
    predicted, at the true length. Raises ``InputError`` naming the file and record."""
    from rnaret.io.errors import InputError
    from rnaret.io.structure import read_structures

    predicted = {r.id: r for r in read_structures(path)}
    missing = [i for i in truth_by_id if i not in predicted]
    if missing:
        raise InputError(path, f"no prediction for {len(missing)} test sequence(s), e.g. {missing[0]!r}")
    for rid, true in truth_by_id.items():
        if len(predicted[rid].sequence) != len(true.sequence):
            raise InputError(path, f"predicted length {len(predicted[rid].sequence)} != true length "
                                   f"{len(true.sequence)}", record=rid)
    return predicted


def run(args) -> int:
    from rnaret.figures import plot_contact_maps, plot_f1_distribution
    from rnaret.io.errors import InputError
    from rnaret.io.structure import read_structures
    from rnaret.metrics import structure_scores

    if args.examples < 1:
        raise InputError(None, f"--examples must be >= 1, got {args.examples}")
    if not (args.f1_png or args.maps_png):
        raise InputError(None, "nothing to draw: give --f1-png and/or --maps-png")
    if args.maps_png and not args.prediction:
        raise InputError(None, "--maps-png needs a --prediction file")
    if args.f1_png and not (args.prediction or args.per_sequence):
        raise InputError(None, "--f1-png needs --prediction or --per-sequence")
    truth = list(read_structures(args.truth, args.split))
    by_id = {r.id: r for r in truth}
    predictions = [(label, read_predictions(path, by_id))
                   for label, path in parse_labelled(args.prediction, args.label)]
    if args.per_sequence:
        f1s = read_per_sequence_f1(args.per_sequence, list(by_id), args.label)
    else:
        f1s = {}
        for label, predicted in predictions:
            _, per_sequence = structure_scores([r.pairs for r in truth], [predicted[i].pairs for i in by_id])
            f1s[label] = [s["f1"] for s in per_sequence]
    title = args.title or "structure predictions"
    if args.f1_png:
        plot_f1_distribution(f1s, args.f1_png, f"Per-sequence base-pair F1: {title}")
    if args.maps_png:
        label, predicted = predictions[0]
        examples = [(r.id, len(r.sequence), r.pairs, predicted[r.id].pairs)
                    for r in pick_examples(truth, args.examples)]
        plot_contact_maps(examples, args.maps_png, f"{title} ({label})" if label != args.label else title)
    summary = ", ".join(f"{k} mean F1 {sum(v) / len(v):.4f}" for k, v in f1s.items())
    print(f"rnaret structure-figures: {len(truth)} sequences; {summary}", file=sys.stderr)
    return 0
