"""`rnaret leakage`: drop corpus records that hold a downstream validation/test sequence,
identical (first pass) or similar (MMseqs2 search, second pass)."""
from __future__ import annotations

import json
import sys

HELP = ("remove corpus records identical or similar (MMseqs2: contained, near-identical) to "
        "downstream valid/test sequences")


def add_threshold_arguments(parser) -> None:
    """--min-identity, --min-test-coverage, --max-evalue, --threads, --memory-mb, --tmp-dir, --mmseqs
    (shared by `rnaret leakage` and `rnaret homology`)."""
    from rnaret.data.similarity import Thresholds

    defaults = Thresholds()
    parser.add_argument("--min-identity", type=float, default=defaults.min_identity,
                        help="identical positions / aligned columns (default %(default)s)")
    parser.add_argument("--min-test-coverage", type=float, default=defaults.min_test_coverage,
                        help="aligned fraction of the test sequence (default %(default)s)")
    parser.add_argument("--max-evalue", type=float, default=defaults.max_evalue,
                        help="chance alignments this good expected in the whole searched set "
                             "(default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="MMseqs2 threads")
    parser.add_argument("--memory-mb", type=int, default=None,
                        help="MMseqs2 --split-memory-limit in MiB (default: all it finds)")
    parser.add_argument("--tmp-dir", default=None,
                        help="scratch folder for MMseqs2 (holds one plain copy of the searched "
                             "sequences; default $TMPDIR)")
    parser.add_argument("--mmseqs", default=None, help="the mmseqs binary (default: on PATH)")


def add_arguments(parser) -> None:
    parser.add_argument("input", help="corpus FASTA (plain or gzip)")
    parser.add_argument("-o", "--output", required=True, help="output FASTA (.gz: gzipped)")
    parser.add_argument("--datasets", required=True,
                        help="a `datasets:` mapping (local paths) as JSON text or a JSON/YAML file")
    parser.add_argument("--splits", default="valid,test", help="comma-separated splits to check")
    parser.add_argument("--table", required=True, help="per-split counts table (TSV)")
    parser.add_argument("--hits", help="the significant alignments found (TSV; .gz: gzipped)")
    parser.add_argument("--counts", help="write the stage counts (JSON) here")
    add_threshold_arguments(parser)


def load_mapping(text: str) -> dict:
    """The ``--datasets`` mapping: JSON text (what the rules pass), or a JSON/YAML file read by
    ``rnaret.io.mapping.read_mapping``; ``InputError`` when it is neither."""
    from rnaret.io.errors import InputError

    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError("--datasets", f"not valid JSON: {exc.msg}", line=exc.lineno, column=exc.colno) from None
        if not isinstance(data, dict):
            raise InputError("--datasets", "must be a JSON object")
        return data
    from rnaret.io.mapping import read_mapping

    return read_mapping(text)


def thresholds_from(args):
    """The ``Thresholds`` of the parsed arguments (``ValueError`` naming a bad one)."""
    from rnaret.data.similarity import Thresholds

    return Thresholds(min_identity=args.min_identity, min_test_coverage=args.min_test_coverage,
                      max_evalue=args.max_evalue)


def run(args) -> int:
    from rnaret.data.cleanup import exit_on_sigterm

    exit_on_sigterm()
    from rnaret.settings.dataset_sources import split_sources
    from rnaret.data.leakage import remove_leakage
    from rnaret.data.similarity import MMseqsError

    try:
        thresholds = thresholds_from(args)
    except ValueError as exc:
        print(f"rnaret leakage: error: {exc}", file=sys.stderr)
        return 2
    sources = split_sources(load_mapping(args.datasets), splits=tuple(args.splits.split(",")))
    try:
        counts = remove_leakage(args.input, args.output, sources, args.table, args.counts,
                                hits_path=args.hits, thresholds=thresholds, threads=args.threads,
                                memory_mb=args.memory_mb, tmp_dir=args.tmp_dir, mmseqs=args.mmseqs,
                                log=sys.stdout)
    except MMseqsError as exc:
        print(f"rnaret leakage: error: {exc}", file=sys.stderr)
        return 1
    print(f"leakage: {counts['records_removed']} of {counts['records_in']} records removed "
          f"({counts['records_removed_identical']} identical, {counts['records_removed_similar']} "
          f"similar; {len(sources)} splits checked)", flush=True)
    return 0
