"""The task tables' readers (miRNA-target pairs, CDS-labelled transcripts) on the bad inputs each
refuses, every message naming the file and the line."""
from __future__ import annotations

import gzip

import pytest

from rnaret.io.dataset_readers import read_dataset
from rnaret.io.errors import InputError
from rnaret.io.mirna_table import read_pair_table
from rnaret.io.transcripts import read_transcripts

from conftest import ROOT

TXT = ROOT / "tests/fixtures/published_layout/data_DeepMirTar_IndTest_noRepeats_3folds.head100.txt"
HEADER = "mirna_id\tmirna_seq_3to5\ttarget_seq\tlabel\tsplit\n"
ROW = "m1\tCCAUUAGGGACCGUUACACUA\tUCUGGUCCCUUGCAGCUAG\t1\ttest\n"


def write(path, text: str | bytes):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize("text, words", [
    (HEADER, ["no rows (only the header line)"]),
    (HEADER + "\n\n", ["no rows (only the header line)"]),
    ("\n\n  \n", ["no rows (the file holds only blank lines)"]),
    (HEADER + ROW.replace("\ttest\n", "\n"), ["line 2", "expected 5 columns as in the header, got 4"]),
    (HEADER + ROW.replace("\ttest\n", "\ttest\textra\n"), ["line 2", "expected 5 columns as in the header, got 6"]),
    (HEADER + ROW + ROW.replace("\t1\t", "\tyes\t"), ["line 3", "record 'm1'", "label must be 0 or 1, got 'yes'"]),
    (HEADER + ROW.replace("UCUGG", "UCUXG"), ["line 2", "target_seq holds letters that are not nucleotides: 'X'"]),
    (HEADER + ROW.replace("UCUGGUCCCUUGCAGCUAG", ""), ["line 2", "empty target_seq"]),
    ("mirna_id\tmirna_seq\tlabel\nm\tACGU\t1\n", ["line 1", "missing column 'target_seq'"]),
    ("a,b,c\n1,2,3\n", ["line 1", "neither a table with a header naming target_seq"]),
    ("m1\tCCAUU\tNM_1\tACGU\t1\nm2\tCCAUU\tNM_1\tACGU\n", ["line 2", "expected 5 tab-separated columns, got 4"]),
    ("m1\tCCAUU\tNM_1\tACGU\t1\nm2\tCCAUU\tNM_1\tACGU\t3\n", ["line 2", "record 'm2'", "label must be 0 or 1"]),
    (b"m1\tCCA\xffUU\tNM_1\tACGU\t1\n", ["line 1, column 7", "byte 0xFF is not UTF-8"]),
    (b"m1\tCCAUU\tNM_1\tAC\x00GU\t1\n", ["line 1, column 17", "NUL"]),
])
def test_bad_pair_tables_name_file_line_and_problem(tmp_path, text, words):
    path = write(tmp_path / "pairs.tsv", text)
    with pytest.raises(InputError) as err:
        read_pair_table(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message, (word, message)


def test_a_split_the_pair_table_lacks(tmp_path):
    path = write(tmp_path / "pairs.tsv", HEADER + ROW)
    with pytest.raises(InputError, match=r"no row has split 'train' \(the split column holds \['test'\]\)"):
        read_pair_table(path, "train")
    with pytest.raises(InputError, match="cannot select split 'test': the table has no 'split' column"):
        read_pair_table(TXT, "test")


def test_pair_table_line_endings_compression_and_commas(tmp_path):
    expected = read_pair_table(TXT)
    text = TXT.read_bytes()
    for name, data in (("mac.txt", text.replace(b"\n", b"\r")), ("dos.txt", text.replace(b"\n", b"\r\n")),
                       ("plain.txt.gz", text), ("real.txt.gz", gzip.compress(text))):
        assert read_pair_table(write(tmp_path / name, data)) == expected, name
    # a comma-separated copy with a header reads the same pairs
    rows = [line.split("\t") for line in text.decode().splitlines()]
    csv_text = "mirna_id,mirna_seq_3to5,target_id,target_seq,label\n" + "".join(",".join(r) + "\n" for r in rows)
    from_csv = read_pair_table(write(tmp_path / "pairs.csv", csv_text))
    assert [(r.mirna, r.site, r.label) for r in from_csv] == [(r.mirna, r.site, r.label) for r in expected]


@pytest.mark.parametrize("header, sequence, words", [
    (">t1|CDS:5-3| pc", "ACGUACGUAC", ["record 't1|CDS:5-3|'", "CDS 5-3 is not inside the sequence"]),
    (">t1|CDS:1-99| pc", "ACGUACGUAC", ["CDS 1-99 is not inside the sequence (length 10)"]),
    (">t1|CDS:a-b|", "ACGUACGUAC", ["malformed CDS field 'CDS:a-b'"]),
    (">t1|CDS:1-4|CDS:5-8|", "ACGUACGUAC", ["more than one CDS field"]),
    (">t1|UTR5:1-4| pc", "ACGUACGUAC", ["tagged 'pc' but the header has no CDS:a-b field"]),
    (">t1|CDS:1-4| lnc", "ACGUACGUAC", ["tagged 'lnc' but the header has a CDS field"]),
])
def test_bad_transcript_headers_name_the_record_and_line(tmp_path, header, sequence, words):
    path = write(tmp_path / "t.fa", f">ok\nACGU\n{header}\n{sequence}\n")
    with pytest.raises(InputError) as err:
        list(read_dataset(path, "coding"))
    assert err.value.line == 3 and str(path) in str(err.value)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_a_transcript_fasta_cannot_select_a_split(tmp_path, resources):
    with pytest.raises(InputError, match="can only be selected from a table"):
        list(read_dataset(resources / "mrna_lncrna/mouse_test.fa.gz", "coding", "test"))
    assert len(list(read_transcripts(resources / "mrna_lncrna/mouse_test.fa.gz"))) == 1000
