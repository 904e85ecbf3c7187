"""The ``onehot`` control model: the encoder's interface with no learned context.

``forward(tokens, ...)`` returns an ``EncoderOutput`` whose ``last_inner_state`` is the one-hot
vector of each token (width ``vocab_size(k)``), or, with ``project_dim``, that vector times a
fixed random matrix (seeded, never trained: a buffer). Zero at padding. A task head trained on
it shows what the head alone learns from the letters with the same budget; it needs no
pretraining. Note that it carries no context: a CLS-reading head (interaction) sees only the
CLS token through it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rnaret.io.atomic import atomic_dir
from rnaret.io.errors import InputError
from rnaret.model.encoder import EncoderOutput
from rnaret.tokenizer import PAD, vocab_size

CONFIG_NAME = "onehot.json"


@dataclass
class OneHotConfig:
    """k: tokenizer k; project_dim: None for raw one-hot states, else the fixed projection width."""

    k: int = 5
    project_dim: int | None = None
    seed: int = 0


class OneHotModel(nn.Module):
    """One-hot token states with the encoder's forward interface (see the module docstring)."""

    def __init__(self, config: OneHotConfig):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size(config.k)
        if config.project_dim:
            generator = torch.Generator().manual_seed(config.seed)
            projection = torch.randn(self.vocab_size, config.project_dim, generator=generator)
            self.register_buffer("projection", projection / config.project_dim**0.5)
        else:
            self.projection = None

    @property
    def k(self) -> int:
        """Tokenizer k of the inputs."""
        return self.config.k

    @property
    def output_dim(self) -> int:
        """Width d of ``last_inner_state``."""
        return int(self.config.project_dim or self.vocab_size)

    def forward(self, tokens: torch.Tensor, form: str | None = None, padding_mask: torch.Tensor | None = None,
                return_logits: bool = True) -> EncoderOutput:
        """tokens (B, L) int64 -> EncoderOutput(last_inner_state (B, L, d), padding_mask (B, L) True
        at real positions; default tokens != PAD);
        ``form`` and ``return_logits`` are accepted for interface compatibility (no logits)."""
        if padding_mask is None:
            padding_mask = tokens != PAD
        states = F.one_hot(tokens, self.vocab_size).float()          # (B, L, V)
        if self.projection is not None:
            states = states @ self.projection                        # (B, L, project_dim)
        states = states.masked_fill(~padding_mask.unsqueeze(-1), 0.0)
        return EncoderOutput(logits=None, last_inner_state=states, hidden=states, padding_mask=padding_mask)


def save_onehot(model: OneHotModel, path) -> Path:
    """Write the model's config (its only state: the projection is re-made from the seed)."""
    with atomic_dir(path) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps({"model_type": "onehot", **asdict(model.config)}) + "\n")
    return Path(path)


def load_onehot(path) -> OneHotModel:
    """Read a folder written by ``save_onehot`` -> OneHotModel in eval mode."""
    file = Path(path) / CONFIG_NAME
    if not file.is_file():
        raise InputError(path, f"not a onehot model folder (no {CONFIG_NAME})")
    values = json.loads(file.read_text())
    values.pop("model_type", None)
    model = OneHotModel(OneHotConfig(**values))
    model.eval()
    return model
