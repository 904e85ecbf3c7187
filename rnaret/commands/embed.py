"""`rnaret embed FASTA --checkpoint PATH --out FILE`: sequence and per-nucleotide embeddings.

The whole FASTA is read and checked before any work, so bad input (empty file, no records, a
record with no sequence, binary data, a truncated gzip, a non-nucleotide letter) stops with an
error naming the file and the record, and the output file is never created. The output layout
is documented in ``rnaret.embed`` and docs/outputs.md.

An output ending in ``.h5``/``.hdf5`` is streamed instead (``rnaret.embed_hdf5``): any number of
records with constant memory, ``--layers`` and ``--pool cls|none``, and a killed run resumes
where it stopped; a bad record stops it there, the records before it kept for the rerun.
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

    add_out_argument(parser, "output: .safetensors (written in one piece) or .h5/.hdf5 (streamed with "
                             "constant memory, every layer on request, resumable: docs/outputs.md)")
    parser.add_argument("--batch-tokens", type=int, default=16384,
                        help="token budget per batch (longest x count); default 16384")
    add_model_run_arguments(parser)
    parser.add_argument("--per-nucleotide", action=argparse.BooleanOptionalAction, default=None,
                        help=".safetensors: also write one row per nucleotide (default: yes); "
                             ".h5: --pool none gives those rows")
    parser.add_argument("--pool", choices=("mean", "max", "cls", "none"), default="mean",
                        help="per-sequence pooling over positions (default mean); cls: the first token's "
                             "state; none: one row per nucleotide (.h5 only)")
    parser.add_argument("--retention", default=None, metavar="LAYER,HEAD",
                        help="instead of embeddings: the (L, L) retention scores of encoder layer LAYER "
                             "(1..layers) and head HEAD (1..heads) for a FASTA of one sequence, to an --out .npy")
    parser.add_argument("--layers", default="last", metavar="all|last|LIST",
                        help="which layers (.h5 only): all, last (default) or a list such as 0,2 "
                             "(0 = the token embeddings, l = the output of layer l)")
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
    if args.retention is not None:
        return run_retention(args)
    if str(args.out).lower().endswith((".h5", ".hdf5")):
        return run_hdf5(args)
    if args.layers != "last" or args.pool in ("cls", "none"):
        raise InputError(None, "--layers and --pool cls/none write HDF5: give an --out ending in .h5")
    device = resolve_device(args.device)
    precision = configure_precision(device, args.precision)
    ids, sequences = [], []
    for record in read_sequences(args.fasta):
        ids.append(record.id)
        sequences.append(record.sequence)
    model = load_encoder(args.checkpoint, device=device)
    result = embed_sequences(model, ids, sequences, batch_tokens=args.batch_tokens,
                             device=device, precision=precision, per_nucleotide=args.per_nucleotide is not False,
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


def run_hdf5(args) -> int:
    """``--out X.h5``: stream the FASTA into HDF5 (``rnaret.embed_hdf5``), resuming a killed run."""
    from rnaret.checkpoint import load_encoder
    from rnaret.cli import plural
    from rnaret.device import resolve_device
    from rnaret.embed_hdf5 import embed_fasta_to_hdf5, embedding_options
    from rnaret.io.errors import InputError
    from rnaret.precision import configure_precision

    if args.per_nucleotide is not None:
        raise InputError(None, "--per-nucleotide is for .safetensors; with .h5, --pool none writes one row "
                               "per nucleotide")
    device = resolve_device(args.device)
    precision = configure_precision(device, args.precision)
    model = load_encoder(args.checkpoint, device=device)
    layers, pool = embedding_options(args.layers, args.pool, model.config.retnet_layers)
    done = embed_fasta_to_hdf5(model, args.fasta, args.out, layers=layers, pool=pool,
                               batch_tokens=args.batch_tokens, device=device, precision=precision,
                               progress=not args.quiet, metadata={"checkpoint": str(args.checkpoint)})
    resumed = f" ({done['resumed_from']:,} found done, {done['computed']:,} embedded now)" if done["resumed_from"] else ""
    print(f"rnaret embed: {plural(done['records'], 'sequence')}, {done['nucleotides']:,} nt, "
          f"{plural(len(layers), 'layer')} -> {args.out}{resumed}", file=sys.stderr)
    return 0


def run_retention(args) -> int:
    """``--retention LAYER,HEAD``: the retention scores of one sequence (``rnaret.embed.retention_map``)
    as an (L, L) float32 .npy, row n = how much each position weighs in position n's output."""
    import numpy as np

    from rnaret.checkpoint import load_encoder
    from rnaret.device import resolve_device
    from rnaret.embed import parse_retention, retention_map
    from rnaret.io.atomic import atomic_path
    from rnaret.io.errors import InputError
    from rnaret.io.fasta import read_sequences

    if not str(args.out).lower().endswith(".npy"):
        raise InputError(None, "--retention writes an (L, L) matrix: give an --out ending in .npy")
    records = []
    for record in read_sequences(args.fasta):
        records.append(record)
        if len(records) > 1:
            raise InputError(args.fasta, "--retention takes a FASTA of one sequence", record=record.id,
                             line=record.line)
    device = resolve_device(args.device)
    encoder = load_encoder(args.checkpoint, device=device)
    config = encoder.config
    layer, head = parse_retention(args.retention, config.retnet_layers, config.retnet_retention_heads)
    try:
        scores = retention_map(encoder, records[0].sequence, layer, head)
    except InputError as exc:  # the Transformer baseline has no retention: the checkpoint's fault
        raise InputError(args.checkpoint, exc.what) from None
    with atomic_path(args.out, suffix=".npy") as tmp:
        np.save(tmp, scores)
    print(f"rnaret embed: retention scores of layer {layer}, head {head} for {records[0].id} "
          f"({scores.shape[0]} x {scores.shape[1]}) -> {args.out}", file=sys.stderr)
    return 0
