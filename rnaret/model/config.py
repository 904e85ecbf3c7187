"""The encoder's hyper-parameters (``EncoderConfig``), without torch: the pipeline's settings
resolution (``rnaret.settings``) checks pretraining settings when the Snakemake DAG is built, on
every ``snakemake`` call, so this module must stay cheap to import. The modules themselves are in
``rnaret.model.encoder`` (which re-exports these names).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from rnaret.tokenizer import k_from_vocab_size, vocab_size as _vocab_size

# field names of the published config.json (official_vectors/config.json)
PUBLISHED_FIELDS = ("vocab_size", "retnet_embed_dim", "retnet_value_embed_dim",
                    "retnet_ffn_embed_dim", "retnet_layers", "retnet_retention_heads",
                    "dropout", "activation_dropout")
ARCHITECTURES = ("retnet", "transformer")


@dataclass
class EncoderConfig:
    """Encoder hyper-parameters; the defaults are the paper size at k = 1.

    Published fields (same names as the published config.json): vocab_size (4**k + 6),
    retnet_embed_dim (d), retnet_value_embed_dim, retnet_ffn_embed_dim, retnet_layers,
    retnet_retention_heads, dropout, activation_dropout.
    Ours: ``k`` (None: inferred from vocab_size), ``chunk_size`` (positions per chunk of the
    chunkwise form), ``parallel_max_len`` (automatic form: parallel at most up to this many
    tokens, chunkwise above, and already below where the chunkwise form is the cheaper one:
    ``parallel_limit``), ``segment_len`` (tokens, rows x positions, that a chunkwise layer
    processes per pass and that inference runs through the layers at a time, so that long
    inputs and large batches are processed in cache-sized pieces; the results do not depend
    on it), ``architecture`` ("retnet", or "transformer" for the baseline).
    """
    vocab_size: int = 10
    retnet_embed_dim: int = 384
    retnet_value_embed_dim: int = 512
    retnet_ffn_embed_dim: int = 512
    retnet_layers: int = 8
    retnet_retention_heads: int = 4
    dropout: float = 0.2
    activation_dropout: float = 0.2
    k: int | None = None
    chunk_size: int = 128
    parallel_max_len: int = 512
    segment_len: int = 4096
    architecture: str = "retnet"

    def __post_init__(self):
        inferred = k_from_vocab_size(self.vocab_size)
        if self.k is None:
            self.k = inferred
        elif self.k != inferred:
            raise ValueError(f"k={self.k} does not match vocab_size={self.vocab_size} (4**k + 6 gives k={inferred})")
        heads = self.retnet_retention_heads
        if heads < 1 or self.retnet_embed_dim % heads or (self.retnet_embed_dim // heads) % 2:
            raise ValueError(f"retnet_embed_dim={self.retnet_embed_dim} must split into "
                             f"{heads} heads of an even size")
        if self.retnet_value_embed_dim % heads:
            raise ValueError(f"retnet_value_embed_dim={self.retnet_value_embed_dim} is not divisible "
                             f"by {heads} heads")
        if self.retnet_layers < 1 or self.chunk_size < 1 or self.segment_len < 1 or self.parallel_max_len < 0:
            raise ValueError("retnet_layers, chunk_size and segment_len must be >= 1, parallel_max_len >= 0")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")

    @classmethod
    def paper(cls, k: int, **overrides) -> "EncoderConfig":
        """The paper-size config at k (1, 3 or 5); keyword overrides for any field."""
        return cls(vocab_size=_vocab_size(k), k=k, **overrides)

    @property
    def parallel_limit(self) -> int:
        """Longest input the automatic form (``form=None``) runs in the parallel form:
        ``parallel_max_len``, or less where the chunkwise form is already the cheaper one.

        Per token and head the parallel form costs ~2 L (dk + dv) multiply-adds, the chunkwise
        one ~2 C (dk + dv) plus ~8 dk dv for its states and ~4 dk dv more of scan and copy
        traffic (measured on CPU, fp32 and bf16): they cross at about C + 6 dk dv / (dk + dv)
        (paper size: 457 tokens; width 64 with 4 heads: 192). Both forms give the same numbers."""
        dk, dv = self.key_dim, self.value_dim
        return min(self.parallel_max_len, self.chunk_size + 6 * dk * dv // (dk + dv))

    @property
    def key_dim(self) -> int:
        """Per-head query/key size (d / heads)."""
        return self.retnet_embed_dim // self.retnet_retention_heads

    @property
    def value_dim(self) -> int:
        """Per-head value size (value_embed_dim / heads)."""
        return self.retnet_value_embed_dim // self.retnet_retention_heads

    def to_dict(self) -> dict:
        """All fields as a JSON-ready dict (published names plus ours)."""
        return asdict(self)

    def to_json(self) -> str:
        """``to_dict()`` as indented JSON text (what ``save_encoder`` writes to config.json)."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict, source: str | None = None) -> "EncoderConfig":
        """Build from a dict (ours or the published config.json); unknown keys are an error.

        ``source`` (a file name) is named in the error message.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        where = f"{source}: " if source else ""
        if unknown:
            raise ValueError(f"{where}unknown encoder config keys {unknown}; known keys: {sorted(known)}")
        if "vocab_size" not in data:
            raise ValueError(f"{where}the encoder config has no 'vocab_size'")
        return cls(**data)
