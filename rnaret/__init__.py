"""rnaret: the RNAret RNA language model (bidirectional RetNet encoder), rebuilt.

Public API (a contract, see docs/api.md):
    rnaret.tokenize(sequence, k)   -> list[int]
    rnaret.load_encoder(path)      -> RetNetEncoder in eval mode
    encoder(tokens, form=None)     -> EncoderOutput(.logits, .last_inner_state)
"""
from rnaret.tokenizer import tokenize

__version__ = "0.1.0"


def load_encoder(path, **kwargs):
    """Load an encoder from one of our checkpoints, a published `.pth` or a config+weights folder."""
    from rnaret.checkpoint import load_encoder as _load

    return _load(path, **kwargs)


__all__ = ["tokenize", "load_encoder", "__version__"]
