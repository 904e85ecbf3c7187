"""ViennaRNA baseline through its Python bindings (``import RNA``; there is no RNAfold binary).

Sequences are normalised before folding: upper case, T -> U. Other letters (N and the IUPAC
ambiguity codes, or anything alphabetic) are passed on as they are: ViennaRNA encodes every
letter outside ACGU as an unknown base that pairs with nothing (checked with ViennaRNA 2.8.0:
``NNNNNNNNAAANNNNNNNN`` folds to all dots and ``GGGGAAANNNN`` too), so such positions are
always unpaired. Non-letters are rejected with ``ValueError``.

Default energy model (Turner 2004, 37 °C, dangles=2), no base-pair span limit unless
``max_bp_span`` is given. MEA: partition function (``pf`` after ``exp_params_rescale`` with the
MFE, so long sequences do not overflow), then the maximum expected accuracy structure with
weight ``gamma`` (RNAfold ``--MEA`` default 1.0).

Many sequences: ``fold_many`` spreads them over ``threads`` worker processes (the bindings do
not fold in parallel threads), longest first for balance, with a tqdm progress bar.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

METHODS = ("mfe", "mea")
_NON_LETTER = re.compile(r"[^A-Za-z]")


def normalize_sequence(sequence: str) -> str:
    """Upper case, T -> U. Raises ``ValueError`` for a character that is not a letter."""
    bad = _NON_LETTER.search(sequence)
    if bad:
        raise ValueError(f"{bad.group()!r} at position {bad.start() + 1} is not a nucleotide letter")
    return sequence.upper().replace("T", "U")


def _fold_compound(sequence: str, max_bp_span: int | None):
    import RNA

    md = RNA.md()
    if max_bp_span is not None:
        md.max_bp_span = int(max_bp_span)
    return RNA.fold_compound(normalize_sequence(sequence), md)


def fold_mfe(sequence: str, *, max_bp_span: int | None = None) -> tuple[str, float]:
    """Minimum free energy structure: ``(dot-bracket of length n, energy in kcal/mol)``."""
    structure, energy = _fold_compound(sequence, max_bp_span).mfe()
    return structure, round(float(energy), 2)


def _pf_ready(sequence: str, max_bp_span: int | None):
    fc = _fold_compound(sequence, max_bp_span)
    _, mfe = fc.mfe()
    fc.exp_params_rescale(mfe)  # scale Boltzmann factors around the MFE: no overflow on long RNAs
    fc.pf()
    return fc


def fold_mea(sequence: str, *, gamma: float = 1.0, max_bp_span: int | None = None) -> tuple[str, float]:
    """Maximum expected accuracy structure from the base-pair probabilities.

    Returns ``(dot-bracket of length n, free energy of that structure in kcal/mol)``. Larger
    ``gamma`` admits more, less probable pairs.
    """
    fc = _pf_ready(sequence, max_bp_span)
    structure, _ = fc.MEA(float(gamma))
    return structure, round(float(fc.eval_structure(structure)), 2)


def bpp_matrix(sequence: str, *, max_bp_span: int | None = None) -> np.ndarray:
    """Base-pair probability matrix, shape ``(n, n)`` float64, symmetric, zero diagonal."""
    fc = _pf_ready(sequence, max_bp_span)
    full = np.asarray(fc.bpp(), dtype=np.float64)[1:, 1:]  # ViennaRNA's is 1-based, upper triangle
    upper = np.triu(full, k=1)
    return upper + upper.T


@dataclass(frozen=True)
class ViennaPrediction:
    """Predicted structures of one sequence (``None`` for a method not asked for)."""

    mfe_structure: str | None = None
    mfe_energy: float | None = None
    mea_structure: str | None = None
    mea_energy: float | None = None


def predict(sequence: str, methods: Sequence[str] = ("mfe",), *, gamma: float = 1.0,
            max_bp_span: int | None = None) -> ViennaPrediction:
    """Fold one sequence with each of ``methods`` (subset of ``("mfe", "mea")``), sharing one
    fold compound so MEA reuses the MFE for scaling."""
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {list(methods)}")
    fc = _fold_compound(sequence, max_bp_span)
    mfe_structure, mfe = fc.mfe()
    out = {}
    if "mfe" in methods:
        out.update(mfe_structure=mfe_structure, mfe_energy=round(float(mfe), 2))
    if "mea" in methods:
        fc.exp_params_rescale(mfe)
        fc.pf()
        structure, _ = fc.MEA(float(gamma))
        out.update(mea_structure=structure, mea_energy=round(float(fc.eval_structure(structure)), 2))
    return ViennaPrediction(**out)


def _predict_task(task):
    index, sequence, methods, gamma, max_bp_span = task
    return index, predict(sequence, methods, gamma=gamma, max_bp_span=max_bp_span)


def _start_method() -> str:
    """How the worker processes start: ``forkserver`` where it can, else ``fork`` (else ``spawn``).

    A worker forked from this process inherits, held for ever, every lock that another of its
    threads held at the fork; in a process that has run torch (a test session, a notebook) such a
    worker blocked for good (seen once in the test suite: a futex wait in the forked worker, the
    likely culprit the OpenMP pools that torch and ViennaRNA use). The fork server is a fresh single-threaded process that forks the workers instead. Like
    ``spawn`` it makes each worker import ``__main__`` again, which a script read from stdin
    (``__file__`` "<stdin>", no such file) cannot do; such a caller gets ``fork``.
    """
    methods = multiprocessing.get_all_start_methods()
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    reimportable = (getattr(getattr(main, "__spec__", None), "name", None) is not None
                    or main_file is None or os.path.isfile(main_file))
    if "forkserver" in methods and reimportable:
        return "forkserver"
    return "fork" if "fork" in methods else "spawn"


def fold_many(sequences: Sequence[str], methods: Sequence[str] = ("mfe",), *, threads: int = 1,
              gamma: float = 1.0, max_bp_span: int | None = None, progress: bool = True
              ) -> list[ViennaPrediction]:
    """Fold every sequence; returns one ``ViennaPrediction`` per input, in input order.

    ``threads`` worker processes (1 = in this process); a tqdm bar on stderr when ``progress``.
    """
    from tqdm import tqdm

    for s in sequences:
        normalize_sequence(s)  # fail before starting workers
    order = sorted(range(len(sequences)), key=lambda k: -len(sequences[k]))
    tasks = [(k, sequences[k], tuple(methods), float(gamma), max_bp_span) for k in order]
    results: list[ViennaPrediction | None] = [None] * len(sequences)
    pool = None
    if threads > 1 and len(tasks) > 1:
        pool = multiprocessing.get_context(_start_method()).Pool(min(threads, len(tasks)))
    bar = tqdm(total=len(tasks), desc="ViennaRNA", unit="seq", disable=not progress, file=sys.stderr)
    try:
        done = (pool.imap_unordered(_predict_task, tasks, chunksize=1) if pool is not None
                else map(_predict_task, tasks))
        for k, pred in done:
            results[k] = pred
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return results  # type: ignore[return-value]
