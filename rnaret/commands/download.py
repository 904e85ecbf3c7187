"""`rnaret download`: fetch the corpus (HTTP(S), file:// or a local path) with resume and md5."""
from __future__ import annotations

import json
import os
from pathlib import Path

HELP = "download a file (HTTP(S) with resume, or copy a local one), checking its md5"


def add_arguments(parser) -> None:
    parser.add_argument("source", help="http(s):// or file:// URL, or a local path")
    parser.add_argument("-o", "--output", required=True, help="destination file")
    parser.add_argument("--md5", default="",
                        help="expected md5: 32 hex digits, or a checksum file (path or URL) with "
                             "'<md5>  <filename>' lines (RNAcentral's md5 layout)")
    parser.add_argument("--release", default="", help="release label recorded in --info")
    parser.add_argument("--info", help="write a JSON record (source, md5, bytes, release) here")
    parser.add_argument("--retries", type=int, default=5, help="resumed attempts after an interruption")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before retrying")


def run(args) -> int:
    from rnaret.data.cleanup import exit_on_sigterm

    exit_on_sigterm()
    from rnaret.data.download import fetch, resolve_md5, source_name
    from rnaret.io.atomic import atomic_open

    output = Path(args.output)
    expected = resolve_md5(args.md5, source_name(args.source), workdir=output.parent)
    got = fetch(args.source, output, md5=expected, retries=args.retries, timeout=args.timeout)
    print(f"download: {args.source} -> {output} md5 {got}"
          f"{' (checked)' if expected else ' (no checksum given)'}", flush=True)
    if args.info:
        with atomic_open(args.info, "w", encoding="utf-8") as handle:
            json.dump({"stage": "download", "source": args.source, "file": str(output),
                       "bytes": os.path.getsize(output), "md5": got, "md5_checked": bool(expected),
                       "checksum_source": args.md5 or None, "release": args.release}, handle, indent=2)
            handle.write("\n")
    return 0
