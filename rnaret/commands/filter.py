"""`rnaret filter`: apply the length policy (minimum length; long sequences kept, split, dropped or cut)."""
from __future__ import annotations

HELP = "apply the length policy to a FASTA corpus (windows 'id/start-end' for long sequences)"


def add_arguments(parser) -> None:
    parser.add_argument("input", help="FASTA (plain or gzip)")
    parser.add_argument("-o", "--output", required=True, help="output FASTA (.gz: gzipped)")
    parser.add_argument("--min-length", type=int, default=10, help="drop sequences shorter than this (nt; default 10)")
    parser.add_argument("--max-length", type=int, default=2000,
                        help="what counts as long (nt; default 2000): see --long")
    parser.add_argument("--long", choices=("keep", "split", "drop", "cut"), default="split",
                        help="longer sequences: kept whole, split into overlapping windows (default), dropped, or cut "
                             "to their first --max-length nt (counted)")
    parser.add_argument("--window", type=int, default=None, help="window length (default: max length)")
    parser.add_argument("--overlap", type=int, default=200, help="overlap of split windows (nt; default 200)")
    parser.add_argument("--counts", help="write the stage counts (JSON) here")


def run(args) -> int:
    from rnaret.data.cleanup import exit_on_sigterm

    exit_on_sigterm()
    from rnaret.data.lengths import LengthPolicy, apply_length_policy

    policy = LengthPolicy(args.min_length, args.max_length, args.long, args.window, args.overlap)
    c = apply_length_policy(args.input, args.output, policy, args.counts)
    print(f"filter: {c['records_in']} in, {c['too_short']} too short, {c['long']} longer than "
          f"{policy.max_length} ({args.long}: {c['windows_written']} windows, {c['long_cut']} cut), "
          f"{c['records_out']} out", flush=True)
    return 0
