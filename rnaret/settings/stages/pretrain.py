"""The pretraining stage (``workflow/rules/pretrain.smk``): masked language modelling of each
model of ``pretrain.models`` on the token shards at its k, through ``rnaret launch``; a model of
``pretrain.init_from`` starts from released weights instead and is not pretrained."""
from __future__ import annotations

import copy
import re

from rnaret.settings.errors import SettingsError, key_path
from rnaret.settings.sources import FileRef, resolve_file
from rnaret.settings.stages.base import Stage, compact_json, join
from rnaret.settings.stages.data import shard_dir

PRETRAINED_MODEL = r"(rnaret|transformer)-k[135]"
PRETRAIN_DIR = "results/pretrain/{model}"  # checkpoint/, metrics.tsv, loss_curve.png, summary.json, train/
# options the pipeline sets itself, refused in pretrain.overrides (they have their own keys)
RESERVED_OVERRIDES = {"k": "the model name (rnaret-k{k})", "architecture": "the model name",
                      "init_from": "pretrain.init_from", "precision": "the top-level precision key"}


def model_k(model: str) -> int | None:
    """The k of a model name (``rnaret-k5`` -> 5, ``transformer-k1`` -> 1); None for ``onehot``
    and released files."""
    match = re.fullmatch(r".+-k([135])", model)
    return int(match.group(1)) if match else None


def pretrain_checkpoint(model: str) -> str:
    """The checkpoint folder a pretraining run writes (what fine-tuning reads)."""
    return f"{PRETRAIN_DIR.format(model=model)}/checkpoint"


class Pretrain(Stage):
    """The pretraining jobs, and the weights each model starts its fine-tunings from."""

    DIR = PRETRAIN_DIR
    MODEL = PRETRAINED_MODEL

    def __init__(self, plan):
        super().__init__(plan)
        self._configs: dict[str, dict] = {}

    def init_from(self, model: str) -> FileRef | None:
        """The released weights a model starts from instead of a pretraining (pretrain.init_from)."""
        value = (self.config["pretrain"].get("init_from") or {}).get(model)
        if value is None:
            return None
        return resolve_file(value, key_path("pretrain", "init_from", model), self.plan.archive_entries)

    def pretrained_models(self) -> list[str]:
        """Models whose pretraining the run asks for: ``pretrain.models`` without those replaced
        by ``init_from``, then those a fine-tuning needs, in that order."""
        models = [m for m in self.config["pretrain"]["models"] if self.init_from(m) is None]
        for task, _dataset, model in self.plan.finetune.evaluations:
            if re.fullmatch(PRETRAINED_MODEL, model) and self.init_from(model) is None and model not in models:
                models.append(model)
        return models

    def pretrain_config(self, model: str) -> dict:
        """The full ``PretrainConfig`` (as a dict) of a model: ``pretrain.preset`` at its k,
        ``pretrain.overrides``, the architecture of its name and the precision of the protocol
        (``precision``)."""
        if model not in self._configs:
            from rnaret.train.config import parse_model_name, preset

            try:
                architecture, k = parse_model_name(model)
            except ValueError as exc:
                raise SettingsError("pretrain.models", str(exc)) from None
            overrides = dict(self.config["pretrain"].get("overrides") or {})
            for name, owner in RESERVED_OVERRIDES.items():
                if name in overrides:
                    raise SettingsError(key_path("pretrain", "overrides", name), f"set by {owner}, not here")
            try:
                config = preset(self.config["pretrain"]["preset"], k, **overrides,
                                architecture=architecture, precision=self.precision())
            except (ValueError, TypeError) as exc:
                raise SettingsError("pretrain.overrides", str(exc)) from None
            self._configs[model] = config.to_dict()
        return copy.deepcopy(self._configs[model])

    def precision(self) -> str:
        """``--precision`` of the pretraining: under ``protocol: published`` fp16 (float16
        autocast and a gradient scaler on CUDA, fp32 on the CPU: what the published pretrain.py
        does), else the top-level ``precision``."""
        return "fp16" if self.plan.protocol == "published" else self.plan.precision

    def _model(self, wildcards) -> str:
        model = wildcards.model
        if self.init_from(model) is not None:
            raise SettingsError(key_path("pretrain", "init_from", model),
                                f"{model} starts from released weights: it is not pretrained")
        return model

    def inputs(self, wildcards) -> dict:
        """The token shards at the model's k."""
        return {"shards": shard_dir(model_k(self._model(wildcards)))}

    def args(self, wildcards) -> str:
        """`rnaret pretrain` options: the model, its full resolved config, device and precision."""
        model = self._model(wildcards)
        return join(["--model", model, "--config-preset", self.config["pretrain"]["preset"],
                     "--overrides", compact_json(self.pretrain_config(model)),
                     "--device", self.plan.device("pretrain"), "--precision", self.precision()])

    @staticmethod
    def nproc(wildcards, resources) -> int:
        """Worker processes of a pretraining job on each node: one per GPU (DDP through torchrun),
        else one. (A function of the job's resources: the worker count alone never reruns a job.)"""
        from rnaret.slurm_resources import gpus_per_node

        return max(1, gpus_per_node(resources))

    @staticmethod
    def nodes(wildcards, resources) -> int:
        """Nodes of a pretraining job, one torchrun launcher each (pretrain.nodes; 1 by default)."""
        from rnaret.slurm_resources import nodes_of

        return nodes_of(resources)

    @staticmethod
    def worker_threads(wildcards, threads, resources) -> int:
        """CPU threads of each worker: the job's threads (per node) shared by its workers."""
        from rnaret.slurm_resources import gpus_per_node

        return max(1, int(threads) // max(1, gpus_per_node(resources)))

    def targets(self) -> list[str]:
        """checkpoint/, metrics.tsv and loss_curve.png of every model of ``pretrain.models`` that
        is pretrained (not replaced by ``init_from``)."""
        return [f"{PRETRAIN_DIR.format(model=model)}/{name}"
                for model in self.config["pretrain"]["models"] if self.init_from(model) is None
                for name in ("checkpoint", "metrics.tsv", "loss_curve.png")]

    def check(self) -> None:
        """Every pretrained model has its shards' k, a valid config, and valid released weights."""
        shard_ks = self.config["shards"]["k"]
        for model in self.config["pretrain"]["models"]:
            if self.init_from(model) is None and model_k(model) not in shard_ks:
                raise SettingsError("pretrain.models", f"{model} needs shards at k={model_k(model)}; "
                                                       f"add {model_k(model)} to shards.k")
        for model in self.pretrained_models():
            self.pretrain_config(model)
        for model in self.config["pretrain"].get("init_from") or {}:
            self.init_from(model)
