"""The downstream-task interface: what a task provides to the generic fine-tuning loop.

A task (``interaction``, ``coding``, ``structure``) is a subclass of :class:`Task`. The generic
loop in :mod:`rnaret.tasks.finetune` never looks inside examples, targets or head outputs; it
only calls these methods, in this order:

1. ``Task(settings)`` — ``settings`` is the config's ``finetune.<name>.settings`` mapping,
   applied over ``COMMON_SETTINGS``, the task's defaults (the published recipe) and the preset
   it names ("paper" or "laptop"), by ``rnaret.tasks.settings.resolve_task_settings`` (the tables
   live there, free of torch); unknown keys are an error. ``task.k`` is the tokenizer k the task
   needs (checked against the encoder's ``k``).
2. ``task.load_dataset(entry)`` — ``entry`` is one ``datasets.<task>.<name>`` mapping of the
   config (``{train: path, valid: path, test: path, ...}``); it calls ``read_source(value)``
   per split (by default ``read_split(path, split)``; a split may carry more, e.g. the generic
   tasks' side table of labels) and returns ``{split: [Example, ...]}``. When an entry has ``train`` but no
   ``valid``, a fixed seeded fraction of train (``valid_fraction``) is held out by example id.
3. ``task.build_head(d)`` — an ``nn.Module`` whose ``forward(states, padding_mask)`` reads the
   encoder's ``last_inner_state`` (B, L, d) — the last layer's output before the final RMSNorm,
   what the published heads read — and ``padding_mask`` (B, L) bool, True at REAL positions
   (the encoder's convention; False at padding).
4. Training: ``task.train_view(example, rng)`` (e.g. a random crop; identity by default), then
   ``task.collate(examples)`` -> :class:`Batch`, the model's head output, ``task.loss(output,
   batch)`` -> scalar tensor.
5. Evaluation: ``task.collate`` without ``train_view``, ``task.predict(output, batch)`` -> one
   dict per example (the rows of ``predictions.tsv``; must hold ``id``), then
   ``task.metrics(rows)`` -> ``{name: float}`` (written as ``metrics.tsv``), and
   ``task.write_outputs(rows, metrics, out_dir)`` for predictions and figures.
   The best checkpoint is the one with the highest ``metrics[task.selection]`` on the
   validation split (``select_on``, by default the task's ``selection_metric``).
6. Published fine-tuned weights (``ret.*`` + ``classifier.*``): ``task.load_published_head(head,
   classifier_state)`` loads the ``classifier.*`` part (prefix stripped) strictly.

Adding a task: subclass :class:`Task` in ``rnaret/tasks/<name>.py``, add its defaults and presets
to ``rnaret.tasks.settings`` and one line to ``rnaret.tasks.TASKS``.
"""
from __future__ import annotations

import abc
import copy
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from rnaret.io.errors import InputError
# the settings tables and their merge are torch-free; COMMON_SETTINGS re-exported for callers
from rnaret.tasks.settings import COMMON_SETTINGS, resolve_task_settings  # noqa: F401
from rnaret.tasks.protocol import is_published
from rnaret.tokenizer import PAD


@dataclass
class Example:
    """One input of a task.

    ``tokens``: (L,) int64 model input ids (special tokens included), no padding.
    ``target``: what the loss compares with (an int label, or an (L,) array of per-token labels).
    ``info``: per-example fields copied into the predictions (e.g. ``label``, ``length``).
    """

    id: str
    tokens: np.ndarray
    target: Any
    info: dict = field(default_factory=dict)


@dataclass
class Batch:
    """A padded batch.

    ``tokens`` (B, L) int64 right-padded with PAD; ``padding_mask`` (B, L) bool, True at real
    positions and False at padding (the encoder's convention);
    ``targets`` task-specific tensors; ``examples`` the examples in batch order.
    """

    tokens: torch.Tensor
    padding_mask: torch.Tensor
    targets: Any
    examples: list[Example]

    def to(self, device) -> "Batch":
        """The batch with its tensors (also those inside a dict/tuple of targets) on ``device``."""
        return Batch(self.tokens.to(device), self.padding_mask.to(device),
                     _to_device(self.targets, device), self.examples)


def _to_device(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(item, device) for item in value)
    return value


def pad_tokens(token_arrays: list[np.ndarray], length: int | None = None, masked: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (L_i,) int64 arrays with PAD -> tokens (B, L) int64 and padding_mask (B, L) bool,
    True at real positions.

    ``length``: L (None: the longest array); ValueError when an array is longer. ``masked``
    False: padding_mask is True everywhere, so the encoder reads the PAD tokens as input (what
    the published scripts' models saw: inputs padded to a fixed length, no mask).
    """
    longest = max(len(t) for t in token_arrays)
    if length is None:
        length = longest
    elif longest > length:
        raise ValueError(f"an input of {longest} tokens does not fit the padded length {length}")
    tokens = torch.full((len(token_arrays), length), PAD, dtype=torch.long)
    for row, ids in enumerate(token_arrays):
        tokens[row, : len(ids)] = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    if not masked:
        return tokens, torch.ones_like(tokens, dtype=torch.bool)
    padding_mask = torch.zeros_like(tokens, dtype=torch.bool)
    for row, ids in enumerate(token_arrays):
        padding_mask[row, : len(ids)] = True
    return tokens, padding_mask


def real_positions(batch: "Batch") -> torch.Tensor:
    """(B, L) bool on the batch's device, True at each example's own tokens (``len(tokens)``),
    whether or not the model was shown the padding (``padding_mask``)."""
    lengths = torch.tensor([len(e.tokens) for e in batch.examples], device=batch.tokens.device)
    return torch.arange(batch.tokens.shape[1], device=batch.tokens.device).unsqueeze(0) < lengths.unsqueeze(1)


def split_source(spec) -> tuple[str, str | None]:
    """A split's config value -> (path, select): a path, or ``{path: ..., split: value}``."""
    if isinstance(spec, Mapping):
        if "path" not in spec:
            raise InputError(None, f"a split given as a mapping needs 'path' (got keys {sorted(spec)})")
        select = spec.get("split")
        return str(spec["path"]), (None if select is None else str(select))
    return str(spec), None


def stable_fraction(example_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by (id, seed): holds an example out independently of file order."""
    return zlib.crc32(f"{seed}:{example_id}".encode()) / 2**32


class Task(abc.ABC):
    """Base class of a downstream task; see the module docstring for the call order."""

    name: ClassVar[str]
    #: task-specific defaults (the published recipe) merged over COMMON_SETTINGS, and the named
    #: budgets applied over them ("paper", "laptop"): the tables of rnaret.tasks.settings
    default_settings: ClassVar[dict[str, Any]]
    presets: ClassVar[dict[str, dict[str, Any]]]
    #: validation metric that picks the best checkpoint (higher is better)
    selection_metric: ClassVar[str]
    #: splits an entry may name; others are rejected with an error naming the key
    known_splits: ClassVar[tuple[str, ...]] = ("train", "valid", "test")
    #: for a head that reads position 0 only (a CLS head): the number of CLS/SEP-led segments of
    #: an input, so that the one-hot control puts their pooled one-hot vectors there
    #: (``rnaret.model.onehot``); None for per-position heads
    cls_segments: ClassVar[int | None] = None

    def __init__(self, settings: Mapping[str, Any] | None = None):
        self.settings = resolve_task_settings(self.name, settings)
        #: per split read by load_dataset: {count name: n} of what reading left out or changed
        #: (e.g. ``skipped_unreadable``, ``dropped_too_long``); written to metrics.tsv by evaluate
        self.read_counts: dict[str, dict[str, int]] = {}
        self._pending_counts: dict[str, int] = {}

    @property
    def published(self) -> bool:
        """True under the published protocol (``rnaret.tasks.protocol``)."""
        return is_published(self.settings)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the count ``name`` of the split being read (see ``read_counts``)."""
        self._pending_counts[name] = self._pending_counts.get(name, 0) + int(n)

    @property
    def k(self) -> int:
        """Tokenizer k of this task's inputs."""
        return int(self.settings["k"])

    # -- data -----------------------------------------------------------------------------
    @abc.abstractmethod
    def read_split(self, path, select: str | None = None) -> list[Example]:
        """Read one split file into examples (tokenized at ``self.k``); raise InputError on bad input.

        ``select``: for a table with a ``split`` column, keep only the rows whose ``split``
        equals it (None: every row); a task whose files have no such column rejects it.
        """

    def load_dataset(self, entry: Mapping[str, Any], splits: tuple[str, ...] | None = None
                     ) -> dict[str, list[Example]]:
        """Read the splits of a config dataset entry -> ``{split: [Example]}``.

        ``entry`` maps split names to a path or to ``{path: table, split: value}`` (the rows of
        one table whose ``split`` column equals value); other keys such as ``finetuned_on`` are
        ignored.
        ``splits`` restricts what is read (e.g. ``("test",)`` for evaluation only). When train and
        valid are wanted and the entry has no ``valid``, the train examples whose
        ``stable_fraction(id, seed)`` is below ``valid_fraction`` become the validation split
        (by example id, e.g. the transcript id: the same ids for the same seed, whatever the
        file order).
        """
        wanted = splits or tuple(s for s in self.known_splits
                                 if s in entry or (s == "valid" and "train" in entry))
        hold_out = "valid" in wanted and "train" in wanted and entry.get("valid") in (None, "")
        out: dict[str, list[Example]] = {}
        for split in wanted:
            if split == "valid" and hold_out:
                continue
            if split not in entry or entry[split] in (None, ""):
                raise InputError(None, f"the {self.name} dataset entry has no {split!r} split "
                                       f"(keys: {sorted(entry)})")
            path = split_source(entry[split])[0]
            self._pending_counts = {}
            out[split] = self.read_source(entry[split])
            self.read_counts[split], self._pending_counts = self._pending_counts, {}
            if not out[split]:
                raise InputError(path, f"the {split} split has no examples")
        if hold_out:
            fraction = float(self.settings["valid_fraction"])
            seed = int(self.settings["seed"])
            held = [stable_fraction(e.id, seed) < fraction for e in out["train"]]
            out["valid"] = [e for e, h in zip(out["train"], held) if h]
            out["train"] = [e for e, h in zip(out["train"], held) if not h]
            if not out["valid"] or not out["train"]:
                raise InputError(split_source(entry["train"])[0], f"holding out valid_fraction={fraction} "
                                                                  f"of train leaves an empty split")
        return out

    def read_source(self, spec) -> list[Example]:
        """Read one split as the entry gives it (a path or ``{path, split, ...}``): by default
        ``read_split(path, select)``; a task whose splits carry more (a side table) overrides it."""
        path, select = split_source(spec)
        return self.read_split(path, select)

    def train_view(self, example: Example, rng: np.random.Generator) -> Example:
        """The example as seen in one training step (e.g. a random crop); identity by default."""
        return example

    @abc.abstractmethod
    def collate(self, examples: list[Example]) -> Batch:
        """Pad examples into a :class:`Batch` (use :func:`pad_tokens`)."""

    def padded_length(self) -> int | None:
        """The fixed length ``collate`` pads every input to (the published protocol's inputs of
        interaction and coding), or None: a batch is padded to its longest input."""
        return None

    def batch_lengths(self, examples: list[Example]) -> list[int]:
        """The number of tokens each example takes in a batch (for token-budget batching)."""
        fixed = self.padded_length()
        return [fixed or len(e.tokens) for e in examples]

    # -- model ----------------------------------------------------------------------------
    @abc.abstractmethod
    def build_head(self, d: int) -> nn.Module:
        """The head for encoder width ``d``: ``forward(states (B,L,d), padding_mask (B,L)) -> output``."""

    def load_published_head(self, head: nn.Module, classifier_state: Mapping[str, torch.Tensor]) -> None:
        """Load the published ``classifier.*`` weights (prefix stripped) into ``head``, strictly.

        Heads define ``load_published_state_dict``; this raises a ValueError naming missing,
        unexpected or mis-shaped keys.
        """
        head.load_published_state_dict(classifier_state)

    @abc.abstractmethod
    def loss(self, output: Any, batch: Batch) -> torch.Tensor:
        """Scalar training loss of one batch (float32)."""

    # -- evaluation -----------------------------------------------------------------------
    @abc.abstractmethod
    def predict(self, output: Any, batch: Batch) -> list[dict]:
        """One row per example of ``batch`` (same order), each holding ``id`` and the prediction."""

    @abc.abstractmethod
    def metrics(self, rows: list[dict]) -> dict[str, float]:
        """Metrics of a split from its prediction rows (e.g. accuracy, auc, ..., n)."""

    def write_outputs(self, rows: list[dict], metrics: dict[str, float], out_dir: Path) -> list[Path]:
        """Write ``predictions.tsv`` (rows in input order) into ``out_dir`` atomically; return paths.

        Tasks extend this with figures (e.g. a ROC curve) or structure files.
        """
        import pandas as pd

        from rnaret.io.atomic import atomic_open

        out_dir = Path(out_dir)
        path = out_dir / "predictions.tsv"
        with atomic_open(path) as handle:
            pd.DataFrame(rows).to_csv(handle, sep="\t", index=False, float_format="%.6g")
        return [path]

    @property
    def selection(self) -> str:
        """The validation metric that picks the best checkpoint (``select_on`` or the task's)."""
        return str(self.settings.get("select_on") or self.selection_metric)

    def describe(self) -> dict[str, Any]:
        """The task's name and settings, stored with a fine-tuned checkpoint."""
        return {"task": self.name, "settings": copy.deepcopy(self.settings)}
