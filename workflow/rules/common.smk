# Helpers shared by every stage: paths built from the config, dataset lookup, and the
# registry of final targets that `rule all` collects (a stage adds its targets with
# `register_targets("stage", function)` at the end of its .smk file).

import json
import os
import urllib.parse
from pathlib import Path

# The rules run `python -m rnaret ...` from this source tree, with or without --use-conda
# (the conda envs pin rnaret's dependencies; rnaret itself is not installed into them).
shell.prefix(
    f"export PYTHONPATH='{workflow.basedir}'${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)


def conda_env(name):
    """Path of a stage's conda environment file, envs/<name>.yaml."""
    return os.path.join(workflow.basedir, "envs", f"{name}.yaml")


SEQKIT_WRAPPER = f"file://{workflow.basedir}/workflow/wrappers/seqkit"


# ------------------------------------------------------------------ targets of `rule all`

_TARGETS = {}


def register_targets(stage, targets):
    """Add (or replace) a stage's final targets, a list of paths; `rule all` requests them."""
    _TARGETS[stage] = list(targets)


def all_targets(wildcards=None):
    """Every registered stage's targets, in registration order (input of `rule all`)."""
    return [target for targets in _TARGETS.values() for target in targets]


# ------------------------------------------------------------------ sources: local or URL


def is_url(source):
    """True for http(s):// and file:// sources (fetched by a download rule)."""
    return urllib.parse.urlparse(str(source)).scheme in ("http", "https", "file")


def url_name(source):
    """The file name a URL or path ends with."""
    return Path(urllib.parse.unquote(urllib.parse.urlparse(str(source)).path)).name


# ------------------------------------------------------------------ the corpus

CORPUS = "results/corpus"


def corpus_download_path():
    """Where the download rule puts the corpus (named after the source's file name)."""
    return f"{CORPUS}/download/{url_name(config['corpus']['url'])}"


def corpus_download_inputs(wildcards):
    """Local corpus and checksum files are inputs (so edits rerun the pipeline); URLs are not."""
    inputs = []
    for source in (config["corpus"]["url"], config["corpus"].get("md5", "")):
        if source and not is_url(source) and os.path.exists(source):
            inputs.append(source)
    return inputs


def shard_dir(k):
    """Folder of the token shards at k: train/ and valid/ with manifest.json (rnaret/data/SHARDS.md)."""
    return f"results/shards/k{k}"


# ------------------------------------------------------------------ downstream datasets

SPLITS = ("train", "valid", "test")


def datasets_of(task):
    """Names of the configured datasets of a task (interaction, structure, coding)."""
    return list(config.get("datasets", {}).get(task, {}) or {})


def dataset_entry(task, dataset):
    """The config mapping of one dataset: {train, valid, test, finetuned_on?}."""
    return config["datasets"][task][dataset]


def _split_value(task, dataset, split):
    entry = dataset_entry(task, dataset).get(split)
    if entry is None:
        raise ValueError(f"datasets.{task}.{dataset} has no {split!r} split")
    return entry if isinstance(entry, dict) else {"path": entry}


def dataset_download_path(task, dataset, split, url):
    """Where the download_dataset rule puts a split given as a URL."""
    return f"results/datasets/{task}/{dataset}/{split}/{url_name(url)}"


def dataset_path(task, dataset, split):
    """Local path of a dataset split (the download rule's output when the config gives a URL).

    For a `{path: table, split: value}` entry this is the table; select its rows with
    ``dataset_row_split``.
    """
    source = _split_value(task, dataset, split)["path"]
    return (
        dataset_download_path(task, dataset, split, source)
        if is_url(source)
        else source
    )


def dataset_row_split(task, dataset, split):
    """The value of the table's `split` column to keep, or None when the file is the split."""
    return _split_value(task, dataset, split).get("split")


def dataset_splits(task, dataset):
    """The splits a dataset defines, in train, valid, test order."""
    return [s for s in SPLITS if s in dataset_entry(task, dataset)]


def resolved_datasets(splits=SPLITS):
    """The `datasets:` mapping restricted to ``splits``, every source replaced by its local path."""
    out = {}
    for task, entries in (config.get("datasets") or {}).items():
        for name in entries or {}:
            for split in dataset_splits(task, name):
                if split in splits:
                    value = {"path": dataset_path(task, name, split)}
                    row = dataset_row_split(task, name, split)
                    if row is not None:
                        value["split"] = row
                    out.setdefault(task, {}).setdefault(name, {})[split] = value
    return out


def leakage_inputs(wildcards):
    """Local files of every split checked for leakage (downloads included)."""
    splits = config["dedupe"]["leakage_splits"]
    return sorted(
        {
            v["path"]
            for t in resolved_datasets(splits).values()
            for d in t.values()
            for v in d.values()
        }
    )


def leakage_datasets_json(wildcards):
    """The splits checked for leakage as JSON text for `rnaret leakage --datasets`."""
    return json.dumps(
        resolved_datasets(config["dedupe"]["leakage_splits"]), sort_keys=True
    )


def dataset_download_url(wildcards):
    """The URL behind results/datasets/{task}/{dataset}/{split}/{filename}."""
    return _split_value(wildcards.task, wildcards.dataset, wildcards.split)["path"]


def dataset_download_md5(wildcards):
    """The md5 (or checksum file) given with a URL split as {path: URL, md5: ...}, or ''."""
    return _split_value(wildcards.task, wildcards.dataset, wildcards.split).get(
        "md5", ""
    )
