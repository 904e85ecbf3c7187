"""The encoders: the RNAret RetNet (``RetNetEncoder``) and the Transformer baseline.

``build_encoder(config)`` returns the architecture that ``config.architecture`` names.
"""
from rnaret.model.encoder import EncoderConfig, EncoderOutput, RetNetEncoder


def build_encoder(config: EncoderConfig):
    """A freshly initialised encoder (train mode) of ``config.architecture``."""
    if config.architecture == "transformer":
        from rnaret.model.transformer import TransformerEncoder

        return TransformerEncoder(config)
    return RetNetEncoder(config)


__all__ = ["EncoderConfig", "EncoderOutput", "RetNetEncoder", "build_encoder"]
