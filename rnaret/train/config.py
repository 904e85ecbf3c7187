"""The pretraining configuration: one dataclass, named presets, and overrides.

Presets (``preset(name, k)``):
- ``laptop`` (the default pipeline run): a small encoder (3 layers, width 64, ~0.2 M
  parameters) that learns visibly on the bundled RNAcentral sample in under a minute per
  model on 2 CPU cores;
- ``paper``: the paper's encoder and hyperparameters for GPU clusters (AdamW lr 1e-4, weight
  decay 0.01, cosine warm restarts T_0 50,000 / eta_min 1e-5, 600k steps, a checkpoint every
  1,000 steps). A step holds what a published step held: the published run drew 100 random
  sequences, each cut to 2,000 tokens and padded to 2,000; ours takes 100 sequences
  (``max_rows``, a row cap) of similar length, cropped to 2,000 tokens (``max_train_len``), with a
  padded budget of 100 x 2,000 = 200,000 tokens that a row cap of 100 never exceeds. An epoch
  therefore has the published number of steps (ceil(records / 100)) and the same real tokens, so
  the mean real tokens per step equal the published run's (tests/train/test_pretrain.py checks it on
  the bundled sample; ``benchmarks/paper_step.py`` prints the figures) while padding is cut;
- ``tiny``: a few-second configuration for tests and smoke runs.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields

import yaml

from rnaret.model.config import ARCHITECTURES, EncoderConfig
from rnaret.tokenizer import SUPPORTED_K
from rnaret.train.schedule import SCHEDULES

from rnaret.precision import TRAINING_PRECISIONS

# fields that do not change what any step computes: a resumed run may change them (the run's
# fingerprint leaves them out); max_steps joins them when the schedule does not depend on it
RUN_NEUTRAL = frozenset({"eval_every", "checkpoint_every", "keep_last", "log_every", "prefetch",
                         "max_nonfinite_steps"})
SCHEDULES_USING_TOTAL = frozenset({"warmup_cosine"})  # the schedules whose shape depends on max_steps


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (sizes in tokens; steps are optimizer steps)."""

    architecture: str = "retnet"  # retnet | transformer (the baseline)
    k: int = 1
    encoder: dict = field(default_factory=dict)  # EncoderConfig fields over the paper size at k
    # starting weights instead of a random init: a published pretrain_{k}mer.pth or our checkpoint
    # folder (its own sizes then win over ``encoder``); with max_steps 0 the run only converts it
    init_from: str | None = None
    seed: int = 0
    # optimisation (published: AdamW lr 1e-4, weight decay 0.01, default betas, no clipping)
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = None  # max global gradient norm; None = no clipping
    schedule: str = "cosine_restarts"  # see rnaret.train.schedule.SCHEDULES
    t0: int = 50_000  # cosine_restarts: steps per cycle
    t_mult: int = 1
    eta_min: float = 1e-5
    warmup_steps: int = 0
    max_steps: int = 600_000
    # batches: a token budget (rows x padded length) for the GLOBAL micro-batch, shared by the
    # ranks; ``accumulate`` micro-batches make one optimizer step
    max_tokens: int = 200_000
    max_rows: int | None = None  # at most this many sequences per global micro-batch; None = no cap
    accumulate: int = 1
    max_train_len: int | None = None  # random crop of longer training sequences (tokens); None = none
    # masking (published defaults)
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    # evaluation, checkpoints, logging (in optimizer steps)
    eval_every: int = 1_000
    valid_max_batches: int | None = 100  # None = the whole validation split
    valid_max_tokens: int | None = None  # validation micro-batch budget; None = max_tokens
    checkpoint_every: int = 1_000
    keep_last: int = 3
    log_every: int = 50
    # rnaret.precision: auto = bf16 where the device has bf16 matrix units; fp16 = float16 + a
    # gradient scaler on CUDA (the published pretraining), fp32 elsewhere
    precision: str = "auto"
    # robustness and speed (they never change what a step computes)
    max_nonfinite_steps: int = 10  # stop with an error after this many skipped steps in a row
    prefetch: int = 2  # steps whose batches a background thread builds ahead; 0 = build inline

    def __post_init__(self):
        # YAML 1.1 reads "3e-4" (no dot) as a string: accept it for the float fields
        for name in ("lr", "weight_decay", "eps", "grad_clip", "eta_min", "mask_prob",
                     "mask_token_prob", "random_token_prob"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    setattr(self, name, float(value))
                except ValueError:
                    raise ValueError(f"{name} must be a number, got {value!r}") from None
        if isinstance(self.betas, list):
            self.betas = tuple(float(b) for b in self.betas)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.k not in SUPPORTED_K:
            raise ValueError(f"k must be one of {SUPPORTED_K}, got {self.k!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in TRAINING_PRECISIONS:
            raise ValueError(f"precision must be one of {TRAINING_PRECISIONS}, got {self.precision!r}")
        for name in ("max_tokens", "accumulate", "eval_every", "checkpoint_every", "keep_last",
                     "log_every", "t0", "max_nonfinite_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 or null, got {self.max_rows}")
        if self.max_train_len is not None and self.max_train_len < 1:
            raise ValueError(f"max_train_len must be >= 1 or null, got {self.max_train_len}")
        self.encoder_config()  # fail early on a bad encoder override

    def encoder_config(self) -> EncoderConfig:
        """The ``EncoderConfig``: the paper size at k with ``encoder`` overrides and the architecture."""
        return EncoderConfig.paper(self.k, **{**self.encoder, "architecture": self.architecture})

    def to_dict(self) -> dict:
        """JSON-ready dict of every field."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "PretrainConfig":
        """Build from a dict; unknown keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown pretrain config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def run_settings(self) -> dict:
        """The settings that decide what each step computes: every field except ``RUN_NEUTRAL``,
        ``init_from`` (its content is fingerprinted instead of its path) and ``max_steps`` when the
        schedule does not depend on it (a run may then be extended or shortened on resume)."""
        d = self.to_dict()
        for name in RUN_NEUTRAL | {"init_from"}:
            d.pop(name)
        if self.schedule not in SCHEDULES_USING_TOTAL:
            d.pop("max_steps")
        return d

    def differences(self, other: "PretrainConfig") -> list[str]:
        """Names of the fields whose values differ from ``other``."""
        a, b = self.to_dict(), other.to_dict()
        return sorted(name for name in a if a[name] != b[name])


def _laptop(k: int) -> dict:
    # Sized to learn visibly on the bundled sample in ~30 s per model on 2 free CPU cores: a
    # 3-layer, 64-wide encoder, 4,096-token steps, training windows cropped (randomly, every
    # step) to 256 tokens so CPU time goes to many short windows rather than a few long ones.
    return dict(
        k=k,
        encoder=dict(retnet_embed_dim=64, retnet_value_embed_dim=128, retnet_ffn_embed_dim=128,
                     retnet_layers=3, retnet_retention_heads=4, dropout=0.0,
                     activation_dropout=0.0, parallel_max_len=512),
        lr=3e-3, weight_decay=0.01, grad_clip=1.0,
        schedule="warmup_cosine", warmup_steps=20, eta_min=1e-4, max_steps=200,
        max_tokens=4096, accumulate=1, max_train_len=256,
        eval_every=50, valid_max_batches=4, valid_max_tokens=16384,
        checkpoint_every=50, keep_last=2, log_every=10,
    )


def _paper(k: int) -> dict:
    return dict(
        k=k, encoder={}, lr=1e-4, weight_decay=0.01, grad_clip=None,
        schedule="cosine_restarts", t0=50_000, t_mult=1, eta_min=1e-5, warmup_steps=0,
        max_steps=600_000, max_tokens=200_000, max_rows=100, accumulate=1, max_train_len=2000,
        eval_every=1_000, valid_max_batches=100, valid_max_tokens=None,
        checkpoint_every=1_000, keep_last=3, log_every=50,
    )


def _tiny(k: int) -> dict:
    return dict(
        k=k,
        encoder=dict(retnet_embed_dim=16, retnet_value_embed_dim=16, retnet_ffn_embed_dim=32,
                     retnet_layers=2, retnet_retention_heads=2, dropout=0.0,
                     activation_dropout=0.0, chunk_size=32, parallel_max_len=256),
        lr=3e-3, weight_decay=0.01, grad_clip=1.0, schedule="warmup_cosine", warmup_steps=2,
        eta_min=1e-4, max_steps=20, max_tokens=2048, accumulate=1, max_train_len=200,
        eval_every=5, valid_max_batches=2, valid_max_tokens=2048,
        checkpoint_every=5, keep_last=2, log_every=5,
    )


PRESETS = {"laptop": _laptop, "paper": _paper, "tiny": _tiny}


def preset(name: str, k: int = 1, **overrides) -> PretrainConfig:
    """The preset ``name`` at ``k`` with keyword overrides (``encoder`` merges field by field)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    values = PRESETS[name](k)
    return PretrainConfig.from_dict(merge_overrides(values, overrides))


def merge_overrides(values: dict, overrides: dict) -> dict:
    """``values`` updated by ``overrides``; the ``encoder`` dict is merged key by key."""
    merged = dict(values)
    for key, value in overrides.items():
        if key == "encoder" and isinstance(value, dict):
            merged["encoder"] = {**merged.get("encoder", {}), **value}
        else:
            merged[key] = value
    return merged


def parse_assignments(items: list[str]) -> dict:
    """``["lr=1e-3", "encoder.retnet_layers=2"]`` -> {"lr": 0.001, "encoder": {"retnet_layers": 2}}.

    Values are read as YAML (numbers, null, true/false, lists); a dotted key goes into ``encoder``.
    """
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        value = _number(raw)
        if value is None:
            value = yaml.safe_load(raw) if raw != "" else None
        if "." in key:
            head, sub = key.split(".", 1)
            if head != "encoder":
                raise ValueError(f"only encoder.* keys may be dotted, got {key!r}")
            out.setdefault("encoder", {})[sub] = value
        else:
            out[key] = value
    return out


def _number(raw: str):
    """int or float when ``raw`` spells one (YAML would keep "3e-4" a string), else None."""
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return None


def replace(config: PretrainConfig, **changes) -> PretrainConfig:
    """A copy of ``config`` with ``changes`` (validated again)."""
    return dataclasses.replace(config, **changes)


def model_name(architecture: str, k: int) -> str:
    """The results name of a model: ``rnaret-k{k}`` (RetNet) or ``transformer-k{k}``."""
    return f"{'rnaret' if architecture == 'retnet' else architecture}-k{k}"


def parse_model_name(name: str) -> tuple[str, int]:
    """``rnaret-k1`` -> ("retnet", 1); ``transformer-k5`` -> ("transformer", 5)."""
    prefix, sep, k = name.rpartition("-k")
    arch = {"rnaret": "retnet", "transformer": "transformer"}.get(prefix)
    if not sep or arch is None or not k.isdigit() or int(k) not in SUPPORTED_K:
        raise ValueError(f"model name must be rnaret-k{{1,3,5}} or transformer-k{{1,3,5}}, got {name!r}")
    return arch, int(k)
