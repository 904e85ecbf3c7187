"""`rnaret embed FASTA --checkpoint PATH --out FILE`: sequence and per-nucleotide embeddings.

The whole FASTA is read and checked before any work, so bad input (empty file, no records, a
record with no sequence, binary data, a truncated gzip, a non-nucleotide letter) stops with an
error naming the file and the record, and the output file is never created. The output layout
is documented in ``rnaret.embed`` and the README.
"""
from __future__ import annotations

import argparse
import sys

HELP = "Embed the sequences of a FASTA file (plain or gzipped) with an encoder checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fasta", help="FASTA file, plain or gzipped, sequences of any length")
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint directory (config.json + weights.safetensors), "
                             ".safetensors file or published .pth")
    from rnaret.cli import add_model_run_arguments, add_out_argument

    add_out_argument(parser, "output .safetensors file (written atomically)")
    parser.add_argument("--batch-tokens", type=int, default=16384,
                        help="token budget per batch (longest x count); default 16384")
    add_model_run_arguments(parser)
    parser.add_argument("--per-nucleotide", action=argparse.BooleanOptionalAction, default=True,
                        help="also write one row per nucleotide (default: yes)")
    parser.add_argument("--pool", choices=("mean", "max"), default="mean",
                        help="per-sequence pooling over positions (default mean)")
    parser.add_argument("--representation", choices=("last_inner_state", "hidden"),
                        default="last_inner_state",
                        help="last layer before the final norm (default, what task heads read) "
                             "or after it")


def run(args) -> int:
    from rnaret.checkpoint import load_encoder
    from rnaret.cli import plural
    from rnaret.commands.finetune import set_threads
    from rnaret.device import resolve_device
    from rnaret.embed import embed_sequences, write_embeddings
    from rnaret.io.errors import InputError
    from rnaret.io.fasta import read_sequences
    from rnaret.precision import configure_precision

    if args.batch_tokens < 1:
        raise InputError(None, f"--batch-tokens must be >= 1, got {args.batch_tokens}")
    set_threads(args.threads)
    device = resolve_device(args.device)
    precision = configure_precision(device, args.precision)
    ids, sequences = [], []
    for record in read_sequences(args.fasta):
        ids.append(record.id)
        sequences.append(record.sequence)
    model = load_encoder(args.checkpoint, device=device)
    result = embed_sequences(model, ids, sequences, batch_tokens=args.batch_tokens,
                             device=device, precision=precision, per_nucleotide=args.per_nucleotide,
                             pool=args.pool, representation=args.representation,
                             progress=not args.quiet)
    if result.n_shorter_than_k:
        print(f"rnaret embed: warning: {plural(result.n_shorter_than_k, 'sequence')} shorter than "
              f"k={model.config.k} {'gives' if result.n_shorter_than_k == 1 else 'give'} only FILL tokens "
              f"(no sequence information at this k)",
              file=sys.stderr)
    write_embeddings(result, args.out,
                     {"checkpoint": str(args.checkpoint), "fasta": str(args.fasta)})
    print(f"rnaret embed: {plural(len(ids), 'sequence')}, {int(result.lengths.sum()):,} nt -> {args.out}",
          file=sys.stderr)
    return 0
