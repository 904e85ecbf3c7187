"""Secondary structure (k = 1 as published): pair logits from the pairwise head, weighted BCE,
constrained decoding to at most one partner per base.

Data: any structure source ``rnaret.io.dataset_readers.read_dataset`` reads for this task (CSV/TSV
table with ``id, sequence, structure[, base_pairs]``, ``.dbn``, ``.bpseq``, ``.ct``, a folder of
``.bpseq``/``.ct`` files walked recursively). An example
holds the tokens (one per nucleotide for odd k), the true pairs (P, 2) 1-based, and the sequence.

Constraint (published ``constraint()``): a pair (i, j) is allowed when the two bases are AU, CG
or GU in either order (case-insensitive, T read as U) and ``|i - j| >= min_pair_distance`` (4).
Built with tensor operations over the whole batch (:func:`pair_constraint`); padding is never
allowed. Unlike the published code, N does not pair with anything.

Loss: BCE on the symmetric logits over the allowed pairs of the upper triangle (each pair once),
positives weighted ``positive_weight`` (10, as published), summed and divided by the number of
allowed pairs (as published).

Decoding (:func:`decode_pairs`): probabilities = sigmoid(logits) inside the constraint (0 outside);
candidates are the allowed pairs with probability > ``threshold`` (0.5); they are taken in order
of decreasing probability (ties: 5'-most first) and a candidate is kept only when neither base is
already paired. So no base is ever paired twice. (The published post-processing uses an
assignment solver and then a per-row fix-up; the greedy rule is simpler and has the same
guarantees.)

Metrics: per-sequence precision, recall, F1 and the same on pseudoknotted pairs, averaged over
sequences (``rnaret.metrics.structure_scores``: ``f1, precision, recall, f1_pk, precision_pk,
recall_pk, n, n_pk``). The best checkpoint is chosen on validation ``f1``.

Outputs (``write_outputs``): ``predictions.dbn``, ``predictions.ct`` (one multi-record CT file),
``predictions_bpseq/`` (one ``<id>.bpseq`` per sequence: bpseq holds one record per file),
``predictions.tsv`` (per-sequence scores and the predicted and true dot-brackets, input order) and
``contact_maps.png`` (predicted vs true maps of a few sequences). A predicted structure too
knotted for the 30 bracket pages of dot-bracket keeps, in ``.dbn`` only, the pairs that fit (see
:func:`dot_bracket_of`), and says so: ``pairs_left_out=N`` in its header line and a line in the log;
the bpseq and CT files always hold every pair.

Published protocol (``rnaret.tasks.protocol``; what ``ssp.py`` computes, see docs/protocol.md):
a folder is read as the script reads it (every file named ``*.bpseq``, nested folders walked,
other files left aside and counted as ``ignored_not_bpseq``; a file its parser fails on is
skipped and counted as ``skipped_unreadable``; :func:`rnaret.io.structure.read_bpseq_published`);
records over ``max_len`` (600) are left out of every split (``dropped_too_long``); the constraint
is the script's (:func:`published_constraint`: the lower triangle ``i - j >= min_pair_distance``,
N pairs with anything, T with nothing); decoding is :func:`published_decode` and the
per-sequence scores count the cells of the L x L maps (``rnaret.metrics.published_pair_scores``),
averaged over sequences (``f1, precision, recall, n``). The loss covers the same lower-triangle
mask. The counts go into metrics.tsv.

Settings (``default_settings`` = the published recipe and paper-size head; the ``laptop``
preset in ``presets`` shrinks the head and the budget for 2 CPU cores): ``head_channels`` 128,
``head_blocks`` 16, ``head_kernel`` 3, ``symmetrize`` ("mean", or "lower" = published orientation),
``positive_weight`` 10, ``min_pair_distance`` 4, ``threshold`` 0.5, ``train_max_len`` 600
(training sequences longer than this are left out, as published; valid/test are never cut),
``train_crop`` None (a random window of this many nt per training step, pairs leaving the window
dropped; for CPU budgets), ``lr`` 1e-5, ``batch_size`` 1, ``epochs`` 50, no gradient clipping.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from rnaret.heads.structure import StructureHead, published_head_shape
from rnaret.io.errors import InputError
from rnaret.io.dataset_readers import read_dataset
from rnaret.io.structure import BRACKETS, StructureRecord, pairs_to_dot_bracket
from rnaret.metrics import structure_scores
from rnaret.tasks.base import Batch, Example, Task, pad_tokens
from rnaret.tasks.settings import TASK_DEFAULTS, TASK_PRESETS
from rnaret.tokenizer import encode

# byte -> base code: A 0, C 1, G 2, U/T 3 (either case), anything else 4 (pairs with nothing)
OTHER = 4
BASE_CODE = np.full(256, OTHER, dtype=np.int64)
for _code, _letters in enumerate(("Aa", "Cc", "Gg", "UuTt")):
    for _c in _letters:
        BASE_CODE[ord(_c)] = _code
# CANONICAL[a, b]: True for AU, UA, CG, GC, GU, UG
CANONICAL = torch.zeros(5, 5, dtype=torch.bool)
for _a, _b in ((0, 3), (1, 2), (2, 3)):
    CANONICAL[_a, _b] = CANONICAL[_b, _a] = True


def base_codes(sequence: str) -> np.ndarray:
    """(n,) int64 codes of a sequence: A 0, C 1, G 2, U/T 3, other 4 (case-insensitive)."""
    return BASE_CODE[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]


def pair_constraint(bases: torch.Tensor, padding_mask: torch.Tensor | None = None,
                    min_distance: int = 4) -> torch.Tensor:
    """Allowed pairs (B, L, L) bool, symmetric: canonical/wobble bases and ``|i - j| >= min_distance``.

    ``bases`` (B, L) int64 codes from :func:`base_codes` (padding: 4); ``padding_mask`` (B, L) bool,
    True at real positions (padding is never allowed). No Python loop over positions.
    """
    table = CANONICAL.to(bases.device)
    allowed = table[bases.unsqueeze(2), bases.unsqueeze(1)]                # (B, L, L)
    position = torch.arange(bases.shape[1], device=bases.device)
    far = (position.unsqueeze(1) - position.unsqueeze(0)).abs() >= min_distance  # (L, L)
    allowed = allowed & far
    if padding_mask is not None:
        allowed = allowed & padding_mask.unsqueeze(2) & padding_mask.unsqueeze(1)
    return allowed


def decode_pairs(probabilities, allowed=None, threshold: float = 0.5) -> list[tuple[int, int]]:
    """At most one partner per base from a pair-probability map.

    ``probabilities`` (L, L) (numpy or torch; only the upper triangle is read), ``allowed``
    (L, L) bool or None. Candidates: allowed pairs i < j with probability > ``threshold``, taken
    by decreasing probability (ties: smaller i, then smaller j), each kept when neither base is
    already paired. Returns sorted 1-based ``(i, j)``, ``i < j``.
    """
    if hasattr(probabilities, "detach"):
        probabilities = probabilities.detach().float().cpu().numpy()
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise ValueError(f"expected a square (L, L) map, got shape {p.shape}")
    candidate = np.triu(p > threshold, k=1)
    if allowed is not None:
        if hasattr(allowed, "detach"):
            allowed = allowed.detach().cpu().numpy()
        candidate &= np.asarray(allowed, dtype=bool)
    rows, cols = np.nonzero(candidate)                     # row-major: ties resolved by (i, j)
    order = np.argsort(-p[rows, cols], kind="stable")
    paired = np.zeros(p.shape[0], dtype=bool)
    pairs = []
    for i, j in zip(rows[order].tolist(), cols[order].tolist()):
        if not paired[i] and not paired[j]:
            paired[i] = paired[j] = True
            pairs.append((i + 1, j + 1))
    pairs.sort()
    return pairs


# byte -> code of the published constraint: A 0, C 1, G 2, U 3 (upper case after upper()), N 4,
# anything else (T included) 5
_PUBLISHED_CODE = np.full(256, 5, dtype=np.int64)
for _code, _letter in enumerate("ACGUN"):
    _PUBLISHED_CODE[ord(_letter)] = _code
_PUBLISHED_PAIRS = np.zeros((6, 6), dtype=bool)
for _a, _b in ((0, 3), (1, 2), (2, 3)):
    _PUBLISHED_PAIRS[_a, _b] = _PUBLISHED_PAIRS[_b, _a] = True
_PUBLISHED_PAIRS[4, :5] = _PUBLISHED_PAIRS[:5, 4] = True   # N with A, C, G, U, N
_PUBLISHED_PAIRS[4, 5] = _PUBLISHED_PAIRS[5, 4] = True     # ... and with anything else


def published_constraint(sequence: str, min_distance: int = 4) -> np.ndarray:
    """The published ``ssp.py`` constraint of one sequence: (n, n) int64, 1 at ``(i, j)`` when
    ``i - j >= min_distance`` (lower triangle only) and the upper-cased bases are AU, UA, CG,
    GC, GU or UG, or either is N (T pairs with nothing but N)."""
    codes = _PUBLISHED_CODE[np.frombuffer(sequence.upper().encode("ascii", errors="replace"), dtype=np.uint8)]
    position = np.arange(len(codes))
    far = (position[:, None] - position[None, :]) >= min_distance
    return (_PUBLISHED_PAIRS[codes[:, None], codes[None, :]] & far).astype(np.int64)


def published_decode(logits: torch.Tensor, allowed: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Pair map of one sequence decoded as the published ``ssp.py`` (``post_process``) decodes it.

    ``logits`` (n, n) float32, ``allowed`` (n, n) 0/1 (:func:`published_constraint`). Steps:
    p = sigmoid(logits) * allowed, cells with p <= threshold set to 0; a maximum-weight
    assignment of rows to columns on p (scipy ``linear_sum_assignment``, over every cell, zeros
    included); cell (r, c) of the assignment is kept when ``col[col[c]] == c``, then only inside
    ``allowed``; the map plus its transpose; then for i = 0 .. n-1 in turn, a row i with more
    than one 1 keeps its first, then a column i with more than one 1 keeps its first.
    Returns (n, n) int64 0/1; each row and column holds at most one 1, the map need not be
    symmetric (the published scores count its cells as they are).
    """
    from scipy.optimize import linear_sum_assignment

    allowed_t = torch.as_tensor(allowed, dtype=torch.int32)
    p = torch.sigmoid(logits.detach().float().cpu()) * allowed_t
    p = p * (p > threshold)
    n = p.shape[0]
    _, col = linear_sum_assignment(-p.numpy())
    keep = col[col[col]] == col
    chosen = np.zeros((n, n), dtype=np.int64)
    chosen[np.arange(n)[keep], col[keep]] = 1
    chosen *= np.asarray(allowed, dtype=np.int64)
    out = chosen + chosen.T
    for i in range(n):
        if out[i].sum() > 1:
            j = int(np.argmax(out[i]))
            out[i] = 0
            out[i, j] = 1
        if out[:, i].sum() > 1:
            j = int(np.argmax(out[:, i]))
            out[:, i] = 0
            out[j, i] = 1
    return out


def pair_map(pairs, n: int) -> np.ndarray:
    """(n, n) int64 0/1 map of 1-based pairs ``(i, j)`` marked in both orientations."""
    out = np.zeros((n, n), dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2) - 1
    out[pairs[:, 0], pairs[:, 1]] = 1
    out[pairs[:, 1], pairs[:, 0]] = 1
    return out


def dot_bracket_of(pairs, n: int) -> str:
    """Dot-bracket of ``pairs`` (1-based, i < j) over ``n`` nt.

    When the pairs need more than the 30 bracket pages dot-bracket has (only ever seen with
    untrained models), the pairs that do not fit are left out of the string (in 5'->3' order of
    their opening base, each kept when the string can still hold it).
    """
    try:
        return pairs_to_dot_bracket(pairs, n)
    except InputError:
        kept: list = []
        for pair in sorted(pairs):
            try:
                pairs_to_dot_bracket(kept + [pair], n)
                kept.append(pair)
            except InputError:
                continue
        return pairs_to_dot_bracket(kept, n)


class StructureTask(Task):
    """RNA secondary structure prediction (see the module docstring)."""

    name = "structure"
    selection_metric = "f1"
    # the published recipe and the presets: rnaret.tasks.settings (torch-free, read by the pipeline)
    default_settings = TASK_DEFAULTS["structure"]
    presets = TASK_PRESETS["structure"]

    # -- data -----------------------------------------------------------------------------
    def example(self, record: StructureRecord) -> Example:
        """One structure record -> Example(tokens (n,), target pairs (P, 2) int64 1-based,
        info {sequence, length}). Needs odd k (one token per nucleotide)."""
        tokens = encode(record.sequence, self.k)
        if len(tokens) != len(record.sequence):
            raise InputError(None, f"the sequence ({len(record.sequence)} nt) is shorter than k={self.k}",
                             record=record.id)
        pairs = np.asarray(record.pairs, dtype=np.int64).reshape(-1, 2)
        return Example(record.id, tokens, pairs, {"sequence": record.sequence, "length": len(record.sequence)})

    def read_split(self, path, select: str | None = None) -> list[Example]:
        """Structures of ``path`` (any structure format of ``rnaret.io.dataset_readers.read_dataset``;
        ``select`` = the rows of a table whose ``split`` column equals it) -> examples."""
        if not self.published:
            return [self.example(record) for record in read_dataset(path, self.name, select)]
        return [self.example(record) for record in self._read_published(path, select)]

    def _read_published(self, path, select: str | None) -> list[StructureRecord]:
        """The records of ``path`` that the published ``ssp.py`` keeps (see the module doc),
        counting what it leaves out."""
        from rnaret.io.structure import published_bpseq_files, read_bpseq_published, structure_format

        max_len = int(self.settings["max_len"])
        kind = structure_format(path)
        if kind not in ("structure_folder", "bpseq") or str(path).endswith(".gz"):
            records = []
            for record in read_dataset(path, self.name, select):
                if len(record.sequence) > max_len:
                    self.count("dropped_too_long")
                else:
                    records.append(record)
            return records
        if kind == "bpseq":
            files, other = [(None, Path(path))], 0
        else:
            files, other = published_bpseq_files(path)
        if other:
            self.count("ignored_not_bpseq", other)
        records = []
        for rec_id, file in files:
            read = read_bpseq_published(file, max_len, rec_id)
            if read.status == "ok":
                records.append(read.record)
                continue
            self.count("skipped_unreadable" if read.status == "unreadable" else "dropped_too_long")
            print(f"rnaret structure: {file}: left out as the published ssp.py does: {read.reason}",
                  file=sys.stderr)
        return records

    def load_dataset(self, entry: Mapping[str, Any], splits: tuple[str, ...] | None = None
                     ) -> dict[str, list[Example]]:
        """The base reader, then training sequences longer than ``train_max_len`` left out."""
        data = super().load_dataset(entry, splits)
        limit = self.settings.get("train_max_len")
        if limit and "train" in data:
            kept = [e for e in data["train"] if len(e.tokens) <= int(limit)]
            if len(kept) < len(data["train"]):
                print(f"rnaret structure: {len(data['train']) - len(kept)} training sequences longer than "
                      f"train_max_len={limit} left out", file=sys.stderr)
            if not kept:
                raise InputError(None, f"no training sequence is at most train_max_len={limit} nt")
            data["train"] = kept
        return data

    def train_view(self, example: Example, rng: np.random.Generator) -> Example:
        """A random window of ``train_crop`` nt when set and shorter than the sequence; pairs with
        both bases inside are kept (renumbered), the others dropped."""
        crop = self.settings.get("train_crop")
        n = len(example.tokens)
        if not crop or n <= int(crop):
            return example
        crop = int(crop)
        start = int(rng.integers(0, n - crop + 1))
        pairs = example.target
        inside = (pairs[:, 0] > start) & (pairs[:, 1] <= start + crop)
        sequence = example.info["sequence"][start:start + crop]
        return Example(example.id, example.tokens[start:start + crop], pairs[inside] - start,
                       {**example.info, "sequence": sequence, "length": crop})

    def collate(self, examples: list[Example]) -> Batch:
        """Pad -> Batch with targets ``{"contacts": (B, L, L) float32 0/1 symmetric,
        "bases": (B, L) int64 codes (4 at padding)}``."""
        tokens, padding_mask = pad_tokens([e.tokens for e in examples])
        batch, length = tokens.shape
        bases = torch.full((batch, length), OTHER, dtype=torch.long)
        contacts = torch.zeros((batch, length, length), dtype=torch.float32)
        for row, example in enumerate(examples):
            bases[row, : len(example.tokens)] = torch.from_numpy(base_codes(example.info["sequence"]))
            pairs = torch.from_numpy(np.asarray(example.target, dtype=np.int64).reshape(-1, 2)) - 1
            contacts[row, pairs[:, 0], pairs[:, 1]] = 1.0
            contacts[row, pairs[:, 1], pairs[:, 0]] = 1.0
        return Batch(tokens, padding_mask, {"contacts": contacts, "bases": bases}, examples)

    # -- model ----------------------------------------------------------------------------
    def build_head(self, d: int) -> StructureHead:
        s = self.settings
        return StructureHead(d, channels=int(s["head_channels"]), blocks=int(s["head_blocks"]),
                             kernel_size=int(s["head_kernel"]), symmetrize=str(s["symmetrize"]))

    def load_published_head(self, head: StructureHead, classifier_state: Mapping[str, torch.Tensor]) -> None:
        """Load released ``classifier.*`` weights: the head takes the file's sizes (C, N, K) and
        the published orientation (``symmetrize="lower"``); the task's settings follow, so a
        checkpoint saved afterwards describes this head."""
        shape = published_head_shape(classifier_state)
        if shape["d"] != head.d:
            raise ValueError(f"the published structure head reads d={shape['d']} states, the encoder gives {head.d}")
        head.reshape(shape["channels"], shape["blocks"], shape["kernel_size"], symmetrize="lower")
        self.settings.update(head_channels=shape["channels"], head_blocks=shape["blocks"],
                             head_kernel=shape["kernel_size"], symmetrize="lower")
        head.load_published_state_dict(classifier_state)

    def allowed(self, batch: Batch) -> torch.Tensor:
        """The constraint of a batch: (B, L, L) bool (see :func:`pair_constraint`; published:
        :func:`published_constraint`, lower triangle only)."""
        distance = int(self.settings["min_pair_distance"])
        if not self.published:
            return pair_constraint(batch.targets["bases"], batch.padding_mask, distance)
        length = batch.tokens.shape[1]
        out = torch.zeros((len(batch.examples), length, length), dtype=torch.bool)
        for row, example in enumerate(batch.examples):
            n = len(example.tokens)
            out[row, :n, :n] = torch.from_numpy(published_constraint(example.info["sequence"], distance) > 0)
        return out.to(batch.tokens.device)

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Weighted BCE over the allowed pairs of the upper triangle (published: of the lower
        triangle, the published mask). ``output`` (B, L, L) logits."""
        contacts = batch.targets["contacts"]
        allowed = self.allowed(batch)
        mask = (allowed if self.published else torch.triu(allowed, diagonal=1)).float()
        weight = torch.where(contacts > 0.5, float(self.settings["positive_weight"]), 1.0)
        bce = F.binary_cross_entropy_with_logits(output.float(), contacts, reduction="none")
        return (bce * weight * mask).sum() / mask.sum().clamp(min=1.0)

    def probabilities(self, output: torch.Tensor, batch: Batch) -> list[np.ndarray]:
        """Pair probabilities inside the (symmetric) constraint of :func:`pair_constraint`, one
        (n, n) float32 array per example, whatever the protocol (what ``rnaret fold`` reads)."""
        allowed = pair_constraint(batch.targets["bases"], batch.padding_mask, int(self.settings["min_pair_distance"]))
        probs = (torch.sigmoid(output.float()) * allowed).cpu().numpy()
        return [probs[row, : len(e.tokens), : len(e.tokens)] for row, e in enumerate(batch.examples)]

    # -- evaluation -----------------------------------------------------------------------
    def predict(self, output: torch.Tensor, batch: Batch) -> list[dict]:
        """Rows ``{id, length, sequence, pairs, true_pairs}`` (pairs: decoded 1-based lists)."""
        threshold = float(self.settings["threshold"])
        if self.published:
            return self._predict_published(output, batch, threshold)
        rows = []
        for example, probs in zip(batch.examples, self.probabilities(output, batch)):
            pairs = decode_pairs(probs, probs > 0, threshold)
            rows.append({"id": example.id, "length": len(example.tokens), "sequence": example.info["sequence"],
                         "pairs": pairs, "true_pairs": [tuple(map(int, p)) for p in example.target]})
        return rows

    def _predict_published(self, output: torch.Tensor, batch: Batch, threshold: float) -> list[dict]:
        """Rows as ``predict``'s, decoded and scored as the published ``ssp.py`` does (module
        doc), with the per-sequence ``precision, recall, f1`` and ``pred_cells`` (the decoded
        map's cells, 1-based ``(i, j)``; ``pairs`` holds the mutual ones, i < j)."""
        from rnaret.metrics import published_pair_scores

        distance = int(self.settings["min_pair_distance"])
        rows = []
        for row, example in enumerate(batch.examples):
            n = len(example.tokens)
            sequence = example.info["sequence"]
            decoded = published_decode(output[row, :n, :n], published_constraint(sequence, distance), threshold)
            scores = published_pair_scores(pair_map(example.target, n), decoded)
            cells = [(int(i) + 1, int(j) + 1) for i, j in np.argwhere(decoded)]
            mutual = [(i, j) for i, j in cells if i < j and decoded[j - 1, i - 1]]
            rows.append({"id": example.id, "length": n, "sequence": sequence, "pairs": mutual,
                         "true_pairs": [tuple(map(int, p)) for p in example.target], "pred_cells": cells,
                         "precision": scores.precision, "recall": scores.recall, "f1": scores.f1})
        return rows

    def metrics(self, rows: list[dict]) -> dict[str, float]:
        """``rnaret.metrics.structure_scores`` of the rows; published: the means of the rows'
        published per-sequence scores (``f1, precision, recall, n``)."""
        if self.published:
            return {key: float(np.mean([r[key] for r in rows])) for key in ("f1", "precision", "recall")} | \
                {"n": len(rows)}
        metrics, _ = structure_scores([r["true_pairs"] for r in rows], [r["pairs"] for r in rows])
        return metrics

    def sequence_scores(self, rows: list[dict]) -> list[dict]:
        """Per-sequence scores of the rows (the columns of predictions.tsv before the structures)."""
        if self.published:
            return [{"precision": r["precision"], "recall": r["recall"], "f1": r["f1"],
                     "n_true_cells": int(len(pair_map(r["true_pairs"], r["length"]).nonzero()[0])),
                     "n_pred_cells": len(r["pred_cells"])} for r in rows]
        return structure_scores([r["true_pairs"] for r in rows], [r["pairs"] for r in rows])[1]

    def write_outputs(self, rows: list[dict], metrics: dict, out_dir: Path) -> list[Path]:
        """``predictions.{dbn,ct,tsv}``, ``predictions_bpseq/`` and ``contact_maps.png`` in ``out_dir``."""
        out_dir = Path(out_dir)
        records = [StructureRecord(r["id"], r["sequence"], list(r["pairs"])) for r in rows]
        paths = write_structure_files(records, out_dir)
        per_sequence = self.sequence_scores(rows)
        table = []
        for row, scores in zip(rows, per_sequence):
            table.append({"id": row["id"], "length": row["length"], **scores,
                          "structure": dot_bracket_of(row["pairs"], row["length"]),
                          "true_structure": dot_bracket_of(row["true_pairs"], row["length"])})
        paths += super().write_outputs(table, metrics, out_dir)
        paths.append(self.plot_contact_maps(rows, out_dir / "contact_maps.png"))
        return paths

    def plot_contact_maps(self, rows: list[dict], path: Path) -> Path:
        """Predicted vs true pair maps of ``contact_map_examples`` sequences picked at evenly
        spaced length quantiles among those with a true pair."""
        from rnaret.figures import pick_examples, plot_contact_maps

        by_id = {r["id"]: r for r in rows}
        truth = [StructureRecord(r["id"], r["sequence"], list(r["true_pairs"])) for r in rows]
        chosen = pick_examples(truth, max(1, int(self.settings.get("contact_map_examples") or 4)))
        examples = [(t.id, len(t.sequence), t.pairs, by_id[t.id]["pairs"]) for t in chosen]
        mean_f1 = self.metrics(rows)["f1"]
        return plot_contact_maps(examples, path, f"secondary structure: predicted vs true (mean F1 {mean_f1:.3f})")


def write_structure_files(records: list[StructureRecord], out_dir, stem: str = "predictions") -> list[Path]:
    """``<stem>.dbn``, ``<stem>.ct`` and the folder ``<stem>_bpseq/`` (one ``<id>.bpseq`` per record,
    ids made file-safe by :func:`file_names`), each written atomically -> their paths."""
    from rnaret.io.atomic import atomic_dir, atomic_open
    from rnaret.io.structure import format_bpseq, write_ct

    out_dir = Path(out_dir)
    dbn = out_dir / f"{stem}.dbn"
    with atomic_open(dbn) as handle:
        for record in records:
            text = dot_bracket_of(record.pairs, len(record.sequence))
            left_out = len(record.pairs) - sum(text.count(opening) for opening, _ in BRACKETS)
            note = ""
            if left_out:  # never silently shorter: said in the record's header line and in the log
                note = f" pairs_left_out={left_out} (all {len(record.pairs)} pairs are in {stem}.ct and {stem}_bpseq/)"
                print(f"{dbn}: record {record.id!r}: {left_out} of {len(record.pairs)} predicted pairs do not fit "
                      f"dot-bracket's 30 bracket pages; {stem}.ct and {stem}_bpseq/ hold every pair", file=sys.stderr)
            handle.write(f">{record.id}{note}\n{record.sequence}\n{text}\n")
    ct = out_dir / f"{stem}.ct"
    write_ct(records, ct)
    folder = out_dir / f"{stem}_bpseq"
    with atomic_dir(folder) as tmp:
        for record, name in zip(records, file_names([r.id for r in records])):
            (tmp / f"{name}.bpseq").write_text(format_bpseq(record))
    return [dbn, ct, folder]


def file_names(ids: list[str]) -> list[str]:
    """File-safe, unique names for record ids: characters outside ``A-Za-z0-9._-`` become ``_``,
    a leading dot too, and a name already taken gets ``_2``, ``_3`` ..."""
    taken: set[str] = set()
    out = []
    for rid in ids:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", rid) or "_"
        if base.startswith("."):
            base = "_" + base[1:]
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        out.append(name)
    return out


__all__ = ["StructureTask", "pair_constraint", "decode_pairs", "base_codes", "dot_bracket_of",
           "published_constraint", "published_decode", "pair_map",
           "write_structure_files", "file_names", "CANONICAL"]
