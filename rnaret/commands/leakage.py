"""`rnaret leakage`: drop corpus sequences that occur in downstream validation/test splits."""
from __future__ import annotations

import json
from pathlib import Path

HELP = "remove corpus records identical (case-insensitive, U=T) to downstream valid/test sequences"


def add_arguments(parser) -> None:
    parser.add_argument("input", help="corpus FASTA (plain or gzip)")
    parser.add_argument("-o", "--output", required=True, help="output FASTA (.gz: gzipped)")
    parser.add_argument("--datasets", required=True,
                        help="a `datasets:` mapping (local paths) as JSON text or a JSON/YAML file")
    parser.add_argument("--splits", default="valid,test", help="comma-separated splits to check")
    parser.add_argument("--table", required=True, help="per-split counts table (TSV)")
    parser.add_argument("--counts", help="write the stage counts (JSON) here")


def load_mapping(text: str) -> dict:
    """JSON text, or a .json/.yaml file holding the datasets mapping."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    import yaml

    return yaml.safe_load(Path(text).read_text(encoding="utf-8")) or {}


def run(args) -> int:
    from rnaret.data.cleanup import exit_on_sigterm

    exit_on_sigterm()
    from rnaret.settings.datasets import split_sources
    from rnaret.data.leakage import remove_leakage

    sources = split_sources(load_mapping(args.datasets), splits=tuple(args.splits.split(",")))
    counts = remove_leakage(args.input, args.output, sources, args.table, args.counts)
    print(f"leakage: {counts['records_removed']} of {counts['records_in']} records removed "
          f"({len(sources)} splits checked)", flush=True)
    return 0
