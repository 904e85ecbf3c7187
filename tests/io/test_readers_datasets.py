"""rnaret.io.dataset_readers: one format dispatch and one reader per format for every stage (leakage,
fine-tuning, evaluation, ViennaRNA), on the bundled data."""
from __future__ import annotations

import csv
import gzip
import shutil

import pytest

from rnaret.io.dataset_readers import dataset_format, iter_sequences, read_dataset
from rnaret.io.errors import InputError
from rnaret.io.mirna_table import PairRow
from rnaret.io.structure import StructureRecord
from rnaret.io.transcripts import Transcript

MIRNA = "mirna_target/mirtar_deepmirtar_miraw.tsv"
INDTEST = "mirna_target/mirtar_deepmirtar_indtest.tsv"


def test_every_bundled_split_has_the_format_its_task_reads(resources):
    cases = [
        (resources / "structure/bprna_test.csv", "structure", "structure_table", StructureRecord),
        (resources / "structure/bprna_test.dbn", "structure", "dbn", StructureRecord),
        (resources / "structure/bpseq/bprna_test", "structure", "structure_folder", StructureRecord),
        (resources / MIRNA, "interaction", "mirna_table", PairRow),
        (resources / INDTEST, "interaction", "mirna_table", PairRow),
        (resources / "mrna_lncrna/mouse_test.fa.gz", "coding", "transcript_fasta", Transcript),
    ]
    for path, task, kind, record_type in cases:
        assert dataset_format(path, task) == kind == dataset_format(path), path
        assert isinstance(next(iter(read_dataset(path, task))), record_type)


def test_table_rows_are_selected_by_split_column(resources):
    table = resources / MIRNA
    counts = {split: sum(1 for _ in iter_sequences(table, split, task="interaction"))
              for split in ("train", "valid", "test")}
    # SOURCE.md: train 22,173, valid 2,774, test 2,773 rows; two sequences (miRNA, target) a row
    assert counts == {"train": 2 * 22173, "valid": 2 * 2774, "test": 2 * 2773}
    with open(table, newline="") as handle:
        first_test = next(r for r in csv.DictReader(handle, delimiter="\t") if r["split"] == "test")
    (record, mirna), (site_record, site) = list(iter_sequences(table, "test"))[:2]
    # the miRNA 5'->3' (the mirna_seq column) and the site, as the leakage stage compares them
    assert (mirna, site) == (first_test["mirna_seq"], first_test["target_seq"])
    assert record.endswith(":mirna_seq") and site_record.endswith(":target_seq")


def test_the_leakage_reader_reads_the_mirna_table_the_interaction_task_reads(resources, tmp_path):
    """One reader per format: the rows leakage compares are the rows fine-tuning trains on."""
    from rnaret.tasks import get_task

    table = resources / INDTEST
    rows = list(read_dataset(table, "interaction"))
    sequences = list(iter_sequences(table))
    assert sequences == [s for row in rows for s in ((f"line {row.line}:mirna_seq", row.mirna),
                                                     (f"line {row.line}:target_seq", row.site))]
    examples = get_task("interaction").read_split(table)
    assert [e.info["line"] for e in examples] == [row.line for row in rows]
    # a bad row is refused by both the same way
    bad = tmp_path / "bad.tsv"
    text = table.read_text().splitlines(keepends=True)
    bad.write_text("".join(text[:5]) + text[5].replace("\t1\t", "\t2\t", 1) + "".join(text[6:]))
    with pytest.raises(InputError) as by_leakage:
        list(iter_sequences(bad, task="interaction"))
    with pytest.raises(InputError) as by_task:
        get_task("interaction").read_split(bad)
    assert str(by_leakage.value) == str(by_task.value)
    assert "line 6" in str(by_task.value) and "label must be 0 or 1" in str(by_task.value)


def test_every_structure_format_gives_the_same_sequences(resources, tmp_path):
    csv_path = resources / "structure/bprna_test.csv"
    with open(csv_path, newline="") as handle:
        by_id = {row["id"]: row["sequence"] for row in csv.DictReader(handle)}
    assert [s for _, s in iter_sequences(csv_path)] == list(by_id.values())
    assert dict(iter_sequences(resources / "structure/bprna_test.dbn")) == by_id
    bpseq = dict(iter_sequences(resources / "structure/bpseq/bprna_test"))
    assert len(bpseq) == 20 and all(by_id[k] == v for k, v in bpseq.items())
    # a CT file written by hand from one bpseq record
    name, seq = next(iter(bpseq.items()))
    ct = tmp_path / f"{name}.ct"
    ct.write_text(f"{len(seq)} {name}\n" + "".join(
        f"{i} {c} {i - 1} {i + 1} 0 {i}\n" for i, c in enumerate(seq, 1)))
    assert dict(iter_sequences(ct)) == {name: seq}


def test_gzip_is_read_from_the_content_for_every_format(resources, tmp_path):
    table = resources / INDTEST
    zipped = tmp_path / "indtest.tsv.gz"
    zipped.write_bytes(gzip.compress(table.read_bytes()))
    plain_named_gz = tmp_path / "plain.tsv.gz"          # a .gz name holding plain text
    shutil.copy(table, plain_named_gz)
    expected = list(iter_sequences(table))
    assert list(iter_sequences(zipped)) == expected == list(iter_sequences(plain_named_gz))
    mouse = tmp_path / "mouse.fa"                        # gzip content without a .gz name
    shutil.copy(resources / "mrna_lncrna/mouse_test.fa.gz", mouse)
    assert list(iter_sequences(mouse)) == list(iter_sequences(resources / "mrna_lncrna/mouse_test.fa.gz"))


def test_a_format_the_task_does_not_read_is_refused_naming_what_it_reads(resources):
    with pytest.raises(InputError, match="a coding dataset is a FASTA of transcripts.*this path is a "
                                         "structure table"):
        list(read_dataset(resources / "structure/bprna_test.csv", "coding"))
    with pytest.raises(InputError, match="an? structure dataset is .*this path is a FASTA"):
        list(read_dataset(resources / "mrna_lncrna/mouse_test.fa.gz", "structure"))
    with pytest.raises(InputError, match="an interaction dataset is a miRNA-target table.*this path is a "
                                         "dot-bracket file"):
        list(read_dataset(resources / "structure/bprna_test.dbn", "interaction"))
    # given to the interaction task, a structure table is read by the miRNA reader, which says why not
    with pytest.raises(InputError, match="neither a table with a header naming target_seq"):
        list(read_dataset(resources / "structure/bprna_test.csv", "interaction"))


def test_unknown_format_missing_path_and_selection_errors(tmp_path, resources):
    (tmp_path / "x.parquet").write_text("a")
    with pytest.raises(InputError, match="unknown dataset format"):
        list(iter_sequences(tmp_path / "x.parquet"))
    with pytest.raises(InputError, match="no such file or folder"):
        list(iter_sequences(tmp_path / "absent.csv"))
    table = tmp_path / "t.tsv"
    table.write_text("id\tlabel\na\t1\n")
    with pytest.raises(InputError, match="missing column"):
        list(iter_sequences(table))
    structures = tmp_path / "s.tsv"
    structures.write_text("id\tsequence\tstructure\na\tGGGAAACCC\t(((...)))\n")
    with pytest.raises(InputError, match="has no 'split' column"):
        list(iter_sequences(structures, "x"))
    with pytest.raises(InputError, match="no row has split 'dev'"):
        list(iter_sequences(resources / MIRNA, "dev"))
    with pytest.raises(InputError, match="can only be selected from a table"):
        list(iter_sequences(resources / "structure/bprna_test.dbn", "test"))
    with pytest.raises(InputError, match="no dataset reader for task 'folding'"):
        dataset_format(resources / "structure/bprna_test.dbn", "folding")
