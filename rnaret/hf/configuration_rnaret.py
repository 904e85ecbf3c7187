"""``RnaretConfig``: the encoder's hyper-parameters (``EncoderConfig``'s fields, same names) as
a ``transformers`` configuration, plus the task heads' settings.

Exported model folders carry this file (``rnaret export-hf``): it imports only ``transformers``
and, through a relative import in the folder, the encoder's torch-free config module.
"""
from __future__ import annotations

from dataclasses import fields

from transformers import PretrainedConfig

from rnaret.model.config import EncoderConfig
from rnaret.tokenizer import MASK, PAD

ENCODER_FIELDS = tuple(f.name for f in fields(EncoderConfig))
POOLINGS = ("mean", "cls")


class RnaretConfig(PretrainedConfig):
    """The RNAret encoder's configuration for ``transformers``.

    Encoder fields (see ``rnaret.model.config.EncoderConfig``): vocab_size (4**k + 6),
    retnet_embed_dim, retnet_value_embed_dim, retnet_ffn_embed_dim, retnet_layers,
    retnet_retention_heads, dropout, activation_dropout, k, chunk_size, parallel_max_len,
    segment_len, architecture. The library's names read them: hidden_size, num_hidden_layers,
    num_attention_heads, intermediate_size.
    Heads (``rnaret.heads.generic``'s, see the model classes): ``classifier_pooling`` of the
    sequence head ("mean" over the real positions, or "cls": position 0, for inputs that start
    with CLS such as pairs), ``classifier_hidden`` and ``classifier_kernel_size`` of the
    per-position head (its Linear's width and its Conv1d's kernel; 128 and 3 as ``rnaret``'s
    defaults), ``classifier_dropout`` (default 0.0), and the library's ``num_labels`` /
    ``id2label`` / ``problem_type``.
    """

    model_type = "rnaret"
    attribute_map = {"hidden_size": "retnet_embed_dim", "num_hidden_layers": "retnet_layers",
                     "num_attention_heads": "retnet_retention_heads",
                     "intermediate_size": "retnet_ffn_embed_dim"}

    def __init__(self, vocab_size: int = 10, retnet_embed_dim: int = 384, retnet_value_embed_dim: int = 512,
                 retnet_ffn_embed_dim: int = 512, retnet_layers: int = 8, retnet_retention_heads: int = 4,
                 dropout: float = 0.2, activation_dropout: float = 0.2, k: int | None = None,
                 chunk_size: int = 128, parallel_max_len: int = 512, segment_len: int = 4096,
                 architecture: str = "retnet", classifier_pooling: str = "mean",
                 classifier_dropout: float = 0.0, classifier_hidden: int = 128, classifier_kernel_size: int = 3,
                 **kwargs):
        given = locals()  # the arguments by name: the encoder's fields are set from this one list
        for name in ENCODER_FIELDS:
            if name != "k":
                setattr(self, name, given[name])
        if classifier_pooling not in POOLINGS:
            raise ValueError(f"classifier_pooling must be one of {POOLINGS}, got {classifier_pooling!r}")
        self.classifier_pooling = classifier_pooling
        self.classifier_dropout = classifier_dropout
        self.classifier_hidden = int(classifier_hidden)
        self.classifier_kernel_size = int(classifier_kernel_size)
        # validates the combination and infers k from vocab_size
        self.k = EncoderConfig(**{name: getattr(self, name) for name in ENCODER_FIELDS if name != "k"}, k=k).k
        kwargs.setdefault("pad_token_id", PAD)
        kwargs.setdefault("mask_token_id", MASK)
        super().__init__(**kwargs)

    def encoder_config(self) -> EncoderConfig:
        """The ``EncoderConfig`` of these fields."""
        return EncoderConfig(**{name: getattr(self, name) for name in ENCODER_FIELDS})

    @classmethod
    def from_encoder_config(cls, config: EncoderConfig, **kwargs) -> "RnaretConfig":
        """A ``RnaretConfig`` holding ``config``'s fields; ``kwargs`` set the heads' and the
        library's fields (num_labels, classifier_pooling, ...)."""
        return cls(**config.to_dict(), **kwargs)
