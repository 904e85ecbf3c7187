"""`rnaret normalize`: validate a corpus FASTA and write it with U read as T (before seqkit rmdup)."""
from __future__ import annotations

HELP = "validate a FASTA corpus and write it with U->T (headers kept), counting records and letters"


def add_arguments(parser) -> None:
    parser.add_argument("input", help="FASTA (plain or gzip)")
    parser.add_argument("-o", "--output", required=True, help="output FASTA (.gz: gzipped)")
    parser.add_argument("--counts", help="write the stage counts (JSON) here")


def run(args) -> int:
    from rnaret.data.cleanup import exit_on_sigterm

    exit_on_sigterm()
    from rnaret.data.corpus import normalize_corpus

    counts = normalize_corpus(args.input, args.output, args.counts)
    print(f"normalize: {counts['records_out']} records, {counts['records_with_U']} written in U, "
          f"{counts['records_with_non_ACGTU']} with non-ACGTU letters, "
          f"{counts['duplicate_ids']} duplicate ids", flush=True)
    return 0
