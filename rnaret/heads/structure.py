"""The secondary-structure head, as published: outer concatenation -> 2-D residual convolutions.

Published ``ssp.py`` (``ResNet2D_classifier``), read off the released code:

    x[i, j] = concat(h_i, h_j)                      (B, L, L, 2d)   outer concatenation
    linear_in: Linear(2d, C)                        (B, L, L, C) -> permuted to (B, C, L, L)
    resnet.blocks.n (n < N): x + ReLU(conv1x1(ReLU(convKxK(ReLU(conv1x1(x))))))
                     i.e. conv_net = Sequential(Conv2d 1x1, ReLU, Conv2d KxK "same", ReLU,
                                                Conv2d 1x1, ReLU), all with bias, no norm
    conv_out: Conv2d(C, 1, 3, padding 1)            (B, L, L) logits

C = 128, N = 16, K = 3 as published (configurable; the laptop preset uses a much smaller head).
The state-dict names are the published ones (``linear_in``, ``resnet.blocks.{n}.conv_net.{0,2,4}``,
``conv_out``), so a released ``classifier.*`` loads by identity mapping (:data:`published_rename`).

Two things the published code does not do, both exact reformulations or fixes:

- The outer concatenation is never materialised: ``Linear(2d, C)([h_i, h_j]) = W_a h_i + W_b h_j
  + b`` with ``W = [W_a | W_b]``, so two (B, L, C) projections are broadcast-added into the
  (B, C, L, L) map (the same function; no (B, L, L, 2d) tensor).
- Padding: the map of a padded sequence is zeroed outside its real L_i x L_i square before every
  KxK convolution (the only layers that mix neighbouring pixels), so a sequence's logits do not
  depend on how much padding its batch adds (the published code trains with batch 1).

Symmetrisation (``symmetrize``): the raw map ``z`` is not symmetric. ``"mean"`` (our default)
returns ``(z + z^T) / 2``; ``"lower"`` returns ``z[max(i,j), min(i,j)]``, the orientation the
published model was trained on (its constraint mask and loss cover ``i > j`` only), used for
released weights so that they score exactly what they were trained to score.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from rnaret.heads import load_renamed

SYMMETRIZE = ("mean", "lower")

# Pair-map elements (pixels x channels) that one pass of the residual stack holds on a CPU. The
# stack is memory-bound there: every op streams a (B, C, L, L) map, and maps of a few MB stay in
# cache. Measured on the 2-core machine (C = 32, N = 4, inference): a 1x1 convolution runs at
# 174 GFLOP/s on a 2 x 128^2 map and at 30 on a 16 x 128^2 one; evaluating the bundled bpRNA test
# split took 75 s with whole batches and 34-42 s in passes of 2^20 to 2^22 elements. On CUDA the
# whole batch goes at once.
CPU_TILE_ELEMENTS = 2**21


class ResNet2DBlock(nn.Module):
    """One published residual block: ``x + ReLU(conv1x1(ReLU(convKxK(ReLU(conv1x1(x))))))``."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        # indices 0, 2, 4 are the published key names conv_net.{0,2,4}.{weight,bias}
        self.conv_net = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2), nn.ReLU(),
            nn.Conv2d(channels, channels, 1), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor, square: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, L, L); ``square`` (B, 1, L, L) float, 1 inside each real square (None: no padding)."""
        # The maps are large and each op is memory-bound, so nothing is copied that need not be:
        # ReLUs run in place (their backward needs only their output, a convolution's backward
        # not its output), and without autograd the mask and the residual sum too. The ReLU
        # modules at indices 1, 3, 5 hold nothing; they stay for the published layout.
        net = self.conv_net
        inference = not torch.is_grad_enabled()
        y = net[0](x).relu_()
        if square is not None:
            # padding pixels must look like the KxK conv's own zero padding
            y = y.mul_(square) if inference else y * square
        y = net[4](net[2](y).relu_()).relu_()
        return y.add_(x) if inference else x + y


class ResNet2D(nn.Module):
    """``blocks`` residual blocks in a ModuleList named ``blocks`` (published names)."""

    def __init__(self, channels: int, blocks: int, kernel_size: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList(ResNet2DBlock(channels, kernel_size) for _ in range(blocks))

    def forward(self, x: torch.Tensor, square: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, square)
        return x


class StructureHead(nn.Module):
    """Pair logits from per-position states.

    ``forward(states (B, L, d), padding_mask (B, L) bool True at real positions) -> (B, L, L)``
    symmetric logits (see the module docstring). ``channels`` C, ``blocks`` N, ``kernel_size``
    K of the residual stack; ``symmetrize`` "mean" or "lower".
    """

    def __init__(self, d: int, channels: int = 128, blocks: int = 16, kernel_size: int = 3,
                 symmetrize: str = "mean"):
        super().__init__()
        self.d = d
        self.reshape(channels, blocks, kernel_size, symmetrize)

    def reshape(self, channels: int, blocks: int, kernel_size: int = 3, symmetrize: str | None = None) -> None:
        """(Re)build the layers for ``channels`` C, ``blocks`` N, ``kernel_size`` K (fresh weights);
        used to take the sizes of released weights before loading them."""
        if symmetrize is not None and symmetrize not in SYMMETRIZE:
            raise ValueError(f"symmetrize must be one of {SYMMETRIZE}, got {symmetrize!r}")
        if channels < 1 or blocks < 0 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"need channels >= 1, blocks >= 0 and an odd kernel_size, got "
                             f"{channels}, {blocks}, {kernel_size}")
        self.channels, self.n_blocks, self.kernel_size = channels, blocks, kernel_size
        if symmetrize is not None:
            self.symmetrize = symmetrize
        self.linear_in = nn.Linear(2 * self.d, channels)
        self.resnet = ResNet2D(channels, blocks, kernel_size)
        self.conv_out = nn.Conv2d(channels, 1, 3, padding=1)

    def pair_features(self, states: torch.Tensor) -> torch.Tensor:
        """``linear_in`` of the outer concatenation, without building it: (B, L, d) -> (B, C, L, L).

        Pixel (i, j) is ``linear_in(concat(h_i, h_j))`` = ``W[:, :d] h_i + W[:, d:] h_j + b``.
        """
        d = self.d
        weight = self.linear_in.weight                               # (C, 2d)
        row = F.linear(states, weight[:, :d], self.linear_in.bias)   # (B, L, C): the h_i part
        col = F.linear(states, weight[:, d:])                        # (B, L, C): the h_j part
        # built as (B, L, L, C) and viewed as (B, C, L, L): channels-last, the faster conv layout on CPU
        return (row.unsqueeze(2) + col.unsqueeze(1)).permute(0, 3, 1, 2)

    def raw_logits(self, states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The unsymmetrised map z (B, L, L), z[i, j] read from concat(h_i, h_j).

        On a CPU the batch goes through the stack a few sequences at a time (see
        :data:`CPU_TILE_ELEMENTS`); each sequence's map is the same either way."""
        n, length = states.shape[0], states.shape[1]
        per_tile = max(1, CPU_TILE_ELEMENTS // max(1, self.channels * length * length))
        if states.device.type != "cpu" or per_tile >= n:
            return self._raw_logits(states, padding_mask)
        return torch.cat([self._raw_logits(states[i:i + per_tile],
                                           None if padding_mask is None else padding_mask[i:i + per_tile])
                          for i in range(0, n, per_tile)])

    def _raw_logits(self, states: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        square = None
        if padding_mask is not None and not bool(padding_mask.all()):
            real = padding_mask.to(states.dtype)
            square = (real.unsqueeze(2) * real.unsqueeze(1)).unsqueeze(1)  # (B, 1, L, L)
        x = self.pair_features(states)
        x = self.resnet(x, square)
        if square is not None:
            x = x * square
        return self.conv_out(x).squeeze(1)

    def forward(self, states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        z = self.raw_logits(states, padding_mask)
        if self.symmetrize == "mean":
            return 0.5 * (z + z.transpose(1, 2))
        n = z.shape[-1]
        position = torch.arange(n, device=z.device)
        lower = (position.unsqueeze(1) > position.unsqueeze(0))     # (L, L): row i > column j
        return torch.where(lower, z, z.transpose(1, 2))

    def load_published_state_dict(self, classifier_state: Mapping[str, torch.Tensor]) -> None:
        """Load published ``classifier.*`` weights (prefix stripped) strictly; ValueError naming
        missing, unexpected or mis-shaped keys. The head must have the file's sizes
        (:func:`published_head_shape` reads them off)."""
        load_renamed(self, classifier_state, published_rename(self.n_blocks),
                     what="published structure head")


def published_rename(blocks: int) -> dict[str, str]:
    """Published ``classifier.*`` names (prefix stripped) -> ours: the identity, listed for a
    head of ``blocks`` residual blocks."""
    names = ["linear_in.weight", "linear_in.bias", "conv_out.weight", "conv_out.bias"]
    for n in range(blocks):
        for index in (0, 2, 4):
            names += [f"resnet.blocks.{n}.conv_net.{index}.weight", f"resnet.blocks.{n}.conv_net.{index}.bias"]
    return {name: name for name in names}


def published_head_shape(classifier_state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``{"d", "channels", "blocks", "kernel_size"}`` of a published structure head's weights
    (prefix stripped). ValueError when ``linear_in.weight`` is missing."""
    if "linear_in.weight" not in classifier_state:
        raise ValueError("not a published structure head: no classifier.linear_in.weight "
                         f"(keys: {sorted(classifier_state)[:6]})")
    channels, two_d = classifier_state["linear_in.weight"].shape
    blocks = 0
    while f"resnet.blocks.{blocks}.conv_net.0.weight" in classifier_state:
        blocks += 1
    kernel = classifier_state.get("resnet.blocks.0.conv_net.2.weight")
    return {"d": int(two_d) // 2, "channels": int(channels), "blocks": blocks,
            "kernel_size": int(kernel.shape[-1]) if kernel is not None else 3}


__all__ = ["StructureHead", "ResNet2DBlock", "ResNet2D", "published_rename", "published_head_shape", "SYMMETRIZE"]
