"""Property-based fuzzing of every text reader (Hypothesis; profile and mutations in
tests/fuzzing.py): any bytes, or a valid file from the bundled data with a few edits, are either
read correctly (the records keep every invariant the readers promise) or refused with
``InputError`` naming the file (and a line inside it when there is one) — never another
exception, and a stage writing from a reader that fails leaves no output behind."""
from __future__ import annotations

import gzip
import re
import shutil

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from fuzzing import FUZZ, check_error, inputs, mutations
from rnaret.data.corpus import normalize_corpus
from rnaret.io.dataset_readers import read_dataset
from rnaret.io.errors import InputError
from rnaret.io.fasta import read_fasta
from rnaret.io.mapping import read_mapping
from rnaret.io.mirna_table import read_pair_table
from rnaret.io.structure import crossing_pairs, format_ct, read_structures, write_dbn

from conftest import RESOURCES, ROOT

PUBLISHED = ROOT / "tests" / "fixtures" / "published_layout"
_IUPAC = re.compile(r"[ACGTUNRYSWKMBDHVacgtunryswkmbdhv.\-]+")


def _short_fasta() -> bytes:
    records = [r for r in read_fasta(RESOURCES / "rnacentral/rnacentral_sample.fa.gz")
               if 20 <= len(r.sequence) <= 60][:3]
    return "".join(f">{r.description}\n" + "".join(r.sequence[i:i + 25] + "\n" for i in range(0, len(r.sequence), 25))
                   for r in records).encode()


def _short_structures():
    records = list(read_structures(RESOURCES / "structure/bprna_test.csv"))
    nested = [r for r in records if len(r.sequence) <= 45][:2]
    knotted = min((r for r in records if crossing_pairs(r.pairs)), key=lambda r: len(r.sequence))
    return nested + [knotted]


STRUCTURES = _short_structures()
FASTA = _short_fasta()
DBN = "".join(f">{r.id}\n{r.sequence}\n{r.dot_bracket}\n" for r in STRUCTURES).encode()
BPSEQ = (PUBLISHED / "ssp_sample" / "5s_Acetobacter-aceti-2.bpseq").read_bytes()
CT = (format_ct(STRUCTURES[0]).replace(f"\t{STRUCTURES[0].id}\n", f"  ENERGY = -7.5  {STRUCTURES[0].id}\n", 1)
      + format_ct(STRUCTURES[1])).encode()
_CSV_LINES = (RESOURCES / "structure/bprna_test.csv").read_text().splitlines(keepends=True)
TABLE = ("".join(_CSV_LINES[:1]) + "".join(line for line in _CSV_LINES
                                           if line.split(",", 1)[0] in {r.id for r in STRUCTURES})).encode()
MIRNA_TSV = "".join((RESOURCES / "mirna_target/mirtar_deepmirtar_indtest.tsv").read_text().splitlines(keepends=True)[:5]).encode()
MIRNA_TXT = "".join((PUBLISHED / "rri_sample.txt").read_text().splitlines(keepends=True)[:5]).encode()
TRANSCRIPTS = (PUBLISHED / "lnc_sample.fa").read_bytes()
YAML = b"""datasets:
  structure:
    bprna: {train: resources/structure/bprna_train.csv, test: resources/structure/bprna_test.csv}
  interaction:
    mirtar:
      train: {path: resources/mirna_target/mirtar_deepmirtar_miraw.tsv, split: train}
      finetuned_on: mirtar
finetune:
  preset: laptop
  interaction: {settings: {epochs: 2, lr: 1.0e-3, freeze_encoder: false}}
"""
JSON = b'{"epochs": 2, "lr": 0.001, "preset": "laptop", "select_on": null, "seed": [0, 1]}\n'


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def leftovers(folder) -> list[str]:
    """Temporary files an atomic writer would leave behind ('.name.*')."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def check_structures(records) -> None:
    ids = [r.id for r in records]
    assert records and all(ids) and len(set(ids)) == len(ids)
    for r in records:
        assert r.sequence and r.sequence.isascii() and r.sequence.isalpha()
        assert r.pairs == sorted(r.pairs)
        assert all(1 <= i < j <= len(r.sequence) for i, j in r.pairs)
        bases = [b for pair in r.pairs for b in pair]
        assert len(bases) == len(set(bases))  # no base in two pairs


def read_or_refuse(read, path, data, known_text: bool = True):
    """``read(path)`` of ``data`` written to ``path`` -> the result, or None after checking the
    InputError (``known_text``: the line of an error must lie inside ``data``)."""
    path.write_bytes(data)
    try:
        result = read(path)
    except InputError as exc:
        check_error(exc, path, data if known_text else None)
        event(f"refused: {re.sub(r'[0-9]+', 'N', exc.what)[:50]}")  # --hypothesis-show-statistics
        return None
    event("read")
    return result


@FUZZ
@given(data=inputs(FASTA))
def test_fuzz_fasta(work, data):
    path, out = work / "x.fa", work / "normalized.fa"
    out.unlink(missing_ok=True)
    records = read_or_refuse(lambda p: list(read_fasta(p)), path, data)
    if records is not None:
        assert records and len({r.id for r in records}) == len(records)
        for r in records:
            assert r.id and not any(c.isspace() for c in r.id) and _IUPAC.fullmatch(r.sequence)
            assert 1 <= r.line <= data.count(b"\n") + data.count(b"\r") + 1
    # the normalize stage streams the same reader into an atomic output: all or nothing
    try:
        normalize_corpus(path, out, show_progress=False)
    except InputError as exc:
        check_error(exc, path, data)
        assert not out.exists() and not leftovers(work)
        assert records is None or len({r.id for r in records}) < len(records)
        return
    assert records is None or [r.sequence.upper().replace("U", "T") for r in read_fasta(out)] == [
        r.sequence.upper().replace("U", "T") for r in records]


@FUZZ
@given(data=st.one_of(inputs(gzip.compress(FASTA)), mutations(FASTA).map(gzip.compress)))
def test_fuzz_gzipped_fasta(work, data):
    records = read_or_refuse(lambda p: list(read_fasta(p)), work / "x.fa.gz", data, known_text=False)
    if records is not None:
        assert records and all(r.id and _IUPAC.fullmatch(r.sequence) for r in records)


@FUZZ
@given(data=inputs(DBN))
def test_fuzz_dbn(work, data):
    out = work / "copy.dbn"
    out.unlink(missing_ok=True)
    records = read_or_refuse(lambda p: list(read_structures(p)), work / "x.dbn", data)
    if records is not None:
        check_structures(records)
    # writing straight from the streaming reader: a failure part-way leaves nothing
    try:
        write_dbn(read_structures(work / "x.dbn"), out)
    except InputError:
        assert records is None and not out.exists() and not leftovers(work)
        return
    assert [(r.sequence, r.pairs) for r in read_structures(out)] == [(r.sequence, r.pairs) for r in records]


@FUZZ
@given(data=inputs(BPSEQ))
def test_fuzz_bpseq(work, data):
    records = read_or_refuse(lambda p: list(read_structures(p)), work / "x.bpseq", data)
    if records is not None:
        check_structures(records)
        assert records[0].id == "x"


@FUZZ
@given(data=inputs(CT))
def test_fuzz_ct(work, data):
    records = read_or_refuse(lambda p: list(read_structures(p)), work / "x.ct", data)
    if records is not None:
        check_structures(records)


@FUZZ
@given(data=inputs(TABLE))
def test_fuzz_structure_table(work, data):
    records = read_or_refuse(lambda p: list(read_dataset(p, "structure")), work / "x.csv", data)
    if records is not None:
        check_structures(records)


@FUZZ
@given(data=inputs(BPSEQ), name=st.sampled_from(["a.bpseq", "sub/b.bpseq", "sub/deeper/c.bpseq.gz", ".hidden.bpseq"]))
def test_fuzz_structure_folder(work, data, name):
    folder = work / "tree"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "family").mkdir(parents=True)
    (folder / "family" / "ok.bpseq").write_bytes(BPSEQ)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    try:
        records = list(read_dataset(folder, "structure"))
    except InputError as exc:
        check_error(exc, folder)
        assert exc.path == str(folder / name)
        return
    check_structures(records)
    assert [r.id for r in records] == sorted([r.id for r in records], key=lambda i: i.split("/"))


@FUZZ
@given(data=st.one_of(inputs(MIRNA_TSV), inputs(MIRNA_TXT)), name=st.sampled_from(["x.tsv", "x.txt"]))
def test_fuzz_mirna_tables(work, data, name):
    rows = read_or_refuse(lambda p: list(read_dataset(p, "interaction")), work / name, data)
    if rows is not None:
        assert rows == read_pair_table(work / name)
        for row in rows:
            assert row.label in (0, 1) and row.mirna and row.site
            assert set(row.mirna + row.site) <= set("ACGTUNacgtun")


@FUZZ
@given(data=inputs(TRANSCRIPTS, ))
def test_fuzz_coding_fasta(work, data):
    transcripts = read_or_refuse(lambda p: list(read_dataset(p, "coding")), work / "x.fa", data)
    if transcripts is not None:
        for t in transcripts:
            assert t.cds is None or 1 <= t.cds[0] <= t.cds[1] <= len(t.sequence)
            assert t.label == (t.cds is not None)


@FUZZ
@given(data=st.one_of(inputs(YAML), inputs(JSON)))
def test_fuzz_mapping_files(work, data):
    mapping = read_or_refuse(read_mapping, work / "settings.yaml", data)
    assert mapping is None or isinstance(mapping, dict)
