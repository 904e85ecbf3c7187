"""The config's downstream datasets (``datasets:`` in config.yaml): the leakage key of their
sequences, and their resolution re-exported.

Their resolution (config entries and the dataset sheet -> local files and row selections:
``SplitSource``, ``split_sources``) is ``rnaret.settings.dataset_sources``, re-exported here. Reading
the files is ``rnaret.io.dataset_readers`` (``dataset_format``, ``read_dataset``, ``iter_sequences``):
one reader per format, shared by every stage.

Layout (DESIGN.md contract)::

    datasets:
      <task>:                       # interaction | structure | coding
        <name>:
          train: <split source>
          valid: <split source>
          test:  <split source>
          finetuned_on: <other name>  # optional, for a test-only dataset

A split source is a path or URL (its format from the path: see ``rnaret.io.dataset_readers``), or a
mapping ``{path: <table>, split: <value>}`` meaning the rows of that table whose ``split``
column equals ``<value>`` (one table holding several splits).
"""
from __future__ import annotations

from rnaret.settings.dataset_sources import SPLITS, SplitSource, split_sources  # noqa: F401  (resolution)


def normalized(sequence: str) -> str:
    """The comparison key of leakage checks: upper case, U read as T."""
    return sequence.upper().replace("U", "T")
