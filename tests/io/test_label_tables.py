"""Label tables and FASTA + side tables of the generic tasks (rnaret.io.labels): the bundled MncR
table reads, and every bad table is refused naming the file, the line and the record."""
from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path

import pytest

from rnaret.io.dataset_readers import dataset_format, iter_sequences
from rnaret.io.errors import InputError
from rnaret.io.labels import number_label, position_labels, read_label_table, read_labels

TABLE = "ncrna/mncr_families.tsv"


@pytest.fixture(scope="module")
def rows(resources):
    """The bundled table's rows (dicts), in file order."""
    with open(resources / TABLE, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def write_table(path: Path, rows: list[dict], columns: list[str], delimiter: str = "\t") -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, delimiter=delimiter, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_the_bundled_table_reads_balanced_splits(resources, rows):
    for split, n in (("train", 600), ("valid", 150), ("test", 300)):
        records = read_label_table(resources / TABLE, split)
        assert len(records) == n
        counts = Counter(r.label for r in records)
        assert sorted(counts) == ["lncRNA", "miRNA", "rRNA", "snRNA", "snoRNA", "tRNA"]
        assert set(counts.values()) == {n // 6}
        assert all(len(r.sequence) <= 500 for r in records)
    first = read_label_table(resources / TABLE, "train")[0]
    assert (first.id, first.label, first.line) == (rows[0]["id"], rows[0]["label"], 2)
    # the leakage and homology stages read the same file through the same reader
    assert dataset_format(resources / TABLE, "sequence-classification") == "label_table"
    assert len(list(iter_sequences(resources / TABLE, "test", task="sequence-classification"))) == 300


def test_csv_and_gzip_read_the_same(tmp_path, resources, rows):
    plain = read_label_table(resources / TABLE, "valid")
    csv_path = write_table(tmp_path / "valid.csv", [r for r in rows if r["split"] == "valid"],
                           ["id", "sequence", "label"], delimiter=",")
    gz_path = tmp_path / "valid.tsv.gz"
    gz_path.write_bytes(gzip.compress((resources / TABLE).read_bytes()))
    for records in (read_label_table(csv_path), read_label_table(gz_path, "valid")):
        assert [(r.id, r.sequence, r.label) for r in records] == [(r.id, r.sequence, r.label) for r in plain]


def test_missing_column_names_file_line_and_columns(tmp_path, rows):
    path = write_table(tmp_path / "t.tsv", rows[:5], ["id", "sequence"])
    with pytest.raises(InputError, match=r"t\.tsv: line 1: missing column 'label'"):
        read_label_table(path)


def test_bad_rows_name_the_record_and_line(tmp_path, rows):
    bad = [dict(r) for r in rows[:4]]
    bad[2]["sequence"] = bad[2]["sequence"][:10] + "XZ" + bad[2]["sequence"][10:]
    path = write_table(tmp_path / "letters.tsv", bad, ["id", "sequence", "label"])
    with pytest.raises(InputError, match=rf"record '{bad[2]['id']}': line 4: .*not IUPAC nucleotides: 'XZ'"):
        read_label_table(path)
    bad = [dict(r) for r in rows[:4]]
    bad[1]["label"] = ""
    with pytest.raises(InputError, match=rf"record '{bad[1]['id']}': line 3: empty label"):
        read_label_table(write_table(tmp_path / "empty.tsv", bad, ["id", "sequence", "label"]))
    bad = [dict(r) for r in rows[:4]]
    bad[3]["id"] = bad[0]["id"]
    with pytest.raises(InputError, match=r"line 5: duplicate id \(first seen at line 2"):
        read_label_table(write_table(tmp_path / "dup.tsv", bad, ["id", "sequence", "label"]))
    with pytest.raises(InputError, match=r"no row has split 'tests'"):
        read_label_table(write_table(tmp_path / "s.tsv", rows[:4], ["id", "sequence", "label", "split"]), "tests")


def test_fasta_with_a_side_table(tmp_path, rows):
    chosen = rows[:6]
    fasta = tmp_path / "seqs.fa"
    fasta.write_text("".join(f">{r['id']} some description\n{r['sequence']}\n" for r in chosen))
    labels = write_table(tmp_path / "labels.tsv", chosen[::-1], ["id", "label"])
    records = read_labels(fasta, labels=labels)
    assert [(r.id, r.label) for r in records] == [(r["id"], r["label"]) for r in chosen]  # FASTA order
    # a label's errors point at the side table's row
    assert records[0].path == str(labels) and records[0].line == 7
    with pytest.raises(InputError, match="a FASTA holds no labels: give a side table"):
        read_labels(fasta)
    short = write_table(tmp_path / "short.tsv", chosen[:5], ["id", "label"])
    with pytest.raises(InputError, match=rf"seqs\.fa: record '{chosen[5]['id']}': line 11: no label for this record"):
        read_labels(fasta, labels=short)
    extra = write_table(tmp_path / "extra.tsv", chosen + [rows[10]], ["id", "label"])
    with pytest.raises(InputError, match=rf"extra\.tsv: record '{rows[10]['id']}': line 8: no record with this id"):
        read_labels(fasta, labels=extra)


def test_per_position_labels(tmp_path, rows):
    from rnaret.io.labels import LabelRecord

    record = LabelRecord("r", "ACGUA", "..((.", "t.tsv", 3)
    assert position_labels(record, numeric=False) == [".", ".", "(", "(", "."]
    record = LabelRecord("r", "ACGUA", '[0.5, null, 1, 2, "3"]', "t.tsv", 3)
    assert position_labels(record, numeric=True) == [0.5, None, 1.0, 2.0, 3.0]
    record = LabelRecord("r", "ACGUA", "0.5,NA,1,2,3", "t.tsv", 3)
    assert position_labels(record, numeric=True) == [0.5, None, 1.0, 2.0, 3.0]
    wrong = LabelRecord("r", "ACGUAC", "..((.", "t.tsv", 3)
    with pytest.raises(InputError, match=r"t\.tsv: record 'r': line 3: 5 per-position labels for a sequence of 6"):
        position_labels(wrong, numeric=False)
    word = LabelRecord("r", "ACG", "[1, \"high\", 2]", "t.tsv", 4)
    with pytest.raises(InputError, match=r"line 4: position 2: a regression label must be a finite number, got 'high'"):
        position_labels(word, numeric=True)


def test_non_numeric_regression_label(tmp_path, rows):
    from rnaret.io.labels import LabelRecord

    assert number_label(LabelRecord("r", "ACG", "-1.5e-1", "t.tsv", 2)) == -0.15
    for text in ("tRNA", "nan", "inf"):
        with pytest.raises(InputError, match=rf"t\.tsv: record 'r': line 9: a regression label must be a finite "
                                             rf"number, got '{text}'"):
            number_label(LabelRecord("r", "ACG", text, "t.tsv", 9))
