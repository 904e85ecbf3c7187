"""`rnaret fold`: secondary structures of the sequences of a FASTA with a fine-tuned structure model.

    rnaret fold my.fa --checkpoint results/structure/bprna/rnaret-k1/checkpoint --out my.dbn
    rnaret fold my.fa --checkpoint RNAStrAlign_1mer.pth --out my.ct --format ct

``--format`` (default: from the output's extension ``.dbn``/``.ct``, else dbn):
- ``dbn``: 3 lines per record (``>id``, sequence, dot-bracket; pseudoknots on ``[]``, ``{}``, ``<>``,
  then ``Aa`` .. ``Zz``). A structure that needs more than these 30 bracket pages is refused,
  naming the record and its pair count: dot-bracket cannot hold it, write ``.ct`` or bpseq;
- ``ct``: one multi-record CT file;
- ``bpseq``: ``--out`` is a folder with one ``<id>.bpseq`` per record (ids made file-safe:
  characters outside ``A-Za-z0-9._-`` become ``_``; a repeated name gets ``_2``).
``--pair-scores FILE``: the model's per-pair scores (sigmoid of each pair's logit, scored
independently: not pair probabilities, a base's scores may sum above 1; ``rnaret.fold``).
``.npz`` -> one (L, L) float32 array per record, keyed by id; otherwise a TSV (gzipped when it
ends in .gz) with ``id, i, j, pair_score`` (1-based, i < j) for the pairs scoring at least
``--min-pair-score`` (0.01). Every output is written atomically after all sequences are folded,
so a bad input leaves nothing behind. docs/outputs.md describes every format.
"""
from __future__ import annotations

import argparse

HELP = "predict secondary structures of a FASTA (fine-tuned structure model) as dot-bracket, bpseq or CT"
FORMATS = ("dbn", "bpseq", "ct")
MIN_LISTED_SCORE = 0.01


def add_arguments(parser) -> None:
    parser.add_argument("fasta", help="RNA sequences (FASTA, plain or .gz; U or T, either case)")
    parser.add_argument("--checkpoint", required=True,
                        help="fine-tuned structure checkpoint folder, or a released RNAStrAlign_1mer.pth")
    from rnaret.cli import add_model_run_arguments, add_out_argument

    add_out_argument(parser, "output file (dbn, ct) or folder (bpseq)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="dbn, bpseq or ct (default: from --out's extension, else dbn)")
    parser.add_argument("--pair-scores", default=None, metavar="FILE",
                        help="also write the model's per-pair scores (not probabilities: docs/outputs.md); "
                             ".npz: full (L, L) matrices; else a TSV id, i, j, pair_score")
    parser.add_argument("--min-pair-score", type=float, default=MIN_LISTED_SCORE, metavar="S",
                        help=f"the TSV of --pair-scores lists pairs scoring at least S (default {MIN_LISTED_SCORE})")
    # the old name: these scores were once written as "probabilities"; refused with a pointer
    parser.add_argument("--pair-probabilities", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threshold", type=float, default=None,
                        help="pair score above which a pair may be predicted (default: the checkpoint's, "
                             "0.5 as published)")
    parser.add_argument("--max-length", type=int, default=3000,
                        help="refuse longer sequences (memory grows with length^2; 0 = no limit; default 3000)")
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="pair-map pixels per batch, n * L^2 (default 2**19)")
    add_model_run_arguments(parser)


def output_format(args) -> str:
    """The format asked for, or the one the output's extension names (dbn by default)."""
    if args.format:
        return args.format
    name = str(args.out).lower()
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
    """FASTA records under the alphabet policy of every command (``rnaret.io.fasta.read_sequences``:
    no gaps, IUPAC letters, errors naming the line and column), each of at most ``max_length``
    nt (0: no limit); InputError naming file, record and line otherwise."""
    from rnaret.io.errors import InputError
    from rnaret.io.fasta import read_sequences as read_checked

    records = list(read_checked(path))
    for record in records:
        if max_length and len(record.sequence) > max_length:
            raise InputError(path, f"the sequence is {len(record.sequence)} nt, longer than --max-length "
                                   f"{max_length} (memory grows with length^2)", record=record.id,
                             line=record.line)
    return records


def dot_brackets(path, ids: list[str], folded: list) -> list[str]:
    """The dot-bracket of each record; InputError naming ``path``, the record and its pair count
    when dot-bracket cannot hold all of its pairs (never a shorter string)."""
    from rnaret.io.errors import InputError

    out = []
    for rid, f in zip(ids, folded):
        try:
            out.append(f.dot_bracket)
        except InputError as exc:
            raise InputError(path, exc.what, record=rid) from None
    return out


def write_scores(path, ids: list[str], folded: list, min_score: float) -> int:
    """Pair scores of each record to ``path`` (.npz matrices or a TSV of pairs, see module doc);
    returns the number of TSV rows, or of matrices for .npz."""
    import gzip

    import numpy as np

    from rnaret.io.atomic import atomic_path

    name = str(path).lower()
    if name.endswith(".npz"):
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **{rid: f.pair_scores for rid, f in zip(ids, folded)})
        return len(folded)
    n = 0
    with atomic_path(path) as tmp:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(tmp, "wt") as handle:
            handle.write("id\ti\tj\tpair_score\n")
            for rid, f in zip(ids, folded):
                rows, cols = np.nonzero(np.triu(f.pair_scores >= min_score, k=1))
                for i, j in zip(rows.tolist(), cols.tolist()):
                    handle.write(f"{rid}\t{i + 1}\t{j + 1}\t{f.pair_scores[i, j]:.4f}\n")
                n += len(rows)
    return n


def run(args) -> int:
    import sys

    from rnaret.device import resolve_device
    from rnaret.fold import load_structure_model, predict_structure
    from rnaret.precision import configure_precision
    from rnaret.io.atomic import atomic_dir, atomic_open
    from rnaret.io.errors import InputError
    from rnaret.io.structure import StructureRecord, format_bpseq, format_ct
    from rnaret.cli import plural
    from rnaret.tasks.structure import file_names

    from rnaret.commands.finetune import set_threads

    set_threads(args.threads)
    fmt = output_format(args)
    if args.pair_probabilities is not None:
        raise InputError(None, "--pair-probabilities is gone: the model gives per-pair scores, not pair "
                               "probabilities (a base's scores may sum above 1); use --pair-scores FILE "
                               "(docs/outputs.md)")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InputError(None, f"--threshold must be between 0 and 1, got {args.threshold}")
    if not 0.0 <= args.min_pair_score <= 1.0:
        raise InputError(None, f"--min-pair-score must be between 0 and 1, got {args.min_pair_score}")
    if args.max_length < 0:
        raise InputError(None, f"--max-length must be >= 0, got {args.max_length}")
    if args.max_pairs is not None and args.max_pairs < 1:
        raise InputError(None, f"--max-pairs must be positive, got {args.max_pairs}")
    if fmt == "bpseq":
        check_output_folder(args.out)
    records = read_sequences(args.fasta, args.max_length)
    device = resolve_device(args.device)
    precision = configure_precision(device, args.precision)
    task, model = load_structure_model(args.checkpoint, device)
    print(f"rnaret fold: {plural(len(records), 'sequence')} from {args.fasta} (longest "
          f"{max(len(r.sequence) for r in records)} nt), model {args.checkpoint}, {device}, {precision}",
          file=sys.stderr)
    folded = predict_structure(model, [r.sequence for r in records], task=task, threshold=args.threshold,
                               max_pairs=args.max_pairs, precision=precision,
                               return_scores=bool(args.pair_scores), progress=not args.quiet)
    ids = [r.id for r in records]
    structures = [StructureRecord(rid, f.sequence, f.pairs) for rid, f in zip(ids, folded)]
    if fmt == "bpseq":
        with atomic_dir(args.out) as tmp:
            for record, name in zip(structures, file_names(ids)):
                (tmp / f"{name}.bpseq").write_text(format_bpseq(record))
    elif fmt == "ct":
        with atomic_open(args.out) as handle:
            for record in structures:
                handle.write(format_ct(record))
    else:
        brackets = dot_brackets(args.out, ids, folded)  # refuses before anything is written
        with atomic_open(args.out) as handle:
            for record, structure in zip(structures, brackets):
                handle.write(f">{record.id}\n{record.sequence}\n{structure}\n")
    n_pairs = sum(len(f.pairs) for f in folded)
    print(f"rnaret fold: {plural(n_pairs, 'base pair')} in {plural(len(folded), 'structure')} -> "
          f"{args.out} ({fmt})", file=sys.stderr)
    if args.pair_scores:
        n_scores = write_scores(args.pair_scores, ids, folded, args.min_pair_score)
        listed = (plural(n_scores, "pair-score matrix", "pair-score matrices")
                  if str(args.pair_scores).lower().endswith(".npz")
                  else f"{plural(n_scores, 'pair score')} >= {args.min_pair_score:g}")
        print(f"rnaret fold: {listed} -> {args.pair_scores}", file=sys.stderr)
    return 0
