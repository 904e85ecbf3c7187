"""Downstream dataset files: which format a path holds, and the one reader of each format.

Every stage that reads a dataset split (leakage, fine-tuning, evaluation, ViennaRNA, the serve)
goes through :func:`read_dataset` or :func:`iter_sequences`, so a file is accepted or refused
the same way everywhere. The formats, from the path (any file may be gzipped: gzip is read from
the content, ``.gz`` in the name is optional):

| format | path | reader | task |
|---|---|---|---|
| ``structure_table`` | ``.csv`` / ``.tsv`` with ``id, sequence, structure``/``base_pairs`` | ``rnaret.io.structure.read_structure_table`` | structure |
| ``dbn`` | ``.dbn`` / ``.db`` / ``.dot`` | ``rnaret.io.structure.read_dbn`` | structure |
| ``bpseq`` | ``.bpseq`` | ``rnaret.io.structure.read_bpseq`` | structure |
| ``ct`` | ``.ct`` | ``rnaret.io.structure.read_ct`` | structure |
| ``structure_folder`` | a folder of ``.bpseq`` or ``.ct`` files, walked recursively | ``rnaret.io.structure.read_structure_folder`` | structure |
| ``mirna_table`` | ``.tsv``/``.csv`` with ``mirna_seq_3to5``/``mirna_seq``, ``target_seq``, ``label``; the published headerless 5-column ``.txt`` | ``rnaret.io.mirna_table.read_pair_table`` | interaction |
| ``transcript_fasta`` | ``.fa`` / ``.fasta`` / ``.fna`` (GENCODE headers, ``CDS:a-b`` = coding) | ``rnaret.io.transcripts.read_transcripts`` | coding |
| ``label_table`` | ``.tsv`` / ``.csv`` with ``sequence``, ``label`` (``id``, ``split`` optional) | ``rnaret.io.labels.read_label_table`` | the generic tasks |
| ``label_fasta`` | ``.fa`` / ``.fasta`` / ``.fna``, labels in a side table (the task reads them: ``rnaret.io.labels``) | ``rnaret.io.fasta.read_fasta`` | the generic tasks |

A ``.csv``/``.tsv`` table is read as the table of the task it is given to; without a task its
first non-blank line decides (a miRNA-target header or the 5-column layout: ``mirna_table``;
anything else: ``structure_table``, whose reader then names what is missing).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from rnaret.io.errors import InputError
from rnaret.io.mirna_table import PairRow, is_mirna_table, read_pair_table
from rnaret.io.structure import StructureRecord, read_structures, structure_format
from rnaret.io.transcripts import Transcript, read_transcripts
from rnaret.tasks.settings import GENERIC_TASKS

FASTA_SUFFIXES = (".fa", ".fasta", ".fna")
STRUCTURE_FORMATS = ("structure_table", "dbn", "bpseq", "ct", "structure_folder")
TASK_FORMATS: dict[str, tuple[str, ...]] = {
    "structure": STRUCTURE_FORMATS,
    "interaction": ("mirna_table",),
    "coding": ("transcript_fasta",),
    **{task: ("label_table", "label_fasta") for task in GENERIC_TASKS},
}
# what each format is called in messages
FORMAT_NAMES = {
    "structure_table": "a structure table (.csv/.tsv: id, sequence, structure or base_pairs)",
    "dbn": "a dot-bracket file (.dbn)", "bpseq": "a .bpseq file", "ct": "a CT file (.ct)",
    "structure_folder": "a folder of .bpseq/.ct files",
    "mirna_table": "a miRNA-target table (.tsv with mirna_seq_3to5 or mirna_seq, target_seq, label; "
                   "or the published headerless 5-column .txt)",
    "transcript_fasta": "a FASTA of transcripts (.fa/.fasta/.fna; CDS:a-b in a header marks a coding one)",
    "label_table": "a label table (.tsv/.csv: id, sequence, label)",
    "label_fasta": "a FASTA of sequences whose labels are in a side table",
}

# what each task reads, in messages
TASK_READS = {
    "structure": "a structure table (.csv/.tsv), .dbn, .bpseq, .ct or a folder of .bpseq/.ct files",
    "interaction": FORMAT_NAMES["mirna_table"],
    "coding": FORMAT_NAMES["transcript_fasta"],
    **{task: "a label table (.tsv/.csv) or a FASTA with a side table of labels" for task in GENERIC_TASKS},
}


def _name(path) -> str:
    return Path(path).name.lower().removesuffix(".gz")


def dataset_format(path, task: str | None = None) -> str:
    """The format of a dataset path (one of ``FORMAT_NAMES``; see the module docstring).

    ``task``: the task the file is given to; a table is then read as that task's table, and a
    format the task does not read is an ``InputError`` saying what the task reads. Raises
    ``InputError`` for a missing path and a name that is no dataset format.
    """
    if task is not None and task not in TASK_FORMATS:
        raise InputError(path, f"no dataset reader for task {task!r} (tasks: {', '.join(sorted(TASK_FORMATS))})")
    if not os.path.exists(path):
        raise InputError(path, "no such file or folder")
    name = _name(path)
    if task in GENERIC_TASKS:
        from rnaret.io.labels import label_format

        return f"label_{label_format(path)}"
    if os.path.isdir(path):
        kind = "structure_folder"
    elif name.endswith(".txt"):
        kind = "mirna_table"
    elif name.endswith(FASTA_SUFFIXES):
        kind = "transcript_fasta"
    else:
        kind = structure_format(path)
        if kind == "structure_table":
            if task is not None:
                kind = "mirna_table" if task == "interaction" else "structure_table"
            else:
                kind = _table_kind(path)
    if kind is None:
        raise InputError(path, "unknown dataset format (expected .csv, .tsv, .txt, .fa/.fasta/.fna, .dbn, "
                               ".bpseq, .ct, each optionally .gz, or a folder of .bpseq/.ct files)")
    if task is not None and kind not in TASK_FORMATS[task]:
        article = "an" if task[0] in "aeiou" else "a"
        raise InputError(path, f"{article} {task} dataset is {TASK_READS[task]}; this path is {FORMAT_NAMES[kind]}")
    return kind


def _table_kind(path) -> str:
    """'mirna_table' or 'structure_table' from a .csv/.tsv table's first non-blank line."""
    return "mirna_table" if is_mirna_table(path) else "structure_table"


def read_dataset(path, task: str | None = None, select: str | None = None
                 ) -> Iterator[StructureRecord | PairRow | Transcript]:
    """The records of one dataset split, read by its format's one reader.

    Yields ``StructureRecord`` (structure formats), ``PairRow`` (miRNA-target tables) or
    ``Transcript`` (CDS-labelled FASTA, ``cds`` read from the headers). ``task``: the task it is
    read for (checked, see :func:`dataset_format`); ``select``: only the rows of a table whose
    ``split`` column equals it (``InputError`` for a file without such a column).
    """
    path = os.fspath(path)
    kind = dataset_format(path, task)
    if kind == "label_table":
        from rnaret.io.labels import read_label_table

        return iter(read_label_table(path, select))
    if kind == "label_fasta":
        from rnaret.io.fasta import read_fasta

        if select is not None:
            raise InputError(path, f"a split ({select!r}) of a FASTA is selected by its side table of labels")
        return read_fasta(path, allow_gaps=False)
    if select is not None and kind not in ("structure_table", "mirna_table"):
        raise InputError(path, f"a split ({select!r}) can only be selected from a table with a 'split' column; "
                               f"this path is {FORMAT_NAMES[kind]}")
    if kind == "mirna_table":
        return iter(read_pair_table(path, select))
    if kind == "transcript_fasta":
        return read_transcripts(path)
    return read_structures(path, select)


def iter_sequences(path, row_split: str | None = None, task: str | None = None) -> Iterator[tuple[str, str]]:
    """(record, sequence) pairs of one dataset split, in file order, through :func:`read_dataset`
    (so a file the tasks refuse is refused here too).

    miRNA-target tables give two sequences a row, the miRNA 5'->3' (record ``line N:mirna_seq``)
    and the target site (``line N:target_seq``); FASTA gives transcripts; the structure formats
    give each structure's sequence (record = its id).
    """
    for record in read_dataset(path, task, row_split):
        if isinstance(record, PairRow):
            yield f"line {record.line}:mirna_seq", record.mirna
            yield f"line {record.line}:target_seq", record.site
        else:
            yield record.id, record.sequence
