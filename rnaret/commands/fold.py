"""`rnaret fold`: secondary structures of the sequences of a FASTA with a fine-tuned structure model.

    rnaret fold my.fa --checkpoint results/structure/bprna/rnaret-k1/checkpoint --output my.dbn
    rnaret fold my.fa --checkpoint RNAStrAlign_1mer.pth --output my.ct --format ct

``--format`` (default: from the output's extension ``.dbn``/``.ct``, else dbn):
- ``dbn``: 3 lines per record (``>id``, sequence, dot-bracket; pseudoknots on ``[]``, ``{}`` ...);
- ``ct``: one multi-record CT file;
- ``bpseq``: ``--output`` is a folder with one ``<id>.bpseq`` per record (ids made file-safe:
  characters outside ``A-Za-z0-9._-`` become ``_``; a repeated name gets ``_2``).
``--pair-probabilities FILE``: ``.npz`` -> one (L, L) float32 array per record, keyed by id;
otherwise a TSV (gzipped when it ends in .gz) with ``id, i, j, probability`` for the pairs
i < j with probability >= 0.01. Every output is written atomically after all sequences are folded,
so a bad input leaves nothing behind.
"""
from __future__ import annotations

HELP = "predict secondary structures of a FASTA (fine-tuned structure model) as dot-bracket, bpseq or CT"
FORMATS = ("dbn", "bpseq", "ct")
MIN_LISTED_PROBABILITY = 0.01


def add_arguments(parser) -> None:
    parser.add_argument("fasta", help="RNA sequences (FASTA, plain or .gz; U or T, either case)")
    parser.add_argument("--checkpoint", required=True,
                        help="fine-tuned structure checkpoint folder, or a released RNAStrAlign_1mer.pth")
    parser.add_argument("--output", required=True, help="output file (dbn, ct) or folder (bpseq)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="dbn, bpseq or ct (default: from --output's extension, else dbn)")
    parser.add_argument("--pair-probabilities", default=None, metavar="FILE",
                        help="also write pair probabilities (.npz: full matrices; else TSV of pairs >= 0.01)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="pair probability threshold (default: the checkpoint's, 0.5 as published)")
    parser.add_argument("--max-length", type=int, default=3000,
                        help="refuse longer sequences (memory grows with length^2; 0 = no limit; default 3000)")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="pair-map pixels per batch, n * L^2 (default 2**19)")
    from rnaret.device import add_device_argument
    from rnaret.precision import add_precision_argument

    add_device_argument(parser)
    add_precision_argument(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of torch (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def output_format(args) -> str:
    """The format asked for, or the one the output's extension names (dbn by default)."""
    if args.format:
        return args.format
    name = str(args.output).lower()
    return "ct" if name.endswith(".ct") else "dbn"


def check_output_folder(path) -> None:
    """InputError when a bpseq output folder would replace a file, or a folder holding anything
    but ``.bpseq`` files (the output folder is replaced whole)."""
    from pathlib import Path

    from rnaret.io.errors import InputError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, "--format bpseq writes a folder, but a file of that name exists")
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if not p.name.endswith(".bpseq"))
        if foreign:
            raise InputError(path, f"refusing to replace a folder that holds other files: {foreign[:5]}")


def read_sequences(path, max_length: int) -> list:
    """FASTA records (``rnaret.io.fasta.read_fasta`` checks), each an ungapped sequence of at most
    ``max_length`` nt (0: no limit); InputError naming file, record and line otherwise."""
    from rnaret.fold import check_sequence
    from rnaret.io.errors import InputError
    from rnaret.io.fasta import read_fasta

    records = list(read_fasta(path))
    for record in records:
        check_sequence(record.sequence, path=path, record=record.id, line=record.line)
        if max_length and len(record.sequence) > max_length:
            raise InputError(path, f"the sequence is {len(record.sequence)} nt, longer than --max-length "
                                   f"{max_length} (memory grows with length^2)", record=record.id,
                             line=record.line)
    return records


def write_probabilities(path, ids: list[str], folded: list) -> None:
    """Pair probabilities of each record to ``path`` (.npz matrices or a TSV of pairs, see module doc)."""
    import gzip

    import numpy as np

    from rnaret.io.atomic import atomic_path

    name = str(path).lower()
    if name.endswith(".npz"):
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **{rid: f.probabilities for rid, f in zip(ids, folded)})
        return
    with atomic_path(path) as tmp:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(tmp, "wt") as handle:
            handle.write("id\ti\tj\tprobability\n")
            for rid, f in zip(ids, folded):
                rows, cols = np.nonzero(np.triu(f.probabilities >= MIN_LISTED_PROBABILITY, k=1))
                for i, j in zip(rows.tolist(), cols.tolist()):
                    handle.write(f"{rid}\t{i + 1}\t{j + 1}\t{f.probabilities[i, j]:.4f}\n")


def run(args) -> int:
    import sys

    from rnaret.device import resolve_device
    from rnaret.fold import load_structure_model, predict_structure
    from rnaret.precision import configure_precision
    from rnaret.io.atomic import atomic_dir, atomic_open
    from rnaret.io.errors import InputError
    from rnaret.io.structure import StructureRecord, format_bpseq, format_ct
    from rnaret.tasks.structure import file_names

    from rnaret.commands.finetune import set_threads

    set_threads(args.threads)
    fmt = output_format(args)
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InputError(None, f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.max_length < 0:
        raise InputError(None, f"--max-length must be >= 0, got {args.max_length}")
    if args.max_pairs is not None and args.max_pairs < 1:
        raise InputError(None, f"--max-pairs must be positive, got {args.max_pairs}")
    if fmt == "bpseq":
        check_output_folder(args.output)
    records = read_sequences(args.fasta, args.max_length)
    device = resolve_device(args.device)
    precision = configure_precision(device, args.precision)
    task, model = load_structure_model(args.checkpoint, device)
    print(f"rnaret fold: {len(records)} sequences from {args.fasta} (longest {max(len(r.sequence) for r in records)}"
          f" nt), model {args.checkpoint}, {device}, {precision}", file=sys.stderr)
    folded = predict_structure(model, [r.sequence for r in records], task=task, threshold=args.threshold,
                               max_pairs=args.max_pairs, precision=precision,
                               return_probabilities=bool(args.pair_probabilities),
                               progress=not args.quiet)
    ids = [r.id for r in records]
    structures = [StructureRecord(rid, f.sequence, f.pairs) for rid, f in zip(ids, folded)]
    if fmt == "bpseq":
        with atomic_dir(args.output) as tmp:
            for record, name in zip(structures, file_names(ids)):
                (tmp / f"{name}.bpseq").write_text(format_bpseq(record))
    else:
        with atomic_open(args.output) as handle:
            for record, f in zip(structures, folded):
                handle.write(format_ct(record) if fmt == "ct" else f">{record.id}\n{record.sequence}\n{f.dot_bracket}\n")
    if args.pair_probabilities:
        write_probabilities(args.pair_probabilities, ids, folded)
    n_pairs = sum(len(f.pairs) for f in folded)
    print(f"rnaret fold: {n_pairs} base pairs in {len(folded)} structures -> {args.output} ({fmt})", file=sys.stderr)
    return 0
