"""mRNA/lncRNA (coding potential), as published: per-position CDS tagging (k = 5 by default).

Input: the transcript's k-mer tokens, no special tokens, whole (no length cap: long transcripts
run through the encoder's chunkwise form). Per-position labels: 1 inside the CDS (``CDS:a-b``,
1-based inclusive) else 0; lncRNAs all 0. Loss: BCE per position over real positions.
Sequence score: the best 30-position window's mean probability; coding when >= 0.5.
Metrics: accuracy, precision, recall, f1, auc, mcc, n (+ n_pos, n_neg).

Training may see random crops (``train_crop`` tokens, an explicit setting; None = whole
transcripts): the crop is taken from the whole transcript's tokens and labels, so its k-mers
and labels are those of the full sequence. Evaluation always runs whole transcripts.

Under the published protocol (``rnaret.tasks.protocol``), as ``lnc.py`` computes: every
transcript (train, valid and test) cut to its first ``max_len`` nt (3,000; the number cut is
counted as ``cut_to_max_len``), per-position labels = the CDS clipped by the cut, sequence label
= 1 when any CDS position is left (a CDS starting past the cut makes a non-coding example);
inputs padded with PAD to ``max_len`` tokens without a padding mask (the encoder and the head
read the padding), while the loss and the window score see the transcript's own positions only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rnaret.heads.coding import CodingHead, position_loss, window_scores
from rnaret.io.dataset_readers import read_dataset
from rnaret.io.errors import InputError
from rnaret.io.transcripts import Transcript
from rnaret.metrics import classification_metrics
from rnaret.tasks.base import Batch, Example, Task, pad_tokens, real_positions
from rnaret.tasks.settings import TASK_DEFAULTS, TASK_PRESETS
from rnaret.tasks.figures import plot_roc
from rnaret.tokenizer import encode


def transcript_example(transcript: Transcript, k: int, path=None, max_len: int | None = None) -> Example:
    """Tokens (n,) and per-position labels (n,) float32 of one transcript of n >= k nt.

    ``max_len``: cut the transcript to its first ``max_len`` nt first (the published protocol);
    the CDS is clipped by the cut and the label is 1 when any CDS position is left."""
    sequence = transcript.sequence if max_len is None else transcript.sequence[:max_len]
    n = len(sequence)
    if n < k:
        raise InputError(path, f"the sequence ({n} nt) is shorter than k={k}", record=transcript.id,
                         line=transcript.line)
    tokens = encode(sequence, k)                                      # odd k: one token per nt
    labels = np.zeros(n, dtype=np.float32)
    cds = transcript.cds
    if cds is not None:
        labels[cds[0] - 1: cds[1]] = 1.0
        cds = (cds[0], min(cds[1], n)) if cds[0] <= n else None
    info = {"label": transcript.label if max_len is None else int(labels.any()), "length": n,
            "cds_start": cds[0] if cds else None, "cds_end": cds[1] if cds else None}
    return Example(transcript.id, tokens, labels, info)


class CodingTask(Task):
    """mRNA/lncRNA classification by CDS tagging (see the module docstring)."""

    name = "coding"
    selection_metric = "auc"
    # the published recipe and the presets: rnaret.tasks.settings (torch-free, read by the pipeline)
    default_settings = TASK_DEFAULTS["coding"]
    presets = TASK_PRESETS["coding"]

    def read_split(self, path, select: str | None = None) -> list[Example]:
        """Transcripts of a labelled FASTA (``rnaret.io.dataset_readers.read_dataset``; a FASTA has no
        split column, so ``select`` is refused) -> examples; target = per-position labels (n,)."""
        return [self.example(transcript, path) for transcript in read_dataset(path, self.name, select)]

    def example(self, transcript: Transcript, path=None) -> Example:
        """One transcript -> Example (:func:`transcript_example`); under the published protocol
        cut to ``max_len`` nt (counted as ``cut_to_max_len``)."""
        max_len = int(self.settings["max_len"]) if self.published else None
        if max_len is not None and len(transcript.sequence) > max_len:
            self.count("cut_to_max_len")
        return transcript_example(transcript, self.k, path, max_len)

    def train_view(self, example: Example, rng: np.random.Generator) -> Example:
        """A random crop of ``train_crop`` tokens (and the same labels) when set and shorter."""
        crop = self.settings.get("train_crop")
        if not crop or len(example.tokens) <= int(crop):
            return example
        start = int(rng.integers(0, len(example.tokens) - int(crop) + 1))
        stop = start + int(crop)
        return Example(example.id, example.tokens[start:stop], example.target[start:stop], example.info)

    def collate(self, examples: list[Example]) -> Batch:
        """Padded transcripts; targets (B, L) float32 per-position labels (0 at padding).
        Published: padded to ``max_len``, padding_mask True everywhere (no mask)."""
        length = self.padded_length()
        tokens, padding_mask = pad_tokens([e.tokens for e in examples], length, masked=length is None)
        labels = torch.zeros(tokens.shape, dtype=torch.float32)
        for row, example in enumerate(examples):
            if example.target is not None:
                labels[row, : len(example.target)] = torch.from_numpy(np.asarray(example.target, dtype=np.float32))
        return Batch(tokens, padding_mask, labels, examples)

    def padded_length(self) -> int | None:
        """``max_len`` under the published protocol (inputs padded to it, no mask), else None."""
        return int(self.settings["max_len"]) if self.published else None

    def build_head(self, d: int) -> CodingHead:
        """The published per-position head for width d (logits (B, L))."""
        return CodingHead(d, hidden=int(self.settings.get("hidden") or 128))

    def load_published_head(self, head: CodingHead, classifier_state) -> None:
        """Load released ``classifier.*`` weights: the head takes the file's hidden width
        (``linear_in.weight`` rows, the script's ``--resnet_hidden_dim``); the task's ``hidden``
        setting follows, so a checkpoint saved afterwards describes this head."""
        weight = classifier_state.get("linear_in.weight")
        if weight is not None and weight.ndim == 2 and int(weight.shape[0]) != head.linear_in.out_features:
            hidden = int(weight.shape[0])
            head.linear_in = torch.nn.Linear(head.linear_in.in_features, hidden)
            head.conv_out = torch.nn.Conv1d(hidden, 1, head.conv_out.kernel_size[0], padding=head.conv_out.padding[0])
            self.settings["hidden"] = hidden
        head.load_published_state_dict(classifier_state)

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-position BCE over the transcripts' own positions (positives weighted ``positive_weight``)."""
        return position_loss(output, batch.targets, real_positions(batch),
                             float(self.settings.get("positive_weight") or 1.0))

    def predict(self, output: torch.Tensor, batch: Batch) -> list[dict]:
        """Rows: id, label, length, cds_start, cds_end, score (best window), prediction (score >= 0.5)."""
        scores = window_scores(output, real_positions(batch), int(self.settings.get("window") or 30)).cpu().numpy()
        rows = []
        for e, s in zip(batch.examples, scores):
            row = {"id": e.id, **e.info, "score": float(s), "prediction": int(s >= 0.5)}
            rows.append(row)
        return rows

    def position_probabilities(self, output: torch.Tensor, batch: Batch) -> list[np.ndarray]:
        """Per-position CDS probabilities, one (n_i,) float32 array per example (padding cut)."""
        probs = torch.sigmoid(output.float()).cpu().numpy()
        return [probs[row, : len(e.tokens)].astype(np.float32) for row, e in enumerate(batch.examples)]

    def metrics(self, rows: list[dict]) -> dict[str, float]:
        """accuracy, precision, recall, f1, auc, mcc, n, n_pos, n_neg (``rnaret.metrics``)."""
        return classification_metrics([r["label"] for r in rows], [r["score"] for r in rows])

    def write_outputs(self, rows: list[dict], metrics: dict, out_dir: Path) -> list[Path]:
        """predictions.tsv and roc.png in ``out_dir``."""
        paths = super().write_outputs(rows, metrics, out_dir)
        paths.append(plot_roc([r["label"] for r in rows], [r["score"] for r in rows],
                              Path(out_dir) / "roc.png", "mRNA / lncRNA"))
        return paths
