"""rnaret.io.fasta: the streaming FASTA reader on real data and on every bad input it refuses."""
from __future__ import annotations

import gzip
import warnings

import pytest

from rnaret.io.errors import InputError
from rnaret.io.fasta import DuplicateIdWarning, read_fasta, write_fasta


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_reads_the_bundled_rnacentral_sample(resources):
    records = list(read_fasta(resources / "rnacentral" / "rnacentral_sample.fa.gz"))
    assert len(records) == 16201  # SOURCE.md
    assert len({r.id for r in records}) == 16201
    lengths = sorted(len(r.sequence) for r in records)
    assert (lengths[0], lengths[-1]) == (15, 10449)
    assert sum(1 for r in records if r.n_non_acgtu) == 380
    assert records[0].id.startswith("URS") and records[0].line == 1


def test_plain_and_gzip_give_the_same_records(tmp_path, resources):
    plain = tmp_path / "mouse_test.fa"
    plain.write_bytes(gzip.decompress((resources / "mrna_lncrna" / "mouse_test.fa.gz").read_bytes()))
    a = list(read_fasta(plain))
    b = list(read_fasta(resources / "mrna_lncrna" / "mouse_test.fa.gz"))
    assert a == b and len(a) == 1000


def test_windows_line_endings_are_accepted(tmp_path):
    path = write(tmp_path / "crlf.fa", b">a first\r\nACGU\r\nacg\r\n>b\r\nNNRY\r\n")
    records = list(read_fasta(path))
    assert [(r.id, r.description, r.sequence, r.line) for r in records] == [
        ("a", "a first", "ACGUacg", 1), ("b", "b", "NNRY", 4)]


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file") as err:
        list(read_fasta(tmp_path / "absent.fa"))
    assert "absent.fa" in str(err.value)


def test_empty_file(tmp_path):
    path = write(tmp_path / "empty.fa", b"")
    with pytest.raises(InputError, match="empty") as err:
        list(read_fasta(path))
    assert err.value.path == str(path)


def test_no_records(tmp_path):
    path = write(tmp_path / "blank.fa", b"\n\n  \n")
    with pytest.raises(InputError, match="no FASTA records"):
        list(read_fasta(path))


def test_empty_gzip_has_no_records(tmp_path):
    path = write(tmp_path / "empty.fa.gz", gzip.compress(b""))
    with pytest.raises(InputError, match="no FASTA records"):
        list(read_fasta(path))


def test_sequence_without_header(tmp_path):
    path = write(tmp_path / "noheader.fa", b"ACGT\nACGT\n")
    with pytest.raises(InputError, match="before any '>' header") as err:
        list(read_fasta(path))
    assert err.value.line == 1


def test_text_before_the_first_header(tmp_path):
    path = write(tmp_path / "preamble.fa", b"junk line\n>a\nACGT\n")
    with pytest.raises(InputError, match="text before the first") as err:
        list(read_fasta(path))
    assert err.value.line == 1


@pytest.mark.parametrize("data, record, line", [
    (b">a\nACGT\n>b\n>c\nAC\n", "b", 3),   # in the middle
    (b">a\nACGT\n>last\n", "last", 3),      # at the end
])
def test_header_with_no_sequence(tmp_path, data, record, line):
    path = write(tmp_path / "noseq.fa", data)
    with pytest.raises(InputError, match="no sequence") as err:
        list(read_fasta(path))
    assert (err.value.record, err.value.line) == (record, line)


def test_header_with_no_id(tmp_path):
    path = write(tmp_path / "noid.fa", b">a\nACGT\n>\nACGT\n")
    with pytest.raises(InputError, match="no id") as err:
        list(read_fasta(path))
    assert err.value.line == 3


@pytest.mark.parametrize("letter", ["X", "E", "*", "1", "é"])
def test_non_iupac_letters_are_rejected(tmp_path, letter):
    path = write(tmp_path / "bad.fa", f">ok\nACGU\n>bad\nACGU\nAC{letter}GU\n".encode())
    with pytest.raises(InputError, match="not an IUPAC nucleotide") as err:
        list(read_fasta(path))
    # the line and column where the letter stands, and its position in the record
    assert (err.value.record, err.value.line, err.value.column) == ("bad", 5, 3)
    assert "'%s' at position 7 is not an IUPAC" % letter in str(err.value)


def test_iupac_ambiguity_codes_and_gaps_are_kept(tmp_path):
    path = write(tmp_path / "iupac.fa", b">x\nACGUTNRYSWKMBDHV-.acgutnryswkmbdhv\n")
    (record,) = read_fasta(path)
    assert record.sequence == "ACGUTNRYSWKMBDHV-.acgutnryswkmbdhv"
    assert record.n_non_acgtu == 24


def test_truncated_gzip(tmp_path, resources):
    data = (resources / "rnacentral" / "rnacentral_sample.fa.gz").read_bytes()
    path = write(tmp_path / "cut.fa.gz", data[: len(data) // 3])
    with pytest.raises(InputError, match="truncated or corrupt gzip") as err:
        list(read_fasta(path))
    assert err.value.record and err.value.record.startswith("URS")  # the last record read
    assert str(path) in str(err.value)


def test_duplicate_ids_are_reported_with_both_lines(tmp_path):
    path = write(tmp_path / "dup.fa", b">a\nACGT\n>b\nGG\n>a x\nCC\n")
    with pytest.raises(InputError, match="duplicate id") as err:
        list(read_fasta(path))
    assert (err.value.record, err.value.line) == ("a", 5)
    assert "first seen at line 1" in str(err.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = list(read_fasta(path, duplicate_ids="warn"))
    assert len(records) == 3
    assert [w.category for w in caught] == [DuplicateIdWarning]
    assert "record 'a'" in str(caught[0].message) and "line 5" in str(caught[0].message)
    assert len(list(read_fasta(path, duplicate_ids="ignore"))) == 3


@pytest.mark.parametrize("data, what, line, column", [
    (bytes(range(256)) * 8, "binary data", 1, 1),                 # arbitrary binary
    (b">a\nAC\x00\x00GT\n", "binary data", 2, 3),                 # NUL bytes inside
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "byte 0x89 is not UTF-8", 1, 1),
])
def test_binary_data(tmp_path, data, what, line, column):
    path = write(tmp_path / "binary.fa", data)
    with pytest.raises(InputError, match=what) as err:
        list(read_fasta(path))
    assert (err.value.line, err.value.column) == (line, column)


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "out.fa"
    with open(path, "w") as handle:
        assert write_fasta([("a desc", "ACGU" * 40), ("b", "N")], handle, width=50) == 2
    assert [(r.id, r.description, r.sequence) for r in read_fasta(path)] == [
        ("a", "a desc", "ACGU" * 40), ("b", "b", "N")]


# --------------------------------------------------------------------------- where a letter stands

def test_a_bad_letter_is_named_at_its_line_and_column_with_its_position_in_the_record(tmp_path):
    path = write(tmp_path / "a.fa", b">a\nACGU\nACGU\nACGX\n")
    with pytest.raises(InputError) as err:
        list(read_fasta(path))
    assert str(err.value) == (f"{path}: record 'a': line 4, column 4: 'X' at position 12 is not an IUPAC "
                              f"nucleotide letter")
    assert (err.value.line, err.value.column) == (4, 4)


@pytest.mark.parametrize("data, line, column, position", [
    (b">a\r\nACGU\r\nAC GX\r\n", 3, 5, 8),          # Windows endings; a space inside the line is dropped
    (b">a\rACGU\rACGX\r", 3, 4, 8),                   # classic Mac: lone CR ends a line
    (b">a desc\n\tACGU\nAC\tGU  \n  ACGUZ\n", 4, 7, 13),  # tabs and leading blanks do not count
    (b">x\nAAAA\n>y\n\nNNNN\n*\n", 6, 1, 5),          # a blank line inside the record
])
def test_the_column_counts_characters_as_written(tmp_path, data, line, column, position):
    path = write(tmp_path / "c.fa", data)
    with pytest.raises(InputError) as err:
        list(read_fasta(path))
    assert (err.value.line, err.value.column) == (line, column)
    assert f"at position {position} is not" in str(err.value)


def test_the_bad_letter_of_a_gzipped_file_is_found_at_its_line(tmp_path, resources):
    source = gzip.decompress((resources / "rnacentral" / "rnacentral_sample.fa.gz").read_bytes()).decode()
    lines = source.splitlines(keepends=True)
    target = next(k for k in range(len(lines) // 2, len(lines)) if not lines[k].startswith(">") and len(lines[k]) > 20)
    lines[target] = lines[target][:9] + "J" + lines[target][10:]
    path = write(tmp_path / "sample.fa.gz", gzip.compress("".join(lines).encode()))
    with pytest.raises(InputError) as err:
        list(read_fasta(path, duplicate_ids="ignore"))
    assert (err.value.line, err.value.column) == (target + 1, 10) and "'J'" in str(err.value)
    header = next(lines[k] for k in range(target, -1, -1) if lines[k].startswith(">"))
    assert err.value.record == header[1:].split()[0]


# --------------------------------------------------------------------------- files that are not what they say

def test_a_gz_name_holding_plain_text_is_read_as_plain_text(tmp_path, resources):
    plain = gzip.decompress((resources / "mrna_lncrna" / "mouse_test.fa.gz").read_bytes())
    named_gz = write(tmp_path / "mouse_test.fa.gz", plain)
    assert list(read_fasta(named_gz)) == list(read_fasta(resources / "mrna_lncrna" / "mouse_test.fa.gz"))


def test_cr_only_line_endings_read_like_unix_ones(tmp_path, resources):
    text = gzip.decompress((resources / "mrna_lncrna" / "mouse_test.fa.gz").read_bytes())
    mac = write(tmp_path / "mac.fa", text.replace(b"\n", b"\r"))
    assert list(read_fasta(mac)) == list(read_fasta(resources / "mrna_lncrna" / "mouse_test.fa.gz"))
    zipped = write(tmp_path / "mac.fa.gz", gzip.compress(text.replace(b"\n", b"\r")))
    assert [r.line for r in read_fasta(zipped)][:3] == [r.line for r in read_fasta(mac)][:3]


@pytest.mark.parametrize("data, line, column, byte", [
    (b">a caf\xe9 latin-1 header\nACGU\n", 1, 7, "0xE9"),
    (b">a\nACGU\n>b \xff\xfe\nACGU\n", 3, 4, "0xFF"),
    (b">a\nAC\x80GU\n", 2, 3, "0x80"),
])
def test_bytes_that_are_not_utf8_are_named_where_they_stand(tmp_path, data, line, column, byte):
    path = write(tmp_path / "latin1.fa", data)
    with pytest.raises(InputError, match=f"byte {byte} is not UTF-8 text") as err:
        list(read_fasta(path))
    assert (err.value.line, err.value.column) == (line, column)


def test_a_bad_byte_deep_in_a_large_file_is_found_at_its_own_line(tmp_path):
    # the text decoder reads ahead in blocks: the line must be the byte's, not the block's
    body = b"".join(b">r%d\n%s\n" % (k, b"ACGU" * 15) for k in range(3000))
    path = write(tmp_path / "big.fa", body + b">bad \xe9\nACGU\n")
    with pytest.raises(InputError) as err:
        list(read_fasta(path))
    assert err.value.line == 6001 and err.value.column == 6


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = write(tmp_path / "bom.fa", b"\xef\xbb\xbf>a\nACGU\n")
    assert [(r.id, r.sequence) for r in read_fasta(path)] == [("a", "ACGU")]


def test_a_folder_given_as_a_fasta(tmp_path):
    folder = tmp_path / "reads.fa"
    folder.mkdir()
    with pytest.raises(InputError, match="this is a folder, not a file") as err:
        list(read_fasta(folder))
    assert err.value.path == str(folder)


def test_paths_that_cannot_be_read(tmp_path):
    (tmp_path / "link.fa").symlink_to(tmp_path / "gone.fa")
    with pytest.raises(InputError, match="no such file"):
        list(read_fasta(tmp_path / "link.fa"))
    (tmp_path / "file").write_text(">a\nACGU\n")
    with pytest.raises(InputError, match="cannot be read: Not a directory"):
        list(read_fasta(tmp_path / "file" / "x.fa"))


def test_a_file_without_read_permission(tmp_path):
    import os

    path = write(tmp_path / "secret.fa", b">a\nACGU\n")
    path.chmod(0)
    # root reads any file whatever its mode: take an ordinary user's identity for the read
    drop = os.geteuid() == 0
    if drop:
        os.seteuid(65534)
    try:
        with pytest.raises(InputError, match="cannot be read: permission denied") as err:
            list(read_fasta(path))
    finally:
        if drop:
            os.seteuid(0)
        path.chmod(0o644)
    assert err.value.path == str(path)


@pytest.mark.parametrize("cut", [10, 200, -9])
def test_a_gzip_cut_anywhere_is_an_input_error(tmp_path, resources, cut):
    data = (resources / "mrna_lncrna" / "mouse_test.fa.gz").read_bytes()
    path = write(tmp_path / "cut.fa.gz", data[:cut])
    with pytest.raises(InputError, match="truncated or corrupt gzip"):
        list(read_fasta(path))


def test_alignment_gaps_are_refused_where_they_stand_when_asked(tmp_path):
    path = write(tmp_path / "gapped.fa", b">a\nACGU\nAC-GU\n")
    assert next(read_fasta(path)).sequence == "ACGUAC-GU"
    with pytest.raises(InputError, match="'-' at position 7 is an alignment gap") as err:
        list(read_fasta(path, allow_gaps=False))
    assert (err.value.record, err.value.line, err.value.column) == ("a", 3, 3)
