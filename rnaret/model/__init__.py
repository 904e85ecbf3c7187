"""The encoders: the RNAret RetNet (``RetNetEncoder``) and the Transformer baseline
(``TransformerEncoder``), both configured by ``EncoderConfig`` and returning ``EncoderOutput``.

``build_encoder(config)`` returns the architecture that ``config.architecture`` names.
The names are loaded on first use, so that ``rnaret.model.config`` (``EncoderConfig``, no torch)
can be imported without loading torch.
"""
from __future__ import annotations

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "EncoderConfig": "rnaret.model.config",
    "EncoderOutput": "rnaret.model.encoder",
    "RetNetEncoder": "rnaret.model.encoder",
    "TransformerEncoder": "rnaret.model.transformer",
}


def build_encoder(config):
    """A freshly initialised encoder (train mode) of ``config.architecture``
    ("retnet" -> RetNetEncoder, "transformer" -> TransformerEncoder)."""
    if config.architecture == "transformer":
        from rnaret.model.transformer import TransformerEncoder

        return TransformerEncoder(config)
    from rnaret.model.encoder import RetNetEncoder

    return RetNetEncoder(config)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rnaret.model' has no attribute {name!r}")


__all__ = ["EncoderConfig", "EncoderOutput", "RetNetEncoder", "TransformerEncoder", "build_encoder"]
