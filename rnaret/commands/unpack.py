"""`rnaret unpack`: download (or read), check and unpack a .tar.gz/.tgz/.tar/.zip archive.

    rnaret unpack https://zenodo.org/records/18313475/files/datasets.tar.gz \\
        --md5 0123...cdef --output-dir results/archives/datasets

The folder appears only when every member is in it, with ``.rnaret-archive.json`` listing them
(``rnaret.data.archive``); a refused member or a wrong checksum leaves no folder.
"""
from __future__ import annotations

HELP = "download (or read), md5-check and unpack a .tar.gz/.tgz/.tar/.zip archive into a folder, atomically"


def add_arguments(parser) -> None:
    """Options of `rnaret unpack`."""
    parser.add_argument("source", help="http(s):// or file:// URL, or a local path of the archive")
    parser.add_argument("-o", "--output-dir", required=True,
                        help="folder to unpack into (appears only when complete)")
    parser.add_argument("--md5", default="",
                        help="expected md5 of the archive: 32 hex digits, or a checksum file (path or URL) "
                             "with '<md5>  <filename>' lines; empty = unchecked (a warning)")
    parser.add_argument("--retries", type=int, default=5, help="further attempts after an interrupted transfer")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before an attempt is retried")
    parser.add_argument("--keep-download", action="store_true",
                        help="keep the downloaded archive beside the folder (default: delete it once unpacked)")


def run(args) -> int:
    """Unpack; prints one line with the member count, bytes and md5."""
    import sys

    from rnaret.data.archive import unpack
    from rnaret.data.cleanup import exit_on_sigterm

    exit_on_sigterm()
    if not args.md5:
        print(f"rnaret unpack: warning: no --md5 given; {args.source} is unpacked unchecked",
              file=sys.stderr, flush=True)
    result = unpack(args.source, args.output_dir, md5=args.md5 or None, retries=args.retries,
                    timeout=args.timeout, keep_download=args.keep_download)
    manifest = result.manifest
    verb = "unpacked" if result.extracted else "already unpacked"
    print(f"rnaret unpack: {verb} {manifest['archive']} ({manifest['format']}, md5 {manifest['md5']}"
          f"{' checked' if manifest['md5_checked'] else ' unchecked'}): {manifest['files']} files, "
          f"{manifest['bytes']} bytes in {result.output_dir}", flush=True)
    return 0
