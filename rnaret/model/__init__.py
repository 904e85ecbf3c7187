"""The encoders: the RNAret RetNet (``RetNetEncoder``) and the Transformer baseline
(``TransformerEncoder``), both configured by ``EncoderConfig`` and returning ``EncoderOutput``.

``build_encoder(config)`` returns the architecture that ``config.architecture`` names.
"""
from rnaret.model.encoder import EncoderConfig, EncoderOutput, RetNetEncoder
from rnaret.model.transformer import TransformerEncoder


def build_encoder(config: EncoderConfig):
    """A freshly initialised encoder (train mode) of ``config.architecture``
    ("retnet" -> RetNetEncoder, "transformer" -> TransformerEncoder)."""
    if config.architecture == "transformer":
        return TransformerEncoder(config)
    return RetNetEncoder(config)


__all__ = ["EncoderConfig", "EncoderOutput", "RetNetEncoder", "TransformerEncoder", "build_encoder"]
