"""The jobs a validated config asks for, each with its fully resolved settings.

``Plan(config)`` is built once per Snakemake DAG (``workflow/rules/common.smk``) and by the
commands that read a pipeline config. It checks the config once and builds one object per stage
(``rnaret.settings.stages``): ``archives``, ``data``, ``pretrain``, ``finetune`` (fine-tuning and
evaluation), ``baselines``, ``report``, ``analyses``. Each stage owns its output path templates
(the rule's ``output:`` and the targets use the same), its jobs' inputs and command-line options;
the rules call them (``PLAN.finetune.args``) and nothing else:

- ``inputs(wildcards)`` style methods: a job's input files (what it depends on);
- ``args(wildcards)`` style methods: the command-line options a job's command receives, built
  from its resolved settings. The rules pass them as ``params`` that take only ``wildcards``, so
  Snakemake's params rerun trigger tracks them: a job reruns when its resolved settings change,
  and only then (inputs are tracked by content and mtime, and ``code_version`` =
  ``rnaret.__version__`` is a param of every rule that computes results);
- ``targets()``: the final targets of ``rule all``, the union of the stages' own.

What stays here is what spans the stages: the datasets, the protocols, the SLURM site and each
stage's resources, threads, priority, conda environment and device.

Resolution: pretraining = ``pretrain.preset`` at the model's k ⊕ ``pretrain.overrides`` through
``rnaret.train.config.preset`` (the full ``PretrainConfig``); fine-tuning = ``finetune.preset`` ⊕
``finetune.<task>.settings`` ⊕ ``finetune.<task>.model_settings.<model>`` through
``rnaret.tasks.settings.resolve_task_settings`` (every task setting); files through
``rnaret.settings.sources``; datasets through ``rnaret.settings.dataset_sources``. Nothing here imports
torch or Snakemake.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from rnaret import __version__
from rnaret.slurm_resources import Site
from rnaret.settings.dataset_sources import Dataset, SplitSource, resolve_datasets
from rnaret.settings.errors import SettingsError, key_path
from rnaret.settings.stages import Analyses, Archives, Baselines, Data, Finetune, Pretrain, Report
from rnaret.settings.stages.base import PRIORITY
from rnaret.settings.stages.finetune import ONEHOT, RELEASED_MODEL

# rnaret: this project's corrected protocol; published: what the published scripts compute
PROTOCOLS = ("rnaret", "published")


class Plan:
    """The resolved jobs of one validated config (defaults filled by the schema), one object per
    stage: ``archives``, ``data``, ``pretrain``, ``finetune``, ``baselines``, ``report``,
    ``analyses``."""

    def __init__(self, config: Mapping[str, Any]):
        self.config = copy.deepcopy(dict(config))
        self.archive_entries = self.config.get("archives") or {}
        self.datasets: dict[str, dict[str, Dataset]] = resolve_datasets(self.config)
        self.code_version = __version__
        self.precision = self.config.get("precision", "auto")
        self.protocol = self.config.get("protocol", "rnaret")
        # the site's SLURM values (rnaret.slurm_resources): every job's partition, GPU request, account
        try:
            self.site = Site.from_config(self.config.get("slurm"))
        except ValueError as exc:
            raise SettingsError("slurm", str(exc)) from None
        self._check_protocols()
        self.archives = Archives(self)
        self.data = Data(self)
        self.pretrain = Pretrain(self)
        self.finetune = Finetune(self)  # checks the fine-tunings and lists the evaluations
        self.baselines = Baselines(self)
        self.report = Report(self)
        self.analyses = Analyses(self)
        self.pretrain.check()

    # ------------------------------------------------------------------ shared by the stages

    def block(self, stage: str) -> dict:
        """A stage's config block (``pretrain``, ``finetune``, ``dedupe``, ``vienna``, ...)."""
        if stage == "vienna":
            return self.config["baselines"]["vienna"]
        return self.config[stage]

    def threads(self, stage: str) -> int:
        """The threads of a stage's jobs."""
        return int(self.block(stage)["threads"])

    @staticmethod
    def priority(stage: str) -> int:
        """The scheduling priority of a stage's jobs (``stages.base.PRIORITY``; 0 for the others)."""
        return PRIORITY.get(stage, 0)

    def needs(self, stage: str) -> dict:
        """``mem_mb``, ``runtime`` and, for model stages, ``gpu`` (and ``nodes`` when > 1) of a
        stage's jobs, as the config sets them (the first attempt's)."""
        block = self.block(stage)
        out = {"mem_mb": int(block["mem_mb"])}
        if "runtime" in block:
            out["runtime"] = int(block["runtime"])
        if "gpus" in block:
            out["gpu"] = int(block["gpus"])
        if int(block.get("nodes", 1)) > 1:
            out["nodes"] = int(block["nodes"])
        return out

    def resources(self, stage: str | None = None, *, mem_mb: int | None = None, runtime: int | None = None,
                  resumable: bool = False) -> dict:
        """A rule's ``resources:`` (``rnaret.slurm_resources.rule_resources``): the stage's needs (or the
        fixed ``mem_mb``/``runtime`` of a small rule, which override the stage's), grown with
        each attempt, with the partition, GPU request, account, QOS, constraint and
        ``slurm_extra`` the ``slurm:`` block gives a job of that GPU count. ``resumable``: the
        job continues from a checkpoint when rerun (pretraining), so its wall time stays."""
        from rnaret.slurm_resources import rule_resources

        base = self.needs(stage) if stage is not None else {}
        base.update({k: v for k, v in (("mem_mb", mem_mb), ("runtime", runtime)) if v is not None})
        return rule_resources(self.site, base, resumable=resumable)

    def model_env(self, stage: str) -> str:
        """The conda environment of a model stage's jobs: ``model-gpu`` (the CUDA build of torch)
        when they ask for GPUs, else ``model`` (the CPU build)."""
        return "model-gpu" if int(self.block(stage).get("gpus", 0)) > 0 else "model"

    def device(self, stage: str) -> str:
        """``--device`` of a stage's model commands: ``cpu`` without GPUs; with GPUs ``cuda`` (the
        command stops at once when it finds none), or ``auto`` when ``allow_cpu`` is set."""
        if int(self.block(stage).get("gpus", 0)) < 1:
            return "cpu"
        return "auto" if self.config.get("allow_cpu") else "cuda"

    def dataset(self, task: str, name: str) -> Dataset:
        """One dataset; ``SettingsError`` naming ``datasets.<task>`` when it is not configured."""
        try:
            return self.datasets[task][name]
        except KeyError:
            known = ", ".join(self.datasets.get(task, {})) or "none"
            raise SettingsError(key_path("datasets", task), f"no dataset {name!r} (known: {known})") from None

    def split(self, task: str, name: str, split: str) -> SplitSource:
        """One split of a dataset; ``SettingsError`` when the dataset has no such split."""
        dataset = self.dataset(task, name)
        if split not in dataset.splits:
            raise SettingsError(key_path("datasets", task, name), f"has no {split!r} split")
        return dataset.splits[split]

    # ------------------------------------------------------------------ protocols

    def protocols(self) -> list[str]:
        """The run's protocol, then those of ``compare_protocols``: each fine-tunes and evaluates
        every evaluation of the run."""
        return [self.protocol] + [p for p in self.config.get("compare_protocols") or [] if p != self.protocol]

    def _check_protocols(self) -> None:
        for protocol in [self.protocol, *(self.config.get("compare_protocols") or [])]:
            if protocol not in PROTOCOLS:
                raise SettingsError("protocol", f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
        if self.protocol in (self.config.get("compare_protocols") or []):
            raise SettingsError("compare_protocols", f"{self.protocol} is the run's protocol already (key protocol); "
                                                     "list only the other protocols here")

    def compared_protocols(self) -> list[str]:
        """The protocols of ``compare_protocols`` (their jobs write the finetune stage's
        ``PROTOCOL_EVALUATION_DIR``)."""
        return self.protocols()[1:]

    def protocol_pattern(self) -> str:
        """A wildcard constraint matching exactly the compared protocols (none: matches nothing)."""
        return "|".join(re.escape(p) for p in self.compared_protocols()) or "(?!)"

    # ------------------------------------------------------------------ the whole plan

    def describe(self) -> dict:
        """The resolved settings of every job the config asks for, JSON-ready: the protocols
        (the run's first), pretraining configs per model, fine-tuning settings and inputs per
        (task, dataset, model), the evaluations (under each protocol), the splits checked for
        leakage and the final targets."""
        finetunes = {}
        for task, dataset, model in self.finetune.evaluations:
            source = self.dataset(task, dataset).source
            if re.fullmatch(RELEASED_MODEL, model) or f"{task}/{source}/{model}" in finetunes:
                continue
            init = self.finetune.init(model)
            finetunes[f"{task}/{source}/{model}"] = {
                "init": ONEHOT if init is None else init.path,
                "splits": {s: v.entry_value() for s, v in self.dataset(task, source).splits.items() if s != "test"},
                "settings": self.finetune.settings(task, model, self.protocol)}
        return {"code_version": self.code_version, "precision": self.precision, "protocols": self.protocols(),
                "devices": {stage: self.device(stage) for stage in ("pretrain", "finetune")},
                "pretrain": {model: self.pretrain.pretrain_config(model) for model in self.pretrain.pretrained_models()},
                "init_from": {m: ref.path for m in self.config["pretrain"].get("init_from") or {}
                              if (ref := self.pretrain.init_from(m)) is not None},
                "finetune": finetunes,
                "evaluations": {f"{t}/{d}/{m}": {"checkpoint": self.finetune.checkpoint(t, d, m).path,
                                                 "test": self.split(t, d, "test").entry_value()}
                                for t, d, m in self.finetune.evaluations},
                "leakage_splits": [s.label for s in self.data.leakage_sources()],
                "targets": self.targets()}

    def targets(self) -> list[str]:
        """Every final target of ``rule all``: data, pretraining, evaluations, ViennaRNA, report,
        homology, the paper's analyses."""
        return list(dict.fromkeys(self.data.targets() + self.pretrain.targets() + self.finetune.targets()
                                  + self.baselines.targets() + self.report.targets() + self.data.homology_targets()
                                  + self.analyses.targets()))
