"""The config's downstream datasets (``datasets:`` in config.yaml): their splits and sources.

Layout (DESIGN.md contract)::

    datasets:
      <task>:                       # interaction | structure | coding
        <name>:
          train: <split source>
          valid: <split source>
          test:  <split source>
          finetuned_on: <other name>  # optional, for a test-only dataset

A split source is a path or URL (its format and reader: ``rnaret.io.datasets``), or a mapping
``{path: <table>, split: <value>}`` meaning the rows of that table whose ``split`` column
equals ``<value>`` (one table holding several splits). This module resolves the config's
entries; reading the files is ``rnaret.io.datasets.read_dataset`` / ``iter_sequences``.
"""
from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitSource:
    """One split of one dataset: where it is and, for shared tables, which rows."""

    task: str
    dataset: str
    split: str
    path: str                       # local path or URL as written in the config
    row_split: str | None = None    # value of the table's `split` column, when rows are selected

    @property
    def label(self) -> str:
        """'task/dataset/split', as in log lines and counts."""
        return f"{self.task}/{self.dataset}/{self.split}"


def split_sources(datasets: dict, splits=SPLITS) -> list[SplitSource]:
    """Every (task, dataset, split) entry of a ``datasets:`` mapping whose split is in ``splits``.

    Raises ``ValueError`` naming the key when an entry is neither a path nor {path, split}.
    """
    out = []
    for task, entries in (datasets or {}).items():
        for name, entry in (entries or {}).items():
            for split in splits:
                if split not in entry:
                    continue
                value = entry[split]
                if isinstance(value, str):
                    out.append(SplitSource(task, name, split, value))
                elif isinstance(value, dict) and isinstance(value.get("path"), str):
                    row = value.get("split")
                    out.append(SplitSource(task, name, split, value["path"],
                                           None if row is None else str(row)))
                else:
                    raise ValueError(f"datasets.{task}.{name}.{split}: expected a path or "
                                     f"{{path: ..., split: ...}}, got {value!r}")
    return out


def normalized(sequence: str) -> str:
    """The comparison key of leakage checks: upper case, U read as T."""
    return sequence.upper().replace("U", "T")
