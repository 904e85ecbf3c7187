"""`rnaret leakage-report`: the leakage stage's figure, its closest pairs and the combined
within-dataset homology table, for the report."""
from __future__ import annotations

import json
from pathlib import Path

HELP = "draw the leakage figure and write the 10 closest pairs and the combined homology table"


def add_arguments(parser) -> None:
    parser.add_argument("--hits", required=True, help="hits table of `rnaret leakage` (TSV[.gz])")
    parser.add_argument("--table", required=True, help="per-split table of `rnaret leakage`")
    parser.add_argument("--counts", required=True, help="stage JSON of `rnaret leakage` (thresholds)")
    parser.add_argument("--figure", required=True, help="output PNG")
    parser.add_argument("--closest", required=True, help="output TSV: the closest removed pairs")
    parser.add_argument("--closest-count", type=int, default=10, help="how many pairs (default 10)")
    parser.add_argument("--homology", nargs="*", default=[], help="tables of `rnaret homology`")
    parser.add_argument("--homology-table", help="output TSV: the homology tables combined")


def run(args) -> int:
    from rnaret.data.leakage_report import CLOSEST_COLUMNS, closest_pairs, combine_tables, plot_leakage, \
        read_tsv
    from rnaret.data.homology import write_table

    hits = read_tsv(args.hits)
    counts = json.loads(Path(args.counts).read_text(encoding="utf-8"))
    plot_leakage(hits, read_tsv(args.table), counts["thresholds"], args.figure,
                 title=f"corpus leakage ({counts['records_removed_identical']} identical, "
                       f"{counts['records_removed_similar']} similar records removed)")
    write_table(args.closest, closest_pairs(hits, args.closest_count), CLOSEST_COLUMNS)
    if args.homology_table:
        combine_tables(args.homology, args.homology_table)
    return 0
