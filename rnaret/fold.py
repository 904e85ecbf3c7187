"""Fold RNA sequences with a fine-tuned structure model: what ``rnaret fold`` (and a web server)
calls.

    from rnaret.fold import load_structure_model, predict_structure
    task, model = load_structure_model("results/structure/bprna/rnaret-k1/checkpoint")
    for folded in predict_structure(model, ["GGGGAAACCCC", "ACGU..."], task=task):
        folded.pairs          # [(i, j), ...] 1-based, i < j, no base twice
        folded.dot_bracket    # "((((...))))"; InputError when 30 bracket pages cannot hold the pairs
        folded.pair_scores    # (L, L) float32, symmetric; 0 outside the pairing constraint

A checkpoint is a fine-tuned folder written by ``rnaret finetune --task structure`` or a
released ``RNAStrAlign_1mer.pth`` (encoder from ``ret.*``, head from ``classifier.*``).
Decoding and the constraint are the structure task's (``rnaret.tasks.structure``): canonical
and wobble pairs, ``|i - j| >= 4``, pair score > threshold (0.5), one partner per base.

Pair scores are what the model gives: the sigmoid of each pair's logit, scored independently of
every other pair. They are not pair probabilities in the McCaskill sense: a base's scores are
not normalised and may sum to far above 1 (an untrained model gives many pairs near 0.5), so
they are named ``pair_scores`` and only their ranking and the threshold carry meaning.
Memory grows with L^2 (the pair map): sequences are batched so that ``n * L_max^2 <= max_pairs``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from rnaret.io.errors import InputError  # noqa: F401  (re-exported: callers catch it here)
from rnaret.io.fasta import check_sequence_letters
from rnaret.io.structure import StructureRecord, pairs_to_dot_bracket

# pair-map pixels per batch: ~256 MB per activation of the paper-size (C = 128) head in float32
DEFAULT_MAX_PAIRS = 2**19


@dataclass
class FoldedStructure:
    """One predicted structure: ``pairs`` 1-based (i < j), ``pair_scores`` (L, L) float32 (the
    model's per-pair sigmoid scores, see the module doc; None when not asked for)."""

    sequence: str
    pairs: list[tuple[int, int]]
    pair_scores: np.ndarray | None = None

    @property
    def dot_bracket(self) -> str:
        """Every pair as dot-bracket (pseudoknots on ``[]``, ``{}``, ``<>``, then ``Aa`` .. ``Zz``).
        InputError (naming the pair count) when the pairs need more than those 30 bracket pages:
        dot-bracket cannot hold them, and a shorter string would lose pairs silently."""
        return pairs_to_dot_bracket(self.pairs, len(self.sequence))


def load_structure_model(checkpoint, device: str | None = None):
    """A fine-tuned structure checkpoint folder or a released ``RNAStrAlign_1mer.pth`` ->
    ``(task, model)``: the ``StructureTask`` (settings as trained) and the ``TaskModel`` in eval
    mode on ``device`` (``rnaret.device.resolve_device``: default CUDA when available, else CPU).
    InputError for anything else."""
    from rnaret.device import resolve_device
    from rnaret.tasks.run import load_for_evaluation

    task, model = load_for_evaluation(checkpoint, "structure")
    model.to(resolve_device(device)).eval()
    return task, model


def check_sequence(sequence: str, *, path=None, record: str | None = None, line: int | None = None) -> None:
    """InputError unless ``sequence`` follows the one alphabet policy of every command
    (``rnaret.io.fasta``: IUPAC letters, no gaps; letters other than ACGU/T pair with nothing)."""
    check_sequence_letters(sequence, path=path, record=record, line=line)


@torch.no_grad()
def predict_structure(model, sequences: Sequence[str], *, task=None, threshold: float | None = None,
                      max_pairs: int | None = None, device: str | torch.device | None = None,
                      precision: str = "auto", return_scores: bool = True,
                      progress: bool = False) -> list[FoldedStructure]:
    """Predict the secondary structure of each sequence.

    ``model``: a structure ``TaskModel`` (``load_structure_model``); ``sequences``: strings of
    letters (either case, U or T); ``task``: its ``StructureTask`` (default: a default one, k = 1,
    threshold 0.5, min pair distance 4); ``threshold`` overrides the task's; ``max_pairs``:
    pair-map pixels per batch (default 2**19); ``device``: where to run (default: where the model
    is); ``precision``: fp32, bf16 or auto (``rnaret.precision``; the pair scores are always
    returned in float32); ``return_scores``: keep each (L, L) score map (False saves L^2 memory
    per sequence). Returns one :class:`FoldedStructure` per sequence, in input order. Raises InputError
    (a ValueError) naming the sequence (``#n``, 1-based) when one is empty or not letters.
    """
    from rnaret.data.progress import progress as progress_bar
    from rnaret.precision import autocast, resolve_precision
    from rnaret.tasks.finetune import make_batches
    from rnaret.tasks.structure import StructureTask, decode_pairs

    task = task or StructureTask()
    threshold = float(task.settings["threshold"] if threshold is None else threshold)
    sequences = list(sequences)
    for index, sequence in enumerate(sequences, start=1):
        check_sequence(sequence, record=f"#{index}")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    model.to(device).eval()
    examples = [task.example(StructureRecord(f"#{i}", s, [])) for i, s in enumerate(sequences, start=1)]
    budget = int(max_pairs or DEFAULT_MAX_PAIRS)
    batches = make_batches([len(e.tokens) ** 2 for e in examples], max_tokens=budget)
    out: list[FoldedStructure | None] = [None] * len(examples)
    with progress_bar(total=len(examples), desc="fold", unit="seq", disable=not progress) as bar:
        for indices in batches:
            batch = task.collate([examples[i] for i in indices]).to(device)
            with autocast(device, precision):
                logits = model(batch.tokens, batch.padding_mask)
            # the task calls its sigmoid scores "probabilities"; they are per-pair scores (module doc)
            for i, scores in zip(indices, task.probabilities(logits.float(), batch)):
                pairs = decode_pairs(scores, scores > 0, threshold)
                out[i] = FoldedStructure(sequences[i], pairs, scores.astype(np.float32) if return_scores else None)
            bar.update(len(indices))
    return out  # type: ignore[return-value]


__all__ = ["FoldedStructure", "load_structure_model", "predict_structure", "check_sequence", "DEFAULT_MAX_PAIRS"]
