"""The data stages (``workflow/rules/data.smk``): the corpus (download -> normalize -> dedupe ->
leakage -> [cluster] -> filter -> shard per k, and its summary), the downloads of datasets given as
URLs, and the homology within each dataset. Under ``protocol: published`` the corpus is the
published one: normalize -> filter (each record cut, nothing dropped) -> shard (nothing held out)."""
from __future__ import annotations

from rnaret.settings.dataset_sources import DOWNLOADS_DIR, SplitSource
from rnaret.settings.errors import SettingsError, key_path
from rnaret.settings.sources import is_url, url_name
from rnaret.settings.stages.archives import MD5_VALUE
from rnaret.settings.stages.base import Stage, compact_json, join

CORPUS = "results/corpus"  # every file of the corpus stages (the rules' outputs: f"{CORPUS}/NAME")
SHARDS = "results/shards/k{k}"  # the token shards at k (train/, valid/, manifest.json; rnaret/data/SHARDS.md)
HOMOLOGY = "results/homology"  # the homology tables within each dataset, and their summary


def shard_dir(k: int) -> str:
    """Folder of the token shards at k (:data:`SHARDS`)."""
    return SHARDS.format(k=k)


class Data(Stage):
    """The corpus, dataset-download and homology jobs."""

    CORPUS = CORPUS
    SHARDS = SHARDS
    DATASET_DOWNLOAD = f"{DOWNLOADS_DIR}/{{task}}/{{dataset}}/{{split}}/{{filename}}"  # dataset_sources.download_path
    HOMOLOGY_TABLE = f"{HOMOLOGY}/{{task}}/{{dataset}}.tsv"
    HOMOLOGY_HITS = f"{HOMOLOGY}/{{task}}/{{dataset}}_hits.tsv"
    HOMOLOGY_SUMMARY = f"{HOMOLOGY}/summary.tsv"

    @property
    def corpus(self) -> dict:
        """The ``corpus:`` block; ``SettingsError`` when a pretraining needs it and it is absent."""
        corpus = self.config.get("corpus")
        if not corpus:
            models = ", ".join(self.plan.pretrain.pretrained_models()) or "a model"
            raise SettingsError("corpus", f"the corpus is needed to pretrain {models}; set corpus.url "
                                          "(or pretrain.init_from for released weights)")
        return corpus

    def download_path(self) -> str:
        """Where the download rule writes the corpus (named after the source's file name; a run
        without a corpus never asks for it)."""
        corpus = self.config.get("corpus") or {}
        return f"{CORPUS}/download/{url_name(corpus['url']) if corpus else 'corpus.fa.gz'}"

    def download_inputs(self, wildcards=None) -> list[str]:
        """Local corpus and checksum files: inputs, so that editing them reruns the data stages
        (an md5 written as 32 hex digits is a value, not a file)."""
        md5 = self.corpus.get("md5", "")
        sources = [self.corpus["url"]] + ([md5] if md5 and not MD5_VALUE.fullmatch(md5) else [])
        return [s for s in sources if not is_url(s)]

    def download_args(self, wildcards=None) -> str:
        """`rnaret download` options of the corpus: the source and its checksum (the release
        label goes to the summary only: a label never reruns the data stages)."""
        return join([self.corpus["url"], f"--md5={self.corpus.get('md5', '')}"])

    def dataset_download_args(self, wildcards) -> str:
        """`rnaret download` options of a split given as a URL (its source and md5)."""
        source = self.plan.split(wildcards.task, wildcards.dataset, wildcards.split)
        if source.url is None or url_name(source.url) != wildcards.filename:
            raise SettingsError(key_path("datasets", wildcards.task, wildcards.dataset, wildcards.split),
                                f"is not a URL ending in {wildcards.filename!r}")
        return join([source.url, f"--md5={source.md5}"])

    # ------------------------------------------------------------------ leakage

    def leakage_sources(self) -> list[SplitSource]:
        """The splits whose sequences are removed from the corpus: ``dedupe.leakage_splits`` of
        every dataset with a train split (and of test-only ones with ``dedupe.leakage_test_only``):
        adding a test-only dataset therefore never changes the corpus or retrains anything."""
        dedupe = self.config["dedupe"]
        out = []
        for task in self.plan.datasets:
            for dataset in self.plan.datasets[task].values():
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
        return join(["--datasets", compact_json(mapping), "--splits", ",".join(self.config["dedupe"]["leakage_splits"]),
                     *self._similarity_thresholds()])

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

    # ------------------------------------------------------------------ homology within datasets

    def homology_datasets(self) -> list[tuple[str, str]]:
        """(task, dataset) of every dataset with a split to hold against its own (or its
        ``finetuned_on`` dataset's) train/valid splits (``rnaret.data.homology.COMPARISONS``)."""
        from rnaret.data.homology import COMPARISONS

        out = []
        for task, datasets in self.plan.datasets.items():
            for name, dataset in datasets.items():
                reference = self.plan.dataset(task, dataset.source)
                if any(dataset.has(evaluated) and reference.has(against) for evaluated, against in COMPARISONS):
                    out.append((task, name))
        return out

    def _homology_splits(self, task: str, name: str) -> dict:
        """The ``datasets:`` mapping a homology job reads: the dataset and its reference dataset."""
        dataset = self.plan.dataset(task, name)
        mapping = {name: {s: v.entry_value() for s, v in dataset.splits.items()}}
        if dataset.source != name:
            mapping[name]["finetuned_on"] = dataset.source
            mapping[dataset.source] = {s: v.entry_value()
                                       for s, v in self.plan.dataset(task, dataset.source).splits.items()}
        return {task: mapping}

    def homology_inputs(self, wildcards) -> list[str]:
        """The files of a dataset's splits and of its reference dataset's."""
        dataset = self.plan.dataset(wildcards.task, wildcards.dataset)
        splits = list(dataset.splits.values()) + list(self.plan.dataset(wildcards.task, dataset.source).splits.values())
        return sorted({s.input for s in splits})

    def homology_args(self, wildcards) -> str:
        """`rnaret homology` options of one dataset: its splits (and its reference's), thresholds."""
        return join(["--datasets", compact_json(self._homology_splits(wildcards.task, wildcards.dataset)),
                     "--dataset", f"{wildcards.task}/{wildcards.dataset}", *self._similarity_thresholds()])

    def homology_tables(self, wildcards=None) -> list[str]:
        """:attr:`HOMOLOGY_TABLE` of every compared dataset."""
        return [self.HOMOLOGY_TABLE.format(task=task, dataset=name) for task, name in self.homology_datasets()]

    def homology_targets(self) -> list[str]:
        """The combined within-dataset homology table (none without a dataset to compare)."""
        return [self.HOMOLOGY_SUMMARY] if self.homology_datasets() else []

    # ------------------------------------------------------------------ cluster, filter, shard

    def clustered(self) -> bool:
        """Whether the corpus is clustered after the leakage stage (``dedupe.cluster_identity``)."""
        return self.config["dedupe"].get("cluster_identity") is not None

    def cluster_extra(self, wildcards=None) -> str:
        """MMseqs2 easy-linclust options: the identity and coverage 0.8 of both sequences (the
        wrapper adds threads and the memory limit from the job's resources)."""
        identity = self.config["dedupe"]["cluster_identity"]
        if identity is None:
            raise SettingsError("dedupe.cluster_identity", "is null: the corpus is not clustered")
        return join(["--min-seq-id", identity, "-c", 0.8, "--cov-mode", 0])

    def published_corpus(self) -> bool:
        """Whether the corpus is built as the published ``pretrain.py`` reads it (``protocol:
        published``): every record of the download, each cut to its first
        ``length_policy.max_length`` nt (its ``-l``), nothing removed (no dedupe, no leakage
        removal, no clustering, no length filter, no windows) and nothing held out."""
        return self.plan.protocol == "published"

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
            return join(["--min-length", 1, "--max-length", policy["max_length"], "--long", "cut",
                         "--window", policy["max_length"], "--overlap", 0])
        window = policy.get("window") or policy["max_length"]
        return join(["--min-length", policy["min_length"], "--max-length", policy["max_length"],
                     "--long", policy["long"], "--window", window, "--overlap", policy["overlap"]])

    def shard_args(self, wildcards=None) -> str:
        """`rnaret shard` options from ``shards`` (the k is the job's wildcard)."""
        shards = self.config["shards"]
        held_out = ["--valid-from-train"] if self.published_corpus() else []
        return join(["--tokens-per-shard", shards["tokens_per_shard"], "--run-tokens", shards["run_tokens"],
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
        return join(["--release", self.corpus.get("release", ""), *removals, *clusters])

    def shard_ks(self) -> list[int]:
        """The k of every shard folder the data stages build (``shards.k``)."""
        return list(self.config["shards"]["k"])

    def shard_dirs(self) -> list[str]:
        """The shard folder of every k of ``shards.k`` (the summary's inputs)."""
        return [shard_dir(k) for k in self.shard_ks()]

    def targets(self) -> list[str]:
        """The stage summary and the shards of every k, when a model is pretrained (a run of
        released weights only needs no corpus)."""
        if not self.plan.pretrain.pretrained_models():
            return []
        return [f"{CORPUS}/summary.tsv"] + self.shard_dirs() + self.leakage_report_targets()
