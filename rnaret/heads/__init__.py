"""Task heads: modules reading the encoder's ``last_inner_state`` (B, L, d) and padding mask.

``interaction.InteractionHead`` (CLS classification), ``coding.CodingHead`` (per-position CDS
tagging); the structure head lives in ``structure``. Each head has
``load_published_state_dict(classifier_state)`` taking the published ``classifier.*`` weights
with the ``classifier.`` prefix stripped, loaded strictly through :func:`load_renamed`.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn


def load_renamed(module: nn.Module, state: Mapping[str, torch.Tensor], rename: Mapping[str, str],
                 ignore_prefixes: Iterable[str] = (), what: str = "published head") -> None:
    """Load ``state`` into ``module`` after renaming its keys with ``rename`` (published -> ours).

    Strict: every key of ``state`` must be in ``rename`` (or start with one of
    ``ignore_prefixes``: weights the published model stores but never uses), every parameter of
    ``module`` must be given, and shapes must match. Raises ValueError listing what is wrong.
    """
    ignore = tuple(ignore_prefixes)
    ours = module.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    unexpected, problems = [], []
    for key, value in state.items():
        if key.startswith(ignore):
            continue
        if key not in rename:
            unexpected.append(key)
            continue
        target = rename[key]
        if target in ours and tuple(ours[target].shape) != tuple(value.shape):
            problems.append(f"{key} has shape {tuple(value.shape)}, {type(module).__name__}.{target} "
                            f"needs {tuple(ours[target].shape)}")
        renamed[target] = value
    missing = [published for published, target in rename.items() if target not in renamed]
    if unexpected:
        problems.append(f"unexpected keys {sorted(unexpected)}")
    if missing:
        problems.append(f"missing keys {sorted(missing)}")
    if problems:
        raise ValueError(f"cannot load the {what} into {type(module).__name__}: " + "; ".join(problems)
                         + f" (expected keys: {sorted(rename)})")
    module.load_state_dict(renamed, strict=True)


def published_names(rename: Mapping[str, str], prefix: str = "classifier.") -> list[str]:
    """The published key names (with ``prefix``) a head loads, for documentation and tests."""
    return [prefix + key for key in rename]


__all__ = ["load_renamed", "published_names"]
