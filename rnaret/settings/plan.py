"""The jobs a validated config asks for, each with its fully resolved settings.

``Plan(config)`` is built once per Snakemake DAG (``workflow/rules/common.smk``) and by the
commands that read a pipeline config. The rules call its methods and nothing else:

- ``*_inputs(wildcards)``: a job's input files (what it depends on);
- ``*_args(wildcards)``: the command-line options a job's command receives, built from its
  resolved settings. The rules pass them as ``params`` that take only ``wildcards``, so Snakemake's
  params rerun trigger tracks them: a job reruns when its resolved settings change, and only then
  (inputs are tracked by content and mtime, and ``code_version`` = ``rnaret.__version__`` is a
  param of every rule that computes results);
- ``targets()``: the final targets of ``rule all``.

Resolution: pretraining = ``pretrain.preset`` at the model's k ⊕ ``pretrain.overrides`` through
``rnaret.train.config.preset`` (the full ``PretrainConfig``); fine-tuning = ``finetune.preset`` ⊕
``finetune.<task>.settings`` ⊕ ``finetune.<task>.model_settings.<model>`` through
``rnaret.tasks.settings.resolve_task_settings`` (every task setting); files through
``rnaret.settings.sources``; datasets through ``rnaret.settings.dataset_sources``. Nothing here imports
torch or Snakemake.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shlex
from typing import Any, Mapping

from rnaret import __version__
from rnaret.slurm_resources import Site
from rnaret.settings.dataset_sources import Dataset, SplitSource, resolve_datasets
from rnaret.settings.errors import SettingsError, key_path
from rnaret.settings.sources import FileRef, archive_dir, is_url, resolve_file, url_name
from rnaret.tasks.settings import GENERIC_TASKS  # the generic tasks' names (torch-free)

CORPUS = "results/corpus"
FINETUNE_TASKS = ("interaction", "coding", "structure") + GENERIC_TASKS  # the order of the finetune targets
REPORT_TASKS = ("structure", "interaction", "coding") + GENERIC_TASKS  # the order of the tables' inputs
PAPER_TASKS = ("structure", "interaction", "coding")  # a table each, evaluated or not
PRETRAINED_MODEL = r"(rnaret|transformer)-k[135]"
TRAINED_MODEL = rf"{PRETRAINED_MODEL}|onehot"
# a released fine-tuned file, evaluated as released-NAME (NAME: its finetune.<task>.released key)
RELEASED_MODEL = r"released-[A-Za-z0-9_.]+"
# rnaret: this project's corrected protocol; published: what the published scripts compute
PROTOCOLS = ("rnaret", "published")
# One evaluation (and its fine-tuned checkpoint/) under the run's protocol: the contract path.
EVALUATION_DIR = "results/{task}/{dataset}/{model}"
# The same evaluation under another protocol of compare_protocols: its own tree, so that the
# contract path always means one evaluation under the run's protocol.
PROTOCOL_EVALUATION_DIR = "results/protocols/{protocol}/{task}/{dataset}/{model}"
# the logs of those jobs, in the same layout
EVALUATION_LOG_DIR = "logs/{task}/{dataset}/{model}"
PROTOCOL_EVALUATION_LOG_DIR = "logs/protocols/{protocol}/{task}/{dataset}/{model}"
_PUBLISHED_REPLACED = (
    "the form `published: {{k1: FILE}}` evaluated a released file on every test split of the task; "
    "write each released file as an entry with the datasets it was trained for instead: "
    "finetune.{task}.released: {{NAME: {{file: FILE, datasets: [DATASET, ...]}}}} (evaluated as the "
    "model released-NAME; docs/protocol-pipeline.md), and remove published-k* from finetune.{task}.models")
ONEHOT = "onehot"
# Snakemake starts the ready jobs of highest priority first (ties: larger inputs first). The
# corpus stages gate every pretraining and the pretrainings gate most fine-tunes, so they go
# first; then the longest jobs, the coding fine-tunes (whole transcripts of up to 3,000 nt; the
# Transformer's is the run's longest job), then the other fine-tunes. On 2 cores the default run
# otherwise ended with one long fine-tune running alone for minutes.
PRIORITY = {"corpus": 4, "pretrain": 3, "finetune": 1}
FINETUNE_PRIORITY = {"coding": 2}
STRUCTURE_FIGURE_INDEX = "results/report/structure/figures.txt"
MD5_VALUE = re.compile(r"[0-9a-fA-F]{32}")
# options the pipeline sets itself, refused in pretrain.overrides (they have their own keys)
RESERVED_OVERRIDES = {"k": "the model name (rnaret-k{k})", "architecture": "the model name",
                      "init_from": "pretrain.init_from", "precision": "the top-level precision key"}


def model_k(model: str) -> int | None:
    """The k of a model name (``rnaret-k5`` -> 5, ``transformer-k1`` -> 1); None for ``onehot``
    and released files."""
    match = re.fullmatch(r".+-k([135])", model)
    return int(match.group(1)) if match else None


def shard_dir(k: int) -> str:
    """Folder of the token shards at k (train/, valid/, manifest.json; rnaret/data/SHARDS.md)."""
    return f"results/shards/k{k}"


def pretrain_checkpoint(model: str) -> str:
    """The checkpoint folder a pretraining run writes (what fine-tuning reads)."""
    return f"results/pretrain/{model}/checkpoint"


def evaluation_dir(task: str, dataset: str, model: str) -> str:
    """results/{task}/{dataset}/{model}: one evaluation under the run's protocol (the results
    layout: README.md; :data:`EVALUATION_DIR`)."""
    return EVALUATION_DIR.format(task=task, dataset=dataset, model=model)


def released_model(name: str) -> str:
    """The model name of the released file of ``finetune.<task>.released.NAME``."""
    return f"released-{name}"


def job_protocol(wildcards, plan: "Plan") -> str:
    """The protocol of a fine-tuning or evaluation job: its ``protocol`` wildcard (the rules of
    :data:`PROTOCOL_EVALUATION_DIR`), else the run's."""
    return getattr(wildcards, "protocol", None) or plan.protocol


def analysis_dir(task: str, dataset: str, model: str) -> str:
    """results/report/analyses/{task}/{dataset}/{model}: the paper's analyses of one evaluation."""
    return f"results/report/analyses/{task}/{dataset}/{model}"


# the files `rnaret analyses <kind>` writes into an analysis_dir, per kind (rule outputs)
ANALYSIS_FILES = {
    "structure": ("per_sequence.tsv", "family.tsv", "family.png", "length.png"),
    "pca": ("pca_points.tsv", "pca_variance.tsv", "pca.png"),
    "cls-retention": ("cls_profile.tsv", "cls_example.tsv", "cls_map.tsv", "cls_bars.png", "cls_map.png"),
    "transcripts": ("profile.tsv", "map.tsv", "mrna.png", "lncrna.png", "codons.tsv", "kmers.tsv", "codons.png"),
}
ANALYSIS_KINDS = {"structure": ("structure",), "interaction": ("pca", "cls-retention"), "coding": ("transcripts",)}
# the paper's analyses read retention scores: the RetNet models only
RETNET_MODEL = r"rnaret-k[135]"


def _join(args) -> str:
    return shlex.join(str(a) for a in args)


def _labels_option(split: SplitSource) -> list[str]:
    """``--labels NAME=TABLE`` for a FASTA split with a side table of labels, else nothing."""
    return [] if split.labels is None else ["--labels", f"{split.split}={split.labels.path}"]


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Plan:
    """The resolved jobs of one validated config (defaults filled by the schema)."""

    def __init__(self, config: Mapping[str, Any]):
        self.config = copy.deepcopy(dict(config))
        self.archives = self.config.get("archives") or {}
        self.datasets: dict[str, dict[str, Dataset]] = resolve_datasets(self.config)
        self.code_version = __version__
        self.precision = self.config.get("precision", "auto")
        self.protocol = self.config.get("protocol", "rnaret")
        self._pretrain_configs: dict[str, dict] = {}
        # the site's SLURM values (rnaret.slurm_resources): every job's partition, GPU request, account
        try:
            self.site = Site.from_config(self.config.get("slurm"))
        except ValueError as exc:
            raise SettingsError("slurm", str(exc)) from None
        self._evaluations = self._plan_evaluations()
        self._check_pretraining()

    # ------------------------------------------------------------------ shared

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
        """The scheduling priority of a stage's jobs (:data:`PRIORITY`; 0 for the others)."""
        return PRIORITY.get(stage, 0)

    @staticmethod
    def finetune_priority(wildcards) -> int:
        """The scheduling priority of a fine-tune job: :data:`FINETUNE_PRIORITY` of its task, else
        the stage's."""
        return FINETUNE_PRIORITY.get(wildcards.task, PRIORITY["finetune"])

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
        """The protocols of ``compare_protocols`` (their jobs write :data:`PROTOCOL_EVALUATION_DIR`)."""
        return self.protocols()[1:]

    def protocol_pattern(self) -> str:
        """A wildcard constraint matching exactly the compared protocols (none: matches nothing)."""
        return "|".join(re.escape(p) for p in self.compared_protocols()) or "(?!)"

    def evaluation_dir(self, task: str, dataset: str, model: str, protocol: str | None = None) -> str:
        """The folder of one evaluation (and of its fine-tuned checkpoint/) under ``protocol``:
        :data:`EVALUATION_DIR` for the run's protocol (None), :data:`PROTOCOL_EVALUATION_DIR` for
        another."""
        if protocol is None or protocol == self.protocol:
            return evaluation_dir(task, dataset, model)
        return PROTOCOL_EVALUATION_DIR.format(protocol=protocol, task=task, dataset=dataset, model=model)

    @staticmethod
    def evaluation_out(wildcards, output) -> str:
        """``--out`` of an evaluation: the folder of its metrics.tsv."""
        return os.path.dirname(output.metrics)

    def protocol_precision(self, protocol: str) -> str:
        """``--precision`` of a fine-tuning or evaluation under ``protocol``: fp32 under
        ``published`` (the published scripts fine-tune and evaluate in float32), else the
        top-level ``precision``."""
        return "fp32" if protocol == "published" else self.precision

    # ------------------------------------------------------------------ data stages

    @property
    def corpus(self) -> dict:
        """The ``corpus:`` block; ``SettingsError`` when a pretraining needs it and it is absent."""
        corpus = self.config.get("corpus")
        if not corpus:
            models = ", ".join(self.pretrained_models()) or "a model"
            raise SettingsError("corpus", f"the corpus is needed to pretrain {models}; set corpus.url "
                                          "(or pretrain.init_from for released weights)")
        return corpus

    def corpus_download_path(self) -> str:
        """Where the download rule writes the corpus (named after the source's file name; a run
        without a corpus never asks for it)."""
        corpus = self.config.get("corpus") or {}
        return f"{CORPUS}/download/{url_name(corpus['url']) if corpus else 'corpus.fa.gz'}"

    def corpus_download_inputs(self, wildcards=None) -> list[str]:
        """Local corpus and checksum files: inputs, so that editing them reruns the data stages
        (an md5 written as 32 hex digits is a value, not a file)."""
        md5 = self.corpus.get("md5", "")
        sources = [self.corpus["url"]] + ([md5] if md5 and not MD5_VALUE.fullmatch(md5) else [])
        return [s for s in sources if not is_url(s)]

    def download_corpus_args(self, wildcards=None) -> str:
        """`rnaret download` options of the corpus: the source and its checksum (the release
        label goes to the summary only: a label never reruns the data stages)."""
        return _join([self.corpus["url"], f"--md5={self.corpus.get('md5', '')}"])

    def dataset_download_args(self, wildcards) -> str:
        """`rnaret download` options of a split given as a URL (its source and md5)."""
        source = self.split(wildcards.task, wildcards.dataset, wildcards.split)
        if source.url is None or url_name(source.url) != wildcards.filename:
            raise SettingsError(key_path("datasets", wildcards.task, wildcards.dataset, wildcards.split),
                                f"is not a URL ending in {wildcards.filename!r}")
        return _join([source.url, f"--md5={source.md5}"])

    def leakage_sources(self) -> list[SplitSource]:
        """The splits whose sequences are removed from the corpus: ``dedupe.leakage_splits`` of
        every dataset with a train split (and of test-only ones with ``dedupe.leakage_test_only``):
        adding a test-only dataset therefore never changes the corpus or retrains anything."""
        dedupe = self.config["dedupe"]
        out = []
        for task in self.datasets:
            for dataset in self.datasets[task].values():
                if dataset.trained or dedupe.get("leakage_test_only"):
                    out += [dataset.splits[s] for s in dataset.splits if s in dedupe["leakage_splits"]]
        return out

    def leakage_inputs(self, wildcards=None) -> list[str]:
        """The files of the splits checked for leakage (downloads and archives included)."""
        return sorted({s.input for s in self.leakage_sources()})

    def leakage_args(self, wildcards=None) -> str:
        """`rnaret leakage` options: the checked splits (local paths) as JSON, their names, and the
        similarity thresholds (``leakage:``)."""
        mapping: dict = {}
        for s in self.leakage_sources():
            mapping.setdefault(s.task, {}).setdefault(s.dataset, {})[s.split] = s.entry_value()
        return _join(["--datasets", _json(mapping), "--splits", ",".join(self.config["dedupe"]["leakage_splits"]),
                      *self._similarity_thresholds()])

    # ------------------------------------------------------------------ similarity (leakage, homology)

    def _similarity_thresholds(self) -> list:
        """``--min-identity/--min-test-coverage/--max-evalue`` from the ``leakage:`` block."""
        leakage = self.config["leakage"]
        return ["--min-identity", leakage["min_identity"], "--min-test-coverage", leakage["min_test_coverage"],
                "--max-evalue", leakage["max_evalue"]]

    def leakage_report_targets(self) -> list[str]:
        """The leakage figure and the closest removed pairs (when the corpus is built with the
        leakage stage: not for the published corpus)."""
        if self.published_corpus():
            return []
        return [f"{CORPUS}/leakage.png", f"{CORPUS}/leakage_closest.tsv"]

    def homology_datasets(self) -> list[tuple[str, str]]:
        """(task, dataset) of every dataset with a split to hold against its own (or its
        ``finetuned_on`` dataset's) train/valid splits (``rnaret.data.homology.COMPARISONS``)."""
        from rnaret.data.homology import COMPARISONS

        out = []
        for task, datasets in self.datasets.items():
            for name, dataset in datasets.items():
                reference = self.dataset(task, dataset.source)
                if any(dataset.has(evaluated) and reference.has(against) for evaluated, against in COMPARISONS):
                    out.append((task, name))
        return out

    def _homology_splits(self, task: str, name: str) -> dict:
        """The ``datasets:`` mapping a homology job reads: the dataset and its reference dataset."""
        dataset = self.dataset(task, name)
        mapping = {name: {s: v.entry_value() for s, v in dataset.splits.items()}}
        if dataset.source != name:
            mapping[name]["finetuned_on"] = dataset.source
            mapping[dataset.source] = {s: v.entry_value() for s, v in self.dataset(task, dataset.source).splits.items()}
        return {task: mapping}

    def homology_inputs(self, wildcards) -> list[str]:
        """The files of a dataset's splits and of its reference dataset's."""
        dataset = self.dataset(wildcards.task, wildcards.dataset)
        splits = list(dataset.splits.values()) + list(self.dataset(wildcards.task, dataset.source).splits.values())
        return sorted({s.input for s in splits})

    def homology_args(self, wildcards) -> str:
        """`rnaret homology` options of one dataset: its splits (and its reference's), thresholds."""
        return _join(["--datasets", _json(self._homology_splits(wildcards.task, wildcards.dataset)),
                      "--dataset", f"{wildcards.task}/{wildcards.dataset}", *self._similarity_thresholds()])

    def homology_tables(self, wildcards=None) -> list[str]:
        """results/homology/{task}/{dataset}.tsv of every compared dataset."""
        return [f"results/homology/{task}/{name}.tsv" for task, name in self.homology_datasets()]

    def homology_targets(self) -> list[str]:
        """The combined within-dataset homology table (none without a dataset to compare)."""
        return ["results/homology/summary.tsv"] if self.homology_datasets() else []

    def clustered(self) -> bool:
        """Whether the corpus is clustered after the leakage stage (``dedupe.cluster_identity``)."""
        return self.config["dedupe"].get("cluster_identity") is not None

    def cluster_extra(self, wildcards=None) -> str:
        """MMseqs2 easy-linclust options: the identity and coverage 0.8 of both sequences (the
        wrapper adds threads and the memory limit from the job's resources)."""
        identity = self.config["dedupe"]["cluster_identity"]
        if identity is None:
            raise SettingsError("dedupe.cluster_identity", "is null: the corpus is not clustered")
        return _join(["--min-seq-id", identity, "-c", 0.8, "--cov-mode", 0])

    def published_corpus(self) -> bool:
        """Whether the corpus is built as the published ``pretrain.py`` reads it (``protocol:
        published``): every record of the download, each cut to its first
        ``length_policy.max_length`` nt (its ``-l``), nothing removed (no dedupe, no leakage
        removal, no clustering, no length filter, no windows) and nothing held out."""
        return self.protocol == "published"

    def filter_input(self) -> str:
        """What the length filter reads: the normalized corpus (the published corpus), the
        cluster representatives, or the leakage stage's output."""
        if self.published_corpus():
            return f"{CORPUS}/normalized.fa.gz"
        return f"{CORPUS}/clustered.fa" if self.clustered() else f"{CORPUS}/no_leakage.fa.gz"

    def cluster_tables(self, wildcards=None) -> list[str]:
        """The cluster table the summary counts, when the corpus is clustered."""
        return [f"{CORPUS}/clusters.tsv"] if self.clustered() and not self.published_corpus() else []

    def _removal_counts(self) -> dict:
        # option of `rnaret corpus-summary` -> the counts of a stage that removes records
        if self.published_corpus():
            return {}
        return {"--dup-num": f"{CORPUS}/duplicates.txt", "--leakage": f"{CORPUS}/leakage.json"}

    def removal_counts(self, wildcards=None) -> list[str]:
        """The counts of the dedupe and leakage stages the summary reads (none for the
        published corpus, which skips them)."""
        return list(self._removal_counts().values())

    def filter_args(self, wildcards=None) -> str:
        """`rnaret filter` options from ``length_policy`` (window null = max_length); for the
        published corpus every record cut to its first ``max_length`` nt, none dropped (an empty
        record, which the published script cannot mask, is the one record the minimum 1 drops,
        counted)."""
        policy = self.config["length_policy"]
        if self.published_corpus():
            return _join(["--min-length", 1, "--max-length", policy["max_length"], "--long", "cut",
                          "--window", policy["max_length"], "--overlap", 0])
        window = policy.get("window") or policy["max_length"]
        return _join(["--min-length", policy["min_length"], "--max-length", policy["max_length"],
                      "--long", policy["long"], "--window", window, "--overlap", policy["overlap"]])

    def shard_args(self, wildcards=None) -> str:
        """`rnaret shard` options from ``shards`` (the k is the job's wildcard)."""
        shards = self.config["shards"]
        held_out = ["--valid-from-train"] if self.published_corpus() else []
        return _join(["--tokens-per-shard", shards["tokens_per_shard"], "--run-tokens", shards["run_tokens"],
                      "--valid-fraction", shards["valid_fraction"], "--seed", shards["seed"], *held_out])

    def shard_mem_mb(self) -> int:
        """Memory of a shard job: sorted runs and one shard buffer (2 bytes a token), whatever the
        corpus size."""
        shards = self.config["shards"]
        return 1000 + (shards["run_tokens"] * 40 + shards["tokens_per_shard"] * 2) // 1_000_000

    def summary_args(self, wildcards=None) -> str:
        """`rnaret corpus-summary` options set by the config: the corpus release label, the
        counts of the dedupe and leakage stages when they ran, and the cluster table when the
        corpus is clustered."""
        clusters = [a for path in self.cluster_tables() for a in ("--clusters", path)]
        removals = [a for option, path in self._removal_counts().items() for a in (option, path)]
        return _join(["--release", self.corpus.get("release", ""), *removals, *clusters])

    def shard_ks(self) -> list[int]:
        """The k of every shard folder the data stages build (``shards.k``)."""
        return list(self.config["shards"]["k"])

    # ------------------------------------------------------------------ pretraining

    def init_from(self, model: str) -> FileRef | None:
        """The released weights a model starts from instead of a pretraining (pretrain.init_from)."""
        value = (self.config["pretrain"].get("init_from") or {}).get(model)
        if value is None:
            return None
        return resolve_file(value, key_path("pretrain", "init_from", model), self.archives)

    def pretrained_models(self) -> list[str]:
        """Models whose pretraining the run asks for: ``pretrain.models`` without those replaced
        by ``init_from``, then those a fine-tuning needs, in that order."""
        models = [m for m in self.config["pretrain"]["models"] if self.init_from(m) is None]
        for task, _dataset, model in self._evaluations:
            if re.fullmatch(PRETRAINED_MODEL, model) and self.init_from(model) is None and model not in models:
                models.append(model)
        return models

    def pretrain_config(self, model: str) -> dict:
        """The full ``PretrainConfig`` (as a dict) of a model: ``pretrain.preset`` at its k,
        ``pretrain.overrides``, the architecture of its name and the precision of the protocol
        (``pretrain_precision``)."""
        if model not in self._pretrain_configs:
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
                                architecture=architecture, precision=self.pretrain_precision())
            except (ValueError, TypeError) as exc:
                raise SettingsError("pretrain.overrides", str(exc)) from None
            self._pretrain_configs[model] = config.to_dict()
        return copy.deepcopy(self._pretrain_configs[model])

    def pretrain_precision(self) -> str:
        """``--precision`` of the pretraining: under ``protocol: published`` fp16 (float16
        autocast and a gradient scaler on CUDA, fp32 on the CPU: what the published pretrain.py
        does), else the top-level ``precision``."""
        return "fp16" if self.protocol == "published" else self.precision

    def _pretrain_model(self, wildcards) -> str:
        model = wildcards.model
        if self.init_from(model) is not None:
            raise SettingsError(key_path("pretrain", "init_from", model),
                                f"{model} starts from released weights: it is not pretrained")
        return model

    def pretrain_inputs(self, wildcards) -> dict:
        """The token shards at the model's k."""
        return {"shards": shard_dir(model_k(self._pretrain_model(wildcards)))}

    def pretrain_args(self, wildcards) -> str:
        """`rnaret pretrain` options: the model, its full resolved config, device and precision."""
        model = self._pretrain_model(wildcards)
        return _join(["--model", model, "--config-preset", self.config["pretrain"]["preset"],
                      "--overrides", _json(self.pretrain_config(model)),
                      "--device", self.device("pretrain"), "--precision", self.pretrain_precision()])

    @staticmethod
    def pretrain_nproc(wildcards, resources) -> int:
        """Worker processes of a pretraining job on each node: one per GPU (DDP through torchrun),
        else one. (A function of the job's resources: the worker count alone never reruns a job.)"""
        from rnaret.slurm_resources import gpus_per_node

        return max(1, gpus_per_node(resources))

    @staticmethod
    def pretrain_nodes(wildcards, resources) -> int:
        """Nodes of a pretraining job, one torchrun launcher each (pretrain.nodes; 1 by default)."""
        from rnaret.slurm_resources import nodes_of

        return nodes_of(resources)

    @staticmethod
    def worker_threads(wildcards, threads, resources) -> int:
        """CPU threads of each worker: the job's threads (per node) shared by its workers."""
        from rnaret.slurm_resources import gpus_per_node

        return max(1, int(threads) // max(1, gpus_per_node(resources)))

    def pretrain_targets(self) -> list[str]:
        """checkpoint/, metrics.tsv and loss_curve.png of every model of ``pretrain.models`` that
        is pretrained (not replaced by ``init_from``)."""
        return [f"results/pretrain/{model}/{name}"
                for model in self.config["pretrain"]["models"] if self.init_from(model) is None
                for name in ("checkpoint", "metrics.tsv", "loss_curve.png")]

    def _check_pretraining(self) -> None:
        shard_ks = self.config["shards"]["k"]
        for model in self.config["pretrain"]["models"]:
            if self.init_from(model) is None and model_k(model) not in shard_ks:
                raise SettingsError("pretrain.models", f"{model} needs shards at k={model_k(model)}; "
                                                       f"add {model_k(model)} to shards.k")
        for model in self.pretrained_models():
            self.pretrain_config(model)
        for model in self.config["pretrain"].get("init_from") or {}:
            self.init_from(model)

    # ------------------------------------------------------------------ fine-tuning

    def finetune_layers(self, task: str, model: str | None) -> dict:
        """The settings layers of a (task, model) run: ``{"preset": finetune.preset}``, then
        ``finetune.<task>.settings``, then ``finetune.<task>.model_settings.<model>``."""
        block = self.config["finetune"][task]
        layers = {"preset": self.config["finetune"]["preset"], **(block.get("settings") or {})}
        if model is not None:
            layers.update((block.get("model_settings") or {}).get(model) or {})
        return layers

    def finetune_settings(self, task: str, model: str | None, protocol: str | None = None) -> dict:
        """Every task setting of a (task, model) run, as the run uses them; under ``protocol``
        resolved with
        that protocol's settings under the config's own, the k kept at the config's (the model's
        k: a protocol changes what is computed, not which model runs)."""
        from rnaret.tasks.settings import resolve_task_settings

        def named(exc: ValueError, *where) -> SettingsError:
            # a bound's error names the setting itself: finetune.coding.settings.epochs
            if isinstance(exc, SettingsError) and exc.key:
                return SettingsError(key_path(*where, exc.key), exc.bare)
            return SettingsError(key_path(*where), str(exc))

        try:
            resolved = resolve_task_settings(task, self.finetune_layers(task, None))
        except ValueError as exc:
            raise named(exc, "finetune", task, "settings") from None
        if model is not None:
            try:
                resolved = resolve_task_settings(task, self.finetune_layers(task, model))
            except ValueError as exc:
                raise named(exc, "finetune", task, "model_settings", model) from None
        if protocol is None:
            return resolved
        layers = {**self.finetune_layers(task, model), "protocol": protocol, "k": resolved["k"]}
        try:
            return resolve_task_settings(task, layers)
        except ValueError as exc:
            where = ("settings",) if model is None else ("model_settings", model)
            raise named(exc, "finetune", task, *where) from None

    def finetune_init(self, model: str) -> FileRef | None:
        """What a fine-tuning starts from: the model's pretraining checkpoint, or its released
        weights (``pretrain.init_from``); None for the one-hot control."""
        if model == ONEHOT:
            return None
        released = self.init_from(model)
        if released is not None:
            return released
        checkpoint = pretrain_checkpoint(model)
        return FileRef(path=checkpoint, depends=checkpoint)

    def _finetune_dataset(self, wildcards) -> Dataset:
        dataset = self.dataset(wildcards.task, wildcards.dataset)
        if not dataset.trained:
            raise SettingsError(key_path("datasets", wildcards.task, wildcards.dataset),
                                "has no train split to fine-tune on")
        return dataset

    def finetune_inputs(self, wildcards) -> dict:
        """The starting weights (none for onehot) and the train/valid files."""
        dataset = self._finetune_dataset(wildcards)
        inputs = {split: dataset.splits[split].input for split in ("train", "valid") if split in dataset.splits}
        inputs.update({f"{split}_labels": dataset.splits[split].labels.depends for split in ("train", "valid")
                       if split in dataset.splits and dataset.splits[split].labels is not None})
        init = self.finetune_init(wildcards.model)
        if init is not None:
            inputs["init"] = init.depends
        return inputs

    def finetune_args(self, wildcards) -> str:
        """`rnaret finetune` options: task, init, splits, every resolved setting, the job's
        protocol, device, precision."""
        task, model = wildcards.task, wildcards.model
        dataset = self._finetune_dataset(wildcards)
        init = self.finetune_init(model)
        args = ["--task", task, "--init", ONEHOT if init is None else init.path]
        for split in ("train", "valid"):
            if split in dataset.splits:
                args += ["--split", dataset.splits[split].argument()] + _labels_option(dataset.splits[split])
        protocol = job_protocol(wildcards, self)
        args += ["--settings", _json(self.finetune_settings(task, model, protocol)), "--protocol", protocol,
                 "--device", self.device("finetune"), "--precision", self.protocol_precision(protocol)]
        return _join(args)

    # ------------------------------------------------------------------ evaluation

    def released(self, task: str) -> dict[str, dict]:
        """The released fine-tuned files of a task (``finetune.<task>.released``): model name
        (``released-NAME``) -> ``{"key", "file": FileRef, "datasets", "settings"}``. Raises
        ``SettingsError`` for the former ``published:`` form and for a dataset that is not one
        of the task's test sets, naming the key."""
        block = self.config["finetune"][task]
        if block.get("published") is not None:
            raise SettingsError(key_path("finetune", task, "published"), _PUBLISHED_REPLACED.format(task=task))
        out = {}
        for name, entry in (block.get("released") or {}).items():
            key = key_path("finetune", task, "released", name)
            for i, dataset in enumerate(entry["datasets"]):
                if dataset not in self.datasets.get(task, {}) or not self.datasets[task][dataset].has("test"):
                    known = ", ".join(n for n, d in self.datasets.get(task, {}).items() if d.has("test")) or "none"
                    raise SettingsError(key_path("finetune", task, "released", name, "datasets", i),
                                        f"no {task} dataset {dataset!r} with a test split (known: {known})")
            out[released_model(name)] = {"key": key, "file": resolve_file(entry["file"], f"{key}.file", self.archives),
                                         "datasets": list(entry["datasets"]),
                                         "settings": dict(entry.get("settings") or {})}
        return out

    def evaluation_checkpoint(self, task: str, dataset: str, model: str, protocol: str | None = None) -> FileRef:
        """The model an evaluation under ``protocol`` (None: the run's) scores: the checkpoint
        fine-tuned under that protocol on the dataset (or on its ``finetuned_on``), or a released
        fine-tuned file (``released-NAME``)."""
        if re.fullmatch(RELEASED_MODEL, model):
            return self.released(task)[model]["file"]
        checkpoint = f"{self.evaluation_dir(task, self.dataset(task, dataset).source, model, protocol)}/checkpoint"
        return FileRef(path=checkpoint, depends=checkpoint)

    def evaluate_inputs(self, wildcards) -> dict:
        """The model to evaluate and the test file."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        test = self.split(task, dataset, "test")
        return {"checkpoint": self.evaluation_checkpoint(task, dataset, model, job_protocol(wildcards, self)).depends,
                "test": test.input, **({"test_labels": test.labels.depends} if test.labels is not None else {})}

    def evaluate_args(self, wildcards) -> str:
        """`rnaret evaluate` options: checkpoint, task, test split, protocol, device, precision;
        for a released file (a .pth, not a checkpoint folder) the task's resolved settings with
        the entry's own over them, without k (the command reads the k from the file)."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        protocol = job_protocol(wildcards, self)
        args = ["--checkpoint", self.evaluation_checkpoint(task, dataset, model, protocol).path, "--task", task,
                "--split", self.split(task, dataset, "test").argument(),
                *_labels_option(self.split(task, dataset, "test"))]
        if re.fullmatch(RELEASED_MODEL, model):
            entry = self.released(task)[model]
            settings = self.finetune_settings(task, None, protocol)
            if "k" not in entry["settings"]:
                settings.pop("k", None)
            args += ["--settings", _json({**settings, **entry["settings"]})]
        args += ["--protocol", protocol, "--device", self.device("finetune"),
                 "--precision", self.protocol_precision(protocol)]
        return _join(args)

    def _plan_evaluations(self) -> list[tuple[str, str, str]]:
        """(task, dataset, model) of every evaluation: each model of ``finetune.<task>.models`` on
        each dataset with a test split whose own (or ``finetuned_on``) dataset has a train split,
        then each released file on the datasets of its entry. Model-major order within a task, as
        the targets list them. The same evaluations run under every protocol of the run."""
        self._check_protocols()
        out = []
        for task in FINETUNE_TASKS:
            for i, model in enumerate(self.config["finetune"][task]["models"]):
                if re.fullmatch(r"published-k[135]", model):
                    raise SettingsError(key_path("finetune", task, "models", i),
                                        f"{model} is no longer a model: released files are entries of "
                                        f"finetune.{task}.released, evaluated without being listed here "
                                        "(docs/protocol-pipeline.md)")
                if model != ONEHOT:
                    run_k = self.finetune_settings(task, model)["k"]
                    if model_k(model) != run_k:
                        raise SettingsError(key_path("finetune", task, "models"),
                                            f"{model} is a k={model_k(model)} model but the {task} task is set "
                                            f"to k={run_k} (finetune.{task}.settings.k)")
                for name, dataset in self.datasets.get(task, {}).items():
                    if dataset.has("test") and self.datasets[task][dataset.source].trained:
                        out.append((task, name, model))
            for model, entry in self.released(task).items():
                out += [(task, name, model) for name in entry["datasets"]]
        return out

    def evaluation_targets(self) -> list[str]:
        """metrics.tsv of every evaluation under every protocol of the run (the run's protocol
        first), in the targets' order."""
        return [f"{self.evaluation_dir(task, dataset, model, protocol)}/metrics.tsv"
                for protocol, task, dataset, model in self.protocol_evaluations()]

    def protocol_evaluations(self) -> list[tuple[str, str, str, str]]:
        """(protocol, task, dataset, model) of every evaluation: each of the run's under its
        protocol, and those of the paper tasks again under each protocol of ``compare_protocols``
        (the generic tasks have no published protocol to compare with)."""
        return [(protocol, *e) for protocol in self.protocols() for e in self._evaluations
                if protocol == self.protocol or e[0] in PAPER_TASKS]

    # ------------------------------------------------------------------ ViennaRNA

    def structure_datasets(self) -> list[str]:
        """Names of the structure datasets with a test split (ViennaRNA runs on each)."""
        return [name for name, d in self.datasets.get("structure", {}).items() if d.has("test")]

    def vienna_inputs(self, wildcards) -> list[str]:
        """The structure dataset's test file."""
        return [self.split("structure", wildcards.dataset, "test").input]

    def vienna_args(self, wildcards) -> str:
        """`rnaret vienna` options: the test split and ``baselines.vienna``'s method, gamma and span."""
        test = self.split("structure", wildcards.dataset, "test")
        vienna = self.config["baselines"]["vienna"]
        args = ["--dataset", test.path]
        if test.row_split is not None:
            args += ["--split", test.row_split]
        args += ["--method", vienna["method"], "--gamma", vienna["gamma"]]
        if vienna.get("max_bp_span") is not None:
            args += ["--max-bp-span", int(vienna["max_bp_span"])]
        return _join(args)

    def vienna_targets(self) -> list[str]:
        """results/structure/{dataset}/vienna/metrics.tsv of every structure dataset with a test split."""
        return [f"results/structure/{name}/vienna/metrics.tsv" for name in self.structure_datasets()]

    # ------------------------------------------------------------------ tables and report

    def evaluations(self, wildcards=None) -> list[str]:
        """Every evaluation's metrics.tsv (the models' under each protocol of the run, then
        ViennaRNA's), grouped by task in structure, interaction, coding order: the tables' inputs
        (never a glob of results/)."""
        found = [(task, f"{self.evaluation_dir(task, dataset, model, protocol)}/metrics.tsv")
                 for protocol, task, dataset, model in self.protocol_evaluations()]
        found += [("structure", path) for path in self.vienna_targets()]
        ordered = sorted(found, key=lambda item: REPORT_TASKS.index(item[0]))
        return list(dict.fromkeys(path for _task, path in ordered))

    def published_results(self) -> str:
        """The TSV of published figures the tables add."""
        return self.config["report"]["published_results"]

    def structure_evaluations(self) -> list[tuple[str, str]]:
        """(dataset, model) of every structure evaluation under the run's protocol (ViennaRNA's
        included): the evaluations the report's structure figures show."""
        models = [(dataset, model) for task, dataset, model in self._evaluations if task == "structure"]
        return list(dict.fromkeys(models + [(name, "vienna") for name in self.structure_datasets()]))

    def structure_truth(self, wildcards) -> str:
        """The structure dataset's test file (the input of its figures)."""
        return self.split("structure", wildcards.dataset, "test").input

    def structure_truth_args(self, wildcards) -> str:
        """`rnaret structure-figures` options naming the true structures: --truth and --split."""
        test = self.split("structure", wildcards.dataset, "test")
        args = ["--truth", test.path]
        if test.row_split is not None:
            args += ["--split", test.row_split]
        return _join(args)

    @staticmethod
    def structure_per_sequence(wildcards) -> str:
        """The evaluation's per-sequence scores: ViennaRNA's per_sequence.tsv, the models'
        predictions.tsv."""
        name = "per_sequence.tsv" if wildcards.model == "vienna" else "predictions.tsv"
        return f"results/structure/{wildcards.dataset}/{wildcards.model}/{name}"

    def contact_map_examples(self) -> int:
        """Sequences in each contact-map figure."""
        return int(self.config["report"]["contact_map_examples"])

    def structure_figure_targets(self, wildcards=None) -> list[str]:
        """The F1 distribution of every structure evaluation, and ViennaRNA's contact maps."""
        targets = []
        for dataset, model in self.structure_evaluations():
            targets.append(f"results/report/structure/{dataset}/{model}/f1_distribution.png")
            if model == "vienna":
                targets.append(f"results/report/structure/{dataset}/vienna/contact_maps.png")
        return targets

    # ------------------------------------------------------------------ the paper's analyses

    def _analyses(self) -> list[tuple[str, str, str, str]]:
        """(kind, task, dataset, model) of every analysis: per-family F1 of every structure
        evaluation (ViennaRNA's included); PCA and CLS retention of every interaction evaluation,
        and transcript retention of every coding evaluation, of a RetNet model (none of the generic
        tasks)."""
        out = [("structure", "structure", d, m) for d, m in self.structure_evaluations()]
        for task, dataset, model in self._evaluations:
            if task != "structure" and re.fullmatch(RETNET_MODEL, model):
                out += [(kind, task, dataset, model) for kind in ANALYSIS_KINDS.get(task, ())]
        return out

    def analysis_targets(self) -> list[str]:
        """Every file of the paper's analyses (``analysis_dir`` + ``ANALYSIS_FILES``)."""
        return [f"{analysis_dir(task, dataset, model)}/{name}" for kind, task, dataset, model in self._analyses()
                for name in ANALYSIS_FILES[kind]]

    def analysis_inputs(self, wildcards) -> dict:
        """A model analysis's inputs: the fine-tuned checkpoint, the test file and, for coding,
        the evaluation's predictions."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        inputs = {"checkpoint": self.evaluation_checkpoint(task, dataset, model).depends,
                  "test": self.split(task, dataset, "test").input}
        if task == "coding":
            inputs["predictions"] = f"{evaluation_dir(task, dataset, model)}/predictions.tsv"
        return inputs

    def analysis_args(self, wildcards) -> str:
        """`rnaret analyses cls-retention|transcripts` options: checkpoint, test file and split,
        device, the layer (``report.analyses.layer``) and, for coding, the predictions and the
        codon count (``report.analyses.codon_transcripts``)."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        test = self.split(task, dataset, "test")
        settings = self.config["report"].get("analyses") or {}
        args = ["--checkpoint", self.evaluation_checkpoint(task, dataset, model).path, "--test", test.path]
        if test.row_split is not None:
            args += ["--split", test.row_split]
        args += ["--device", self.device("finetune")]
        if task == "coding":
            args += ["--predictions", f"{evaluation_dir(task, dataset, model)}/predictions.tsv",
                     "--max-transcripts", int(settings.get("codon_transcripts", 100))]
        if settings.get("layer") is not None:
            args += ["--layer", int(settings["layer"])]
        return _join(args)

    def pca_inputs(self, wildcards) -> dict:
        """``analysis_inputs`` and the pretrained encoder the fine-tuned model started from."""
        return {**self.analysis_inputs(wildcards), "pretrained": self.finetune_init(wildcards.model).depends}

    def pca_args(self, wildcards) -> str:
        """`rnaret analyses pca` options: checkpoint, test file and split, device, the pretrained encoder."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        test = self.split(task, dataset, "test")
        args = ["--checkpoint", self.evaluation_checkpoint(task, dataset, model).path, "--test", test.path]
        if test.row_split is not None:
            args += ["--split", test.row_split]
        return _join(args + ["--device", self.device("finetune"), "--pretrained", self.finetune_init(model).path])

    @staticmethod
    def analysis_f1_column(wildcards) -> str:
        """The per-sequence F1 column of a structure evaluation: ViennaRNA's MFE, the models' f1."""
        return "mfe_f1" if wildcards.model == "vienna" else "f1"

    def length_scaling_threads(self) -> int:
        """Threads of the length-scaling measurement (a measurement condition: passed as a tracked
        option, so that changing it reruns the measurement)."""
        return int(self.config["report"]["length_scaling"]["threads"])

    def length_scaling_args(self, wildcards=None) -> str:
        """`rnaret scaling` options from ``report.length_scaling``."""
        scaling = self.config["report"]["length_scaling"]
        return _join(["--models", *scaling["models"], "--presets", *scaling["presets"],
                      "--lengths", ",".join(str(n) for n in scaling["lengths"]), "--repeats", scaling["repeats"],
                      "--threads", scaling["threads"], "--max-seconds", scaling["max_seconds"]])

    def report_tasks(self) -> list[str]:
        """The tasks that get a table: the paper's three always, a generic task when the run
        evaluates a dataset of it."""
        evaluated = {task for task, _, _ in self._evaluations}
        return [task for task in REPORT_TASKS if task in PAPER_TASKS or task in evaluated]

    def tables_args(self, wildcards=None) -> str:
        """`rnaret tables` option naming the tables written (``report_tasks``)."""
        return _join(["--tasks", *self.report_tasks()])

    def report_targets(self) -> list[str]:
        """The tables (TSV, Markdown, HTML per task), the length scaling and the figure index."""
        return ([f"results/tables/{task}.{ext}" for ext in ("tsv", "md", "html") for task in self.report_tasks()]
                + ["results/tables/length_scaling.tsv", "results/tables/length_scaling.png",
                   STRUCTURE_FIGURE_INDEX])

    # ------------------------------------------------------------------ archives

    def archive_source(self, wildcards) -> dict:
        """``{"url", "md5"}`` of the archive results/archives/{archive} unpacks (``archives:``)."""
        name = wildcards.archive
        if name not in self.archives:
            raise SettingsError("archives", f"no archive {name!r} (known: {', '.join(self.archives) or 'none'})")
        return {"url": self.archives[name]["url"], "md5": self.archives[name].get("md5", "")}

    def archive_pattern(self) -> str:
        """A wildcard constraint matching exactly the names of ``archives:``."""
        return "|".join(re.escape(name) for name in self.archives) or "(?!)"

    def archive_inputs(self, wildcards) -> list[str]:
        """A local archive and a local checksum file of ``archives.{archive}``: the unpack job's
        inputs, so that changing the file reruns it (a URL is fetched by the job itself)."""
        entry = self.archive_source(wildcards)
        return [value.removeprefix("file://") for value in (entry["url"], entry["md5"])
                if value and not re.fullmatch(r"[0-9a-fA-F]{32}", value)
                and (not is_url(value) or value.startswith("file://"))]

    def archive_dirs(self) -> list[str]:
        """The unpacked folder of every archive of ``archives:``."""
        return [archive_dir(name) for name in self.archives]

    # ------------------------------------------------------------------ the whole plan

    def describe(self) -> dict:
        """The resolved settings of every job the config asks for, JSON-ready: the protocols
        (the run's first), pretraining configs per model, fine-tuning settings and inputs per
        (task, dataset, model), the evaluations (under each protocol), the splits checked for
        leakage and the final targets."""
        finetunes = {}
        for task, dataset, model in self._evaluations:
            source = self.dataset(task, dataset).source
            if re.fullmatch(RELEASED_MODEL, model) or f"{task}/{source}/{model}" in finetunes:
                continue
            init = self.finetune_init(model)
            finetunes[f"{task}/{source}/{model}"] = {
                "init": ONEHOT if init is None else init.path,
                "splits": {s: v.entry_value() for s, v in self.dataset(task, source).splits.items() if s != "test"},
                "settings": self.finetune_settings(task, model, self.protocol)}
        return {"code_version": self.code_version, "precision": self.precision, "protocols": self.protocols(),
                "devices": {stage: self.device(stage) for stage in ("pretrain", "finetune")},
                "pretrain": {model: self.pretrain_config(model) for model in self.pretrained_models()},
                "init_from": {m: ref.path for m in self.config["pretrain"].get("init_from") or {}
                              if (ref := self.init_from(m)) is not None},
                "finetune": finetunes,
                "evaluations": {f"{t}/{d}/{m}": {"checkpoint": self.evaluation_checkpoint(t, d, m).path,
                                                 "test": self.split(t, d, "test").entry_value()}
                                for t, d, m in self._evaluations},
                "leakage_splits": [s.label for s in self.leakage_sources()],
                "targets": self.targets()}

    # ------------------------------------------------------------------ targets

    def data_targets(self) -> list[str]:
        """The stage summary and the shards of every k, when a model is pretrained (a run of
        released weights only needs no corpus)."""
        if not self.pretrained_models():
            return []
        return [f"{CORPUS}/summary.tsv"] + [shard_dir(k) for k in self.shard_ks()] + self.leakage_report_targets()

    def targets(self) -> list[str]:
        """Every final target of ``rule all``: data, pretraining, evaluations, ViennaRNA, report."""
        return list(dict.fromkeys(self.data_targets() + self.pretrain_targets() + self.evaluation_targets()
                                  + self.vienna_targets() + self.report_targets() + self.homology_targets()
                                  + self.analysis_targets()))
