"""`rnaret scaling`: encoder forward time and peak memory against sequence length.

    rnaret scaling --output-tsv results/tables/length_scaling.tsv \\
        --output-md results/tables/length_scaling.md --output-png results/tables/length_scaling.png

Measures RNAret (chunkwise and parallel retention) and, when ``rnaret.model.transformer`` is
installed, the Transformer baseline; asking for ``--models transformer`` without it is an error.
Method and columns: ``rnaret.scaling``.
"""
from __future__ import annotations

import sys

HELP = "time and peak memory of the encoders' forward against sequence length (TSV, Markdown, PNG)"
DEFAULT_LENGTHS = (256, 512, 1024, 2048, 4096, 8192)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"expected integers separated by commas, got {text!r}") from None
    return values


def add_arguments(parser) -> None:
    parser.add_argument("--models", nargs="+", default=None,
                        help="series among rnaret-chunkwise, rnaret-parallel, transformer "
                             "(default: all that are installed)")
    parser.add_argument("--presets", nargs="+", default=["laptop"],
                        help="encoder sizes from the pretraining presets (laptop, paper, tiny; default laptop)")
    parser.add_argument("--lengths", type=_int_list, default=list(DEFAULT_LENGTHS),
                        help="sequence lengths in tokens, comma-separated (default 256,...,8192)")
    parser.add_argument("--k", type=int, default=1, choices=(1, 3, 5), help="tokenizer k (default 1)")
    parser.add_argument("--repeats", type=int, default=2, help="forwards per length; the fastest counts (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    from rnaret.precision import add_precision_argument

    add_precision_argument(parser)
    parser.add_argument("--max-seconds", type=float, default=15.0,
                        help="a series stops before a forward expected (extrapolated from the last "
                             "length by the form's complexity) to take longer than this (default 15 s)")
    parser.add_argument("--output-tsv", required=True, help="the measurements (TSV)")
    parser.add_argument("--output-md", default=None, help="Markdown table")
    parser.add_argument("--output-png", default=None, help="time and memory plot")
    parser.add_argument("--output-html", default=None, help="HTML table (for the report)")


def run(args) -> int:
    from rnaret import scaling
    from rnaret.io.errors import InputError
    from rnaret.train.config import PRESETS

    for name in args.presets:
        if name not in PRESETS:
            raise InputError(None, f"unknown preset {name!r}; choose from {', '.join(sorted(PRESETS))}")
    if args.repeats < 1 or args.threads < 1 or args.max_seconds <= 0:
        raise InputError(None, "--repeats and --threads must be >= 1 and --max-seconds > 0")
    models = scaling.check_models(args.models if args.models else scaling.default_models())
    if args.models is None and "transformer" not in models:
        print("rnaret scaling: the Transformer baseline is not installed; measuring RNAret only",
              file=sys.stderr)
    rows = scaling.measure(models, args.presets, args.lengths, k=args.k, repeats=args.repeats,
                           threads=args.threads, max_seconds=args.max_seconds, precision=args.precision,
                           log=lambda m: print(f"rnaret scaling: {m}", file=sys.stderr, flush=True))
    scaling.write_tsv(rows, args.output_tsv)
    if args.output_md:
        scaling.write_markdown(rows, args.output_md)
    if args.output_png:
        scaling.plot(rows, args.output_png)
    if args.output_html:
        scaling.write_html(rows, args.output_html)
    return 0
