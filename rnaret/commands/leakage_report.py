"""`rnaret leakage-report`: the leakage stage's figure and closest pairs, and the within-dataset
homology tables combined, for the report."""
from __future__ import annotations

import json
import sys
from pathlib import Path

HELP = "draw the leakage figure, write the closest removed pairs, combine the homology tables"
CORPUS_OPTIONS = ("hits", "table", "counts", "figure", "closest")


def add_arguments(parser) -> None:
    corpus = parser.add_argument_group("the corpus (all five together)")
    corpus.add_argument("--hits", help="hits table of `rnaret leakage` (TSV[.gz])")
    corpus.add_argument("--table", help="per-split table of `rnaret leakage`")
    corpus.add_argument("--counts", help="stage JSON of `rnaret leakage` (thresholds)")
    corpus.add_argument("--figure", help="output PNG")
    corpus.add_argument("--closest", help="output TSV: the closest removed pairs")
    corpus.add_argument("--closest-count", type=int, default=10, help="how many pairs (default 10)")
    homology = parser.add_argument_group("within datasets")
    homology.add_argument("--homology", nargs="*", default=[], help="tables of `rnaret homology`")
    homology.add_argument("--homology-table", help="output TSV: the homology tables combined")


def run(args) -> int:
    from rnaret.data.leakage_report import CLOSEST_COLUMNS, closest_pairs, combine_tables, plot_leakage, \
        read_tsv, write_tsv

    given = [name for name in CORPUS_OPTIONS if getattr(args, name)]
    if given and len(given) != len(CORPUS_OPTIONS):
        missing = [f"--{n}" for n in CORPUS_OPTIONS if n not in given]
        print(f"rnaret leakage-report: error: also give {', '.join(missing)}", file=sys.stderr)
        return 2
    if not given and not args.homology_table:
        print("rnaret leakage-report: error: nothing to do (give the corpus options or "
              "--homology-table)", file=sys.stderr)
        return 2
    if given:
        hits = read_tsv(args.hits)
        counts = json.loads(Path(args.counts).read_text(encoding="utf-8"))
        plot_leakage(hits, read_tsv(args.table), counts["thresholds"], args.figure,
                     title=f"corpus leakage: {counts['records_removed_identical']} identical and "
                           f"{counts['records_removed_similar']} similar records removed")
        write_tsv(args.closest, closest_pairs(hits, args.closest_count), CLOSEST_COLUMNS)
    if args.homology_table:
        combine_tables(args.homology, args.homology_table)
    return 0
