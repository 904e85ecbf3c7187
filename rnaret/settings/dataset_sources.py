"""The downstream datasets of a config, resolved to local files and row selections.

Two ways to name them, one resolution:

- ``datasets:`` in the config (docs/configuration.md)::

      datasets:
        <task>:                        # interaction | structure | coding | sequence-classification | ...
          <name>:
            train: <split source>
            valid: <split source>
            test:  <split source>
            finetuned_on: <other name> # optional, for a test-only dataset

  A split source is a path or URL (format from the extension), or a mapping ``{path: <table>,
  split: <value>}`` (the rows of one table whose ``split`` column equals ``<value>``), with
  ``archive: NAME`` when ``path`` is a member of an archive and ``md5`` for a URL. An entry set to
  ``null`` removes a dataset an earlier config file defined (``--configfile`` files are merged key
  by key over ``config.yaml``).
- a dataset sheet (``dataset_sheet: datasets.tsv``): a tab-separated table, one split a row, with
  the columns of ``workflow/schemas/datasets.schema.yaml`` (``task dataset split path select
  archive md5 finetuned_on``), as the Snakemake workflow catalog's pipelines take ``samples.tsv``.

Both become the same ``Dataset`` objects; a dataset named in both is an error.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rnaret.settings.errors import SettingsError, key_path
from rnaret.settings.files import DATASET_SHEET_SCHEMA, validate_record
from rnaret.settings.sources import FileRef, resolve_file, url_name
from rnaret.tasks.settings import GENERIC_TASKS  # the generic tasks' names (torch-free)

SPLITS = ("train", "valid", "test")
# the paper's tasks, then the generic ones (any labelled table: rnaret.tasks.generic)
TASKS = ("interaction", "structure", "coding") + GENERIC_TASKS
DOWNLOADS_DIR = "results/datasets"


@dataclass(frozen=True)
class SplitSource:
    """One split of one dataset: the local file, and for shared tables which rows.

    ``path`` is what the readers open (a download's or an archive member's local path for those);
    ``depends`` is the job's input for it (the file itself, the download, or the unpacked
    archive's folder); ``url``/``md5`` are set for a split that the download rule fetches.
    """

    task: str
    dataset: str
    split: str
    path: str
    row_split: str | None = None
    depends: str | None = None
    url: str | None = None
    md5: str = ""
    labels: FileRef | None = None  # a generic task's FASTA split: its side table of labels

    @property
    def label(self) -> str:
        """'task/dataset/split', as in log lines and counts."""
        return f"{self.task}/{self.dataset}/{self.split}"

    @property
    def input(self) -> str:
        """The file or folder a job reading this split depends on."""
        return self.depends or self.path

    def entry_value(self):
        """The split as a task's dataset entry holds it: the path, or ``{path, split}``."""
        if self.labels is not None:
            return {"path": self.path, "labels": self.labels.path,
                    **({"split": self.row_split} if self.row_split is not None else {})}
        return self.path if self.row_split is None else {"path": self.path, "split": self.row_split}

    def argument(self) -> str:
        """``NAME=PATH[#VALUE]``: the split as the commands' ``--split`` option takes it."""
        return f"{self.split}={self.path}" + (f"#{self.row_split}" if self.row_split is not None else "")


@dataclass(frozen=True)
class Dataset:
    """One dataset of a task: its splits (train, valid, test order) and ``finetuned_on``."""

    task: str
    name: str
    splits: Mapping[str, SplitSource] = field(default_factory=dict)
    finetuned_on: str | None = None

    def has(self, split: str) -> bool:
        """Whether the dataset defines ``split``."""
        return split in self.splits

    @property
    def trained(self) -> bool:
        """True when models are fine-tuned on this dataset (it has a train split)."""
        return "train" in self.splits

    @property
    def source(self) -> str:
        """The dataset whose fine-tuned models evaluate this one (``finetuned_on``, else itself)."""
        return self.finetuned_on or self.name

    def entry(self, splits=SPLITS) -> dict:
        """The dataset entry a task reads (``Task.load_dataset``): ``{split: path | {path, split}}``
        for the ``splits`` it has, plus ``finetuned_on`` when set."""
        entry: dict[str, Any] = {s: self.splits[s].entry_value() for s in splits if s in self.splits}
        if self.finetuned_on:
            entry["finetuned_on"] = self.finetuned_on
        return entry


def download_path(task: str, dataset: str, split: str, url: str) -> str:
    """Where the download_dataset rule writes a split given as a URL."""
    return f"{DOWNLOADS_DIR}/{task}/{dataset}/{split}/{url_name(url)}"


def split_source(task: str, dataset: str, split: str, value, archives=None) -> SplitSource:
    """One config split value (a path, URL, or mapping; see the module docstring) -> SplitSource.

    Raises ``SettingsError`` naming ``datasets.<task>.<dataset>.<split>`` for anything else."""
    key = key_path("datasets", task, dataset, split)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"path", "split", "archive", "md5", "labels"})
        if not isinstance(value.get("path"), str) or not value["path"] or unknown:
            raise SettingsError(key, f"expected a path or {{path, split, archive, md5}}, got {dict(value)!r}")
        row = value.get("split")
        md5 = str(value.get("md5") or "")
    elif isinstance(value, str) and value:
        row, md5 = None, ""
    else:
        raise SettingsError(key, f"expected a path or {{path, split, archive, md5}}, got {value!r}")
    url = value["path"] if isinstance(value, Mapping) else value
    ref = resolve_file(value, key, archives, download_to=download_path(task, dataset, split, str(url)), md5=md5)
    labels = None
    if isinstance(value, Mapping) and value.get("labels") is not None:
        if task not in GENERIC_TASKS:
            raise SettingsError(key_path(key, "labels"), f"a side table of labels is for the generic tasks "
                                                         f"({', '.join(GENERIC_TASKS)}), not {task}")
        if row is not None:
            raise SettingsError(key, "a FASTA split with a side table of labels is the whole FASTA: "
                                     "give it without `split`")
        labels = resolve_file(value["labels"], key_path(key, "labels"), archives)
    return SplitSource(task, dataset, split, ref.path, None if row is None else str(row),
                       depends=ref.depends, url=ref.url, md5=ref.md5, labels=labels)


def split_sources(datasets: Mapping | None, splits=SPLITS, archives=None) -> list[SplitSource]:
    """Every (task, dataset, split) of a ``datasets:`` mapping whose split is in ``splits``, in
    mapping order (``finetuned_on`` and ``null`` entries skipped)."""
    out = []
    for task, entries in (datasets or {}).items():
        for name, entry in (entries or {}).items():
            if entry is None:
                continue
            if not isinstance(entry, Mapping):
                raise SettingsError(key_path("datasets", task, name), f"expected a mapping of splits, got {entry!r}")
            for split in splits:
                if split in entry:
                    out.append(split_source(task, name, split, entry[split], archives))
    return out


def read_dataset_sheet(path) -> dict:
    """A dataset sheet (TSV) -> the ``datasets:`` mapping it describes.

    Rows are validated against ``workflow/schemas/datasets.schema.yaml`` (empty cells left out);
    lines that are empty or start with ``#`` are skipped. Errors name the sheet and the line: a bad
    cell, a split given twice, rows of one dataset that disagree on ``finetuned_on``.
    """
    path = Path(path)
    if not path.is_file():
        raise SettingsError("dataset_sheet", f"{path}: no such file")
    datasets: dict[str, dict[str, dict]] = {}
    seen: dict[tuple, int] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        lines = [(n, line) for n, line in enumerate(handle, 1) if line.strip() and not line.startswith("#")]
    if not lines:
        raise SettingsError("dataset_sheet", "the sheet is empty (expected a header line)", path=path)
    reader = csv.DictReader((line for _, line in lines), delimiter="\t")
    for (number, _), row in zip(lines[1:], reader):
        if None in row:
            raise SettingsError("dataset_sheet", f"more cells than the header's {len(reader.fieldnames)} columns",
                                path=path, line=number)
        record = {k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()}
        validate_record(record, DATASET_SHEET_SCHEMA, path=path, line=number)
        task, name, split = record["task"], record["dataset"], record["split"]
        if (task, name, split) in seen:
            raise SettingsError("dataset_sheet", f"{task}/{name}/{split} is also on line {seen[task, name, split]}",
                                path=path, line=number)
        seen[task, name, split] = number
        entry = datasets.setdefault(task, {}).setdefault(name, {})
        extra = {k: record[k] for k in ("archive", "md5") if k in record}
        if "select" in record:
            extra["split"] = record["select"]
        entry[split] = {"path": record["path"], **extra} if extra else record["path"]
        if "finetuned_on" in record:
            if entry.get("finetuned_on", record["finetuned_on"]) != record["finetuned_on"]:
                raise SettingsError("dataset_sheet", f"{task}/{name}: finetuned_on {record['finetuned_on']!r} "
                                    f"disagrees with {entry['finetuned_on']!r} on an earlier row",
                                    path=path, line=number)
            entry["finetuned_on"] = record["finetuned_on"]
    for task, entries in datasets.items():
        for name, entry in entries.items():
            if "test" not in entry:
                raise SettingsError("dataset_sheet", f"{task}/{name} has no test row", path=path)
    return datasets


def config_datasets(config: Mapping) -> dict:
    """The datasets of a (validated) config in ``datasets:`` form: the ``datasets:`` block
    (``null`` entries dropped) plus the sheet's; a dataset in both is a ``SettingsError``."""
    merged: dict[str, dict[str, dict]] = {}
    for task, entries in (config.get("datasets") or {}).items():
        for name, entry in (entries or {}).items():
            if entry is not None:
                merged.setdefault(task, {})[name] = dict(entry)
    sheet = config.get("dataset_sheet")
    if sheet:
        for task, entries in read_dataset_sheet(sheet).items():
            for name, entry in entries.items():
                if name in merged.get(task, {}):
                    raise SettingsError(key_path("datasets", task, name),
                                        f"also defined in the dataset sheet {sheet}: name it once")
                merged.setdefault(task, {})[name] = entry
    return merged


def resolve_datasets(config: Mapping) -> dict[str, dict[str, Dataset]]:
    """Every dataset of a validated config -> ``{task: {name: Dataset}}`` (tasks in TASKS order,
    datasets in config order, then the sheet's).

    Checks ``finetuned_on``: it names another dataset of the same task that has a train split, and
    only a dataset without a train split may carry it.
    """
    archives = config.get("archives") or {}
    raw = config_datasets(config)
    out: dict[str, dict[str, Dataset]] = {}
    for task in TASKS:
        for name, entry in (raw.get(task) or {}).items():
            splits = {s: split_source(task, name, s, entry[s], archives) for s in SPLITS if s in entry}
            out.setdefault(task, {})[name] = Dataset(task, name, splits, entry.get("finetuned_on"))
    for task, entries in out.items():
        for name, dataset in entries.items():
            if dataset.finetuned_on is None:
                continue
            key = key_path("datasets", task, name, "finetuned_on")
            if dataset.trained:
                raise SettingsError(key, "only a test-only dataset (no train split) is evaluated with another "
                                         "dataset's fine-tuned models")
            other = entries.get(dataset.finetuned_on)
            if other is None:
                raise SettingsError(key, f"no dataset {dataset.finetuned_on!r} in datasets.{task} "
                                         f"(known: {', '.join(entries)})")
            if not other.trained:
                raise SettingsError(key, f"datasets.{task}.{dataset.finetuned_on} has no train split to fine-tune on")
    return out
