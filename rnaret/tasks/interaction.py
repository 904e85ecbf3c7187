"""miRNA-target interaction: classify a (miRNA, target site) pair, as published (k = 5).

Input layout (published ``rri.py``, reproduced exactly, without its right padding to 81):
``[CLS] + encode(miRNA 5'->3', k) + [SEP] + encode(site, k)`` — the stored 3'->5' miRNA is
reversed, U read as T, each part with its own k//2 FILL flanks, SEP = the CLS id (3).
Head: CLS state -> Linear(d, d) -> tanh -> Linear(d, 2); cross-entropy over the 2 classes.
Score = softmax probability of class 1; prediction = score >= 0.5 (= argmax).
Metrics: accuracy, precision, recall, f1, auc, mcc, n (+ n_pos, n_neg).

Under the published protocol (``rnaret.tasks.protocol``), as ``rri.py`` computes: every input
padded with PAD to ``max_len + 1`` tokens (80 + the leading CLS) and no padding mask, so the
encoder reads the padding as the released models were trained to; a pair that does not fit is
an error (the script fails on it too); score = the raw class-1 logit (the AUC ranks by it),
prediction = the argmax of the two logits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnaret.heads.interaction import InteractionHead
from rnaret.io.dataset_readers import read_dataset
from rnaret.io.errors import InputError
from rnaret.metrics import classification_metrics
from rnaret.tasks.base import Batch, Example, Task, pad_tokens
from rnaret.tasks.settings import TASK_DEFAULTS, TASK_PRESETS
from rnaret.tasks.figures import plot_roc
from rnaret.tokenizer import CLS, SEP, encode


def pair_tokens(mirna: str, site: str, k: int) -> np.ndarray:
    """Token ids (L,) of one pair: CLS, miRNA (5'->3') k-mers, SEP, site k-mers (see module doc)."""
    return np.concatenate([[CLS], encode(mirna, k), [SEP], encode(site, k)]).astype(np.int64)


class InteractionTask(Task):
    """miRNA-target interaction (see the module docstring)."""

    name = "interaction"
    selection_metric = "auc"
    cls_segments = 2  # [CLS] miRNA [SEP] site: the one-hot control pools both parts at CLS
    # the published recipe and the presets: rnaret.tasks.settings (torch-free, read by the pipeline)
    default_settings = TASK_DEFAULTS["interaction"]
    presets = TASK_PRESETS["interaction"]

    def read_split(self, path, select: str | None = None) -> list[Example]:
        """Pairs of a miRNA-target table (our TSV or the published 5-column ``.txt``, read by
        ``rnaret.io.dataset_readers.read_dataset``; ``select`` = split column value) -> examples with
        target = label and id ``<file>:<line>``."""
        examples = []
        limit = self.padded_length()
        for row in read_dataset(path, self.name, select):
            tokens = pair_tokens(row.mirna, row.site, self.k)
            if limit is not None and len(tokens) > limit:
                raise InputError(path, f"the pair takes {len(tokens)} tokens, more than the published input "
                                       f"length max_len + 1 = {limit}", record=row.mirna_id, line=row.line)
            examples.append(Example(
                id=f"{Path(path).name}:{row.line}", tokens=tokens, target=row.label,
                info={"line": row.line, "mirna_id": row.mirna_id, "target_id": row.target_id, "label": row.label}))
        return examples

    def padded_length(self) -> int | None:
        """The published input length (``max_len`` + the leading CLS) under the published
        protocol, else None (batches padded to their longest pair, padding masked)."""
        if not self.published:
            return None
        return int(self.settings["max_len"]) + 1

    def collate(self, examples: list[Example]) -> Batch:
        """Padded pairs; targets (B,) int64 labels."""
        length = self.padded_length()
        tokens, padding_mask = pad_tokens([e.tokens for e in examples], length, masked=length is None)
        targets = torch.tensor([int(e.target) for e in examples], dtype=torch.long)
        return Batch(tokens, padding_mask, targets, examples)

    def build_head(self, d: int) -> InteractionHead:
        """The published CLS head for width d (logits (B, 2))."""
        return InteractionHead(d, 2, dropout=float(self.settings.get("head_dropout") or 0.0))

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy of logits (B, 2) against the labels."""
        return F.cross_entropy(output, batch.targets)

    def predict(self, output: torch.Tensor, batch: Batch) -> list[dict]:
        """Rows: id, line, mirna_id, target_id, label, score (P(class 1); published: the class-1
        logit), prediction (score >= 0.5; published: the argmax of the logits)."""
        if self.published:
            logits = output.float().cpu()
            predictions = torch.argmax(logits, dim=-1).numpy()
            return [{"id": e.id, **e.info, "score": float(s), "prediction": int(p)}
                    for e, s, p in zip(batch.examples, logits[:, 1].numpy(), predictions)]
        scores = torch.softmax(output, dim=-1)[:, 1].cpu().numpy()
        return [{"id": e.id, **e.info, "score": float(s), "prediction": int(s >= 0.5)}
                for e, s in zip(batch.examples, scores)]

    def metrics(self, rows: list[dict]) -> dict[str, float]:
        """accuracy, precision, recall, f1, auc, mcc, n, n_pos, n_neg (``rnaret.metrics``);
        published: of the rows' argmax predictions."""
        predictions = [r["prediction"] for r in rows] if self.published else None
        return classification_metrics([r["label"] for r in rows], [r["score"] for r in rows],
                                      predictions=predictions)

    def write_outputs(self, rows: list[dict], metrics: dict, out_dir: Path) -> list[Path]:
        """predictions.tsv and roc.png in ``out_dir``."""
        paths = super().write_outputs(rows, metrics, out_dir)
        paths.append(plot_roc([r["label"] for r in rows], [r["score"] for r in rows],
                              Path(out_dir) / "roc.png", "miRNA-target interaction"))
        return paths
