"""`rnaret normalize`: validation + U->T before seqkit, counts, and no output on bad input."""
from __future__ import annotations

import argparse
import gzip
import json

import pytest

from rnaret.data.corpus import normalize_corpus
from rnaret.io.errors import InputError
from rnaret.io.fasta import read_fasta


def run_command(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args([str(a) for a in argv]))


def test_normalize_the_sample_writes_t_and_keeps_headers(tmp_path, resources):
    source = resources / "rnacentral" / "rnacentral_sample.fa.gz"
    out, counts_path = tmp_path / "n.fa.gz", tmp_path / "n.json"
    counts = normalize_corpus(source, out, counts_path, show_progress=False)
    before = list(read_fasta(source))
    after = list(read_fasta(out))
    assert len(after) == len(before) == counts["records_out"] == 16201
    assert [r.description for r in after] == [r.description for r in before]
    assert all("U" not in r.sequence and "u" not in r.sequence for r in after)
    assert [a.sequence for a in after] == [b.sequence.replace("U", "T").replace("u", "t") for b in before]
    assert counts["records_with_U"] == 56 and counts["records_with_non_ACGTU"] == 380  # SOURCE.md
    assert counts["non_ACGTU_letters"]["N"] == 5727 and counts["non_ACGTU_letters"]["Y"] == 206
    assert json.loads(counts_path.read_text()) == counts
    assert counts["duplicate_ids"] == 0


def test_duplicate_ids_are_counted_and_named(tmp_path):
    source = tmp_path / "dup.fa"
    source.write_text(">a\nACGU\n>b\nGG\n>a\nCC\n>c\nAA\n>b second\nTT\n")
    counts = normalize_corpus(source, tmp_path / "out.fa", show_progress=False)
    assert counts["duplicate_ids"] == 2
    assert counts["duplicate_id_examples"] == ["a", "b"]
    assert len(list(read_fasta(tmp_path / "out.fa", duplicate_ids="ignore"))) == 5


@pytest.mark.parametrize("content, what", [
    (b"", "empty"),
    (b">a\nACGT\n>b\nACZT\n", "not an IUPAC"),
    (b">a\nACGT\n>b\n", "no sequence"),
    (b"\x00\x01\x02binary", "binary"),
])
def test_bad_input_leaves_no_output(tmp_path, content, what):
    from rnaret.commands import normalize

    source = tmp_path / "in.fa"
    source.write_bytes(content)
    with pytest.raises(InputError, match=what) as err:
        run_command(normalize, [source, "--output", tmp_path / "out.fa.gz", "--counts", tmp_path / "c.json"])
    assert str(source) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fa"]


def test_truncated_gzip_leaves_no_output(tmp_path, resources):
    data = (resources / "rnacentral" / "rnacentral_sample.fa.gz").read_bytes()
    source = tmp_path / "cut.fa.gz"
    source.write_bytes(data[:-5000])
    with pytest.raises(InputError, match="truncated"):
        normalize_corpus(source, tmp_path / "out.fa.gz", tmp_path / "c.json", show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.fa.gz"]


def test_windows_line_endings_are_normalised(tmp_path):
    source = tmp_path / "crlf.fa"
    source.write_bytes(b">x one\r\nACGU\r\nUU\r\n")
    normalize_corpus(source, tmp_path / "o.fa.gz", show_progress=False)
    assert gzip.decompress((tmp_path / "o.fa.gz").read_bytes()) == b">x one\nACGTTT\n"
