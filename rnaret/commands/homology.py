"""`rnaret homology`: how many of a dataset's test (and valid) sequences have an identical or
similar sequence in its own train (and valid) split; reported, nothing removed."""
from __future__ import annotations

import sys

HELP = ("report how homologous each dataset's test/valid sequences are to its train/valid "
        "sequences (identity, then MMseqs2 with the leakage thresholds)")


def add_arguments(parser) -> None:
    from rnaret.commands.leakage import add_threshold_arguments

    parser.add_argument("--datasets", required=True,
                        help="the config's `datasets:` mapping as JSON text or a JSON/YAML file")
    parser.add_argument("--dataset", action="append", required=True, metavar="TASK/NAME",
                        help="dataset to check (repeat for several)")
    parser.add_argument("--table", required=True, help="one row per split and reference split (TSV)")
    parser.add_argument("--hits", help="best alignment of each similar sequence (TSV)")
    add_threshold_arguments(parser)


def run(args) -> int:
    from rnaret.commands.leakage import load_mapping, thresholds_from
    from rnaret.data.homology import HIT_COLUMNS, TABLE_COLUMNS, check_dataset
    from rnaret.data.leakage_report import write_tsv
    from rnaret.data.similarity import MMseqsError

    try:
        thresholds = thresholds_from(args)
    except ValueError as exc:
        print(f"rnaret homology: error: {exc}", file=sys.stderr)
        return 2
    datasets = load_mapping(args.datasets)
    rows, hits = [], []
    try:
        for spec in args.dataset:
            task, _, name = spec.partition("/")
            try:
                dataset_rows, dataset_hits = check_dataset(
                    datasets, task, name, thresholds=thresholds, threads=args.threads,
                    memory_mb=args.memory_mb, tmp_dir=args.tmp_dir, mmseqs=args.mmseqs, log=sys.stdout)
            except KeyError as exc:
                print(f"rnaret homology: error: {exc.args[0]}", file=sys.stderr)
                return 2
            rows += dataset_rows
            hits += dataset_hits
    except MMseqsError as exc:
        print(f"rnaret homology: error: {exc}", file=sys.stderr)
        return 1
    write_tsv(args.table, rows, TABLE_COLUMNS)
    if args.hits:
        write_tsv(args.hits, hits, HIT_COLUMNS)
    for row in rows:
        print(f"homology: {row['task']}/{row['dataset']}/{row['split']} in {row['reference']}: "
              f"{row['in_reference']} of {row['unique_sequences']} ({row['identical_in_reference']} "
              f"identical)", flush=True)
    return 0
