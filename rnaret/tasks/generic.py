"""The generic tasks: fine-tune and evaluate on any labelled table, through the paper tasks' loop.

Four task types, one class each, all subclasses of :class:`GenericTask`:

| task | label | head | loss | metrics (scikit-learn, scipy) |
|---|---|---|---|---|
| ``sequence-classification`` | a class per sequence | :class:`SequenceHead` | cross-entropy | accuracy, f1_macro, mcc, auc (one-vs-rest), n |
| ``sequence-regression`` | a number per sequence | :class:`SequenceHead` (1 output) | MSE | pearson, spearman, rmse, r2, n |
| ``token-classification`` | a class per nucleotide | :class:`TokenHead` | cross-entropy per position | the same, over all labelled positions; n_positions |
| ``token-regression`` | a number per nucleotide | :class:`TokenHead` (1 output) | MSE per position | the same, over all labelled positions; n_positions |

Data (``rnaret.io.labels``): a label table (``id, sequence, label``) or a FASTA with a side table
(a split given as ``{path: seqs.fa, labels: labels.tsv}``). Inputs: sequence-level tasks read
``[CLS] + k-mer tokens`` (the head reads the CLS state or the mean state); per-position tasks read
the k-mer tokens alone, one per nucleotide (k // 2 FILL flanks), so output i is nucleotide i.

What the training split fixes is stored in the settings, hence with a fine-tuned checkpoint
(``task.json``): ``classes`` (the label values, sorted — numerically when they are integers; the
first split read fixes them, which is train in a fine-tuning run) and ``label_scale`` ([mean, sd]
of the regression labels; the head predicts standardised values). A later split with a label
outside ``classes`` is an error naming its file, line and record; so is a training split with one
class only.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from rnaret.heads.generic import SequenceHead, TokenHead
from rnaret.io.errors import InputError
from rnaret.io.labels import LabelRecord, number_label, position_labels, read_labels
from rnaret.metrics import multiclass_metrics, regression_metrics
from rnaret.tasks.base import Batch, Example, Task, pad_tokens, split_source
from rnaret.tasks.settings import TASK_DEFAULTS, TASK_PRESETS
from rnaret.tokenizer import CLS, encode

IGNORE = -100  # target of an unlabelled position (cross-entropy's ignore_index)


def _class_order(value: str):
    text = value.strip()
    return (0, int(text), "") if text.lstrip("+-").isdigit() else (1, 0, value)


class GenericTask(Task):
    """A task on a labelled table; subclasses set ``name`` (module docstring), from which follow
    ``level`` (its first word), ``numeric`` (a regression), ``selection_metric`` (pearson for a
    regression, mcc for a classification) and the defaults and presets."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.level, kind = cls.name.split("-")
        cls.numeric = kind == "regression"
        cls.selection_metric = "pearson" if cls.numeric else "mcc"
        cls.default_settings = TASK_DEFAULTS[cls.name]
        cls.presets = TASK_PRESETS[cls.name]

    level: str = "sequence"     # "sequence" or "token"
    numeric: bool = False       # regression (True) or classification (False)

    def __init__(self, settings: Mapping[str, Any] | None = None):
        super().__init__(settings)
        # the one-hot control pools the letters at CLS when the head reads CLS
        self.cls_segments = 1 if self.level == "sequence" and self.settings.get("pooling") == "cls" else None
        if self.level == "sequence" and self.settings.get("pooling") not in ("cls", "mean"):
            raise ValueError(f"pooling must be cls or mean, got {self.settings.get('pooling')!r}")

    @property
    def classes(self) -> list[str]:
        """The class labels, output i = classes[i] (fixed by the first split read)."""
        return [str(c) for c in self.settings.get("classes") or []]

    # -- data -----------------------------------------------------------------------------
    def read_source(self, spec) -> list[Example]:
        """A split given as a path or ``{path, split}``, or a FASTA as ``{path, labels}``."""
        labels = spec.get("labels") if isinstance(spec, Mapping) else None
        path, select = split_source(spec)
        return self.read_split(path, select, labels=labels)

    def read_split(self, path, select: str | None = None, labels=None) -> list[Example]:
        """Labelled sequences of ``path`` (``rnaret.io.labels.read_labels``; ``labels``: the side
        table of a FASTA) -> examples; the first split read fixes ``classes``/``label_scale``."""
        records = read_labels(path, select, labels)
        values = [self._values(r) for r in records]
        if self.numeric:
            self._fix_scale(values)
        else:
            self._fix_classes(records, values, labels or path)
        return [self._example(r, v) for r, v in zip(records, values)]

    def _values(self, record: LabelRecord) -> list:
        """The record's labels as a list (one item for sequence tasks), None = unlabelled."""
        if self.level == "token":
            if len(record.sequence) < self.k:
                raise InputError(record.path, f"a sequence of {len(record.sequence)} nt is shorter than k={self.k}: "
                                              "its k-mer tokens cannot give one output per nucleotide",
                                 record=record.id, line=record.line)
            return position_labels(record, self.numeric)
        return [number_label(record) if self.numeric else record.label]

    def _fix_classes(self, records: list[LabelRecord], values: list[list], path) -> None:
        if self.settings.get("classes") is None:
            found = sorted({v for vs in values for v in vs if v is not None}, key=_class_order)
            if len(found) < 2:
                raise InputError(path, f"one class only ({found[0]!r} in every labelled "
                                       f"{'position' if self.level == 'token' else 'row'}): "
                                       "classification needs two classes or more" if found
                                 else "no labelled position")
            self.settings["classes"] = found
            return
        known = set(self.classes)
        for record, vs in zip(records, values):
            for position, v in enumerate(vs, start=1):
                if v is not None and v not in known:
                    at = f"position {position}: " if self.level == "token" else ""
                    raise InputError(record.path, f"{at}unknown label {v!r}: not one of the classes of the "
                                                  f"training split {self.classes[:20]}", record=record.id,
                                     line=record.line)

    def _fix_scale(self, values: list[list]) -> None:
        if self.settings.get("label_scale") is None:
            flat = np.array([v for vs in values for v in vs if v is not None], dtype=np.float64)
            sd = float(flat.std()) if len(flat) > 1 else 0.0
            self.settings["label_scale"] = [float(flat.mean()) if len(flat) else 0.0, sd if sd > 0 else 1.0]

    def _example(self, record: LabelRecord, values: list) -> Example:
        n = len(record.sequence)
        info: dict[str, Any] = {"label": record.label, "length": n}
        if self.level == "sequence":
            tokens = np.concatenate([[CLS], encode(record.sequence, self.k)]).astype(np.int64)
            target = self._scaled(values[0]) if self.numeric else self.classes.index(values[0])
        else:
            tokens = encode(record.sequence, self.k)
            if self.numeric:
                target = np.array([math.nan if v is None else self._scaled(v) for v in values], dtype=np.float32)
            else:
                index = {c: i for i, c in enumerate(self.classes)}
                target = np.array([IGNORE if v is None else index[v] for v in values], dtype=np.int64)
        return Example(record.id, tokens, target, info)

    def _scaled(self, value: float) -> float:
        mean, sd = self.settings["label_scale"]
        return (float(value) - mean) / sd

    def _unscaled(self, values: np.ndarray) -> np.ndarray:
        mean, sd = self.settings["label_scale"]
        return values * sd + mean

    def collate(self, examples: list[Example]) -> Batch:
        """Padded tokens; targets (B,) int64/float32 (sequence tasks) or (B, L) per position
        (IGNORE / NaN at padding and unlabelled positions)."""
        tokens, padding_mask = pad_tokens([e.tokens for e in examples])
        if self.level == "sequence":
            dtype = torch.float32 if self.numeric else torch.long
            targets = torch.tensor([e.target for e in examples], dtype=dtype)
        else:
            fill = math.nan if self.numeric else IGNORE
            targets = torch.full(tokens.shape, fill, dtype=torch.float32 if self.numeric else torch.long)
            for row, e in enumerate(examples):
                targets[row, : len(e.target)] = torch.from_numpy(np.asarray(e.target))
        return Batch(tokens, padding_mask, targets, examples)

    # -- model ----------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        """Outputs of the head: 1 for regression, else the number of classes."""
        return 1 if self.numeric else len(self.classes)

    def build_head(self, d: int):
        """The sequence or per-position head for width d (``rnaret.heads.generic``)."""
        if not self.numeric and len(self.classes) < 2:
            raise ValueError(f"the {self.name} head needs the classes: read the training split first "
                             "or set `classes`")
        dropout = float(self.settings.get("head_dropout") or 0.0)
        if self.level == "sequence":
            return SequenceHead(d, self.n_outputs, str(self.settings["pooling"]), dropout)
        return TokenHead(d, self.n_outputs, int(self.settings.get("hidden") or 128), dropout=dropout)

    def load_published_head(self, head, classifier_state) -> None:
        """No released fine-tuned weights exist for the generic tasks."""
        raise ValueError(f"no released fine-tuned weights exist for {self.name}: start from a pretrained encoder")

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy or MSE (sequence tasks); per position over labelled positions."""
        targets = batch.targets
        if self.level == "sequence":
            if self.numeric:
                return F.mse_loss(output[:, 0].float(), targets.float())
            return F.cross_entropy(output.float(), targets)
        if self.numeric:
            labelled = ~torch.isnan(targets)
            if not labelled.any():
                return output.float().sum() * 0.0
            return F.mse_loss(output[..., 0].float()[labelled], targets[labelled])
        if not (targets != IGNORE).any():
            return output.float().sum() * 0.0
        return F.cross_entropy(output.float().reshape(-1, output.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE)

    # -- evaluation -----------------------------------------------------------------------
    def predict(self, output: torch.Tensor, batch: Batch) -> list[dict]:
        """Rows: id, label, length, prediction (class or value; per position: a string of
        one-letter classes or a JSON list), and for sequence classification score (the
        predicted class's probability) and p_<class> per class. Keys starting with ``_`` hold
        per-position arrays for the metrics and are not written."""
        output = output.float()
        rows = []
        if self.level == "sequence":
            if self.numeric:
                values = self._unscaled(output[:, 0].cpu().numpy().astype(np.float64))
                for e, v in zip(batch.examples, values):
                    rows.append({"id": e.id, **e.info, "prediction": float(v)})
                return rows
            probs = torch.softmax(output, dim=-1).cpu().numpy()
            for e, p in zip(batch.examples, probs):
                row = {"id": e.id, **e.info, "prediction": self.classes[int(p.argmax())], "score": float(p.max())}
                row.update({f"p_{c}": float(q) for c, q in zip(self.classes, p)})
                rows.append(row)
            return rows
        short = all(len(c) == 1 for c in self.classes)
        for row_index, e in enumerate(batch.examples):
            n = len(e.tokens)
            if self.numeric:
                values = self._unscaled(output[row_index, :n, 0].cpu().numpy().astype(np.float64))
                truth = self._unscaled(np.asarray(e.target, dtype=np.float64))
                rows.append({"id": e.id, **e.info, "prediction": json.dumps([round(float(v), 4) for v in values]),
                             "_predicted": values, "_true": truth})
            else:
                probs = torch.softmax(output[row_index, :n], dim=-1).cpu().numpy()
                names = [self.classes[i] for i in probs.argmax(axis=1)]
                rows.append({"id": e.id, **e.info, "prediction": "".join(names) if short else json.dumps(names),
                             "_probabilities": probs, "_true": np.asarray(e.target)})
        return rows

    def metrics(self, rows: list[dict]) -> dict[str, float]:
        """Classification: accuracy, f1_macro, mcc, auc, n (+ n_classes); regression: pearson,
        spearman, rmse, r2, n; per-position tasks over every labelled position, with
        n = sequences and n_positions = labelled positions."""
        if self.level == "sequence":
            if self.numeric:
                return regression_metrics([float(r["label"]) for r in rows], [r["prediction"] for r in rows])
            index = {c: i for i, c in enumerate(self.classes)}
            probs = np.array([[r[f"p_{c}"] for c in self.classes] for r in rows]).reshape(len(rows), -1)
            return multiclass_metrics([index[r["label"]] for r in rows], probs)
        if self.numeric:
            truth = np.concatenate([r["_true"] for r in rows]) if rows else np.zeros(0)
            predicted = np.concatenate([r["_predicted"] for r in rows]) if rows else np.zeros(0)
            labelled = ~np.isnan(truth)
            out = regression_metrics(truth[labelled], predicted[labelled])
        else:
            truth = np.concatenate([r["_true"] for r in rows]) if rows else np.zeros(0, dtype=np.int64)
            probs = (np.concatenate([r["_probabilities"] for r in rows]) if rows
                     else np.zeros((0, len(self.classes))))
            labelled = truth != IGNORE
            out = multiclass_metrics(truth[labelled], probs[labelled])
        out["n_positions"] = out.pop("n")
        out["n"] = len(rows)
        return out

    def write_outputs(self, rows: list[dict], metrics: dict, out_dir: Path) -> list[Path]:
        """predictions.tsv (without the per-position arrays kept for the metrics)."""
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        return super().write_outputs(public, metrics, out_dir)


def _task_type(name: str, doc: str) -> type[GenericTask]:
    """The GenericTask subclass of task ``name`` (``sequence-classification`` ->
    ``SequenceClassificationTask``), with ``doc`` as its docstring."""
    class_name = "".join(word.title() for word in name.split("-")) + "Task"
    return type(class_name, (GenericTask,), {"name": name, "__doc__": doc, "__module__": __name__})


SequenceClassificationTask = _task_type("sequence-classification", "A class per sequence (binary or multi-class).")
SequenceRegressionTask = _task_type("sequence-regression", "A number per sequence.")
TokenClassificationTask = _task_type("token-classification", "A class per nucleotide.")
TokenRegressionTask = _task_type("token-regression", "A number per nucleotide.")
