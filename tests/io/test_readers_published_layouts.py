"""The published repository's data layouts, read by the same readers as the bundled resources:
RNAStrAlign-style nested ``.bpseq`` folders and ArchiveII-style ``.ct`` folders, GENCODE
``lncRNA_{H,M}/*.fa`` with ``CDS:a-b`` headers, and the headerless 5-column miRNA ``.txt``
(tests/fixtures/published_layout/SOURCE.md)."""
from __future__ import annotations

import csv
import gzip
import random
import warnings

import pytest

from rnaret.cli import main
from rnaret.settings.dataset_sources import SplitSource
from rnaret.data.leakage import remove_leakage
from rnaret.io.dataset_readers import dataset_format, iter_sequences, read_dataset
from rnaret.io.errors import InputError
from rnaret.io.mirna_table import read_pair_table
from rnaret.io.structure import format_bpseq, format_ct, read_structure_folder, read_structures
from rnaret.io.transcripts import read_transcripts
from rnaret.tasks import get_task

from conftest import ROOT

PUBLISHED = ROOT / "tests" / "fixtures" / "published_layout"
MIRAW_HEAD = PUBLISHED / "data_DeepMirTar_miRAW_noRepeats_3folds.head300.txt"
INDTEST_HEAD = PUBLISHED / "data_DeepMirTar_IndTest_noRepeats_3folds.head100.txt"


def parse_bpseq_by_hand(path):
    """(sequence, pairs) of a plain bpseq file, read independently of rnaret."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    sequence = "".join(r[1] for r in rows)
    pairs = sorted((int(r[0]), int(r[2])) for r in rows if int(r[2]) > int(r[0]))
    return sequence, pairs


@pytest.fixture(scope="module")
def bprna(resources):
    return list(read_structures(resources / "structure/bprna_test.csv"))[:8]


def make_rnastralign(root, bprna, order_seed: int):
    """An RNAStrAlign-like tree nested by family (and deeper), files created in a shuffled order,
    plus the hidden companions macOS puts into archives. -> {relative id: (sequence, pairs)}."""
    files = {}
    for source in sorted(PUBLISHED.glob("ssp_sample/*.bpseq")):
        files[f"5S_rRNA_database/Bacteria/{source.stem}"] = source.read_text()
    for rec in bprna[:5]:
        files[f"tRNA_database/{rec.id}"] = format_bpseq(rec)
    for rec in bprna[5:8]:
        files[f"SRP_database/Protozoa/deep/{rec.id}"] = format_bpseq(rec)
    names = list(files)
    random.Random(order_seed).shuffle(names)
    for name in names:
        path = root / f"{name}.bpseq"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[name])
    (root / "5S_rRNA_database" / "._5s_Acheta-domesticus-1.bpseq").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(40))
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.bpseq").write_text("1 G 0\n")
    return files


def test_rnastralign_folders_are_walked_recursively_in_sorted_relative_path_order(tmp_path, bprna):
    first, second = tmp_path / "a" / "RNAStrAlign", tmp_path / "b" / "RNAStrAlign"
    files = make_rnastralign(first, bprna, order_seed=1)
    make_rnastralign(second, bprna, order_seed=2)
    records = list(read_dataset(first, "structure"))
    # sorted relative paths, part by part: the same order whatever order the files were made in
    assert [r.id for r in records] == sorted(files, key=lambda name: name.split("/"))
    assert [(r.id, r.sequence, r.pairs) for r in records] == [
        (r.id, r.sequence, r.pairs) for r in read_dataset(second, "structure")]
    for source in PUBLISHED.glob("ssp_sample/*.bpseq"):
        record = next(r for r in records if r.id == f"5S_rRNA_database/Bacteria/{source.stem}")
        assert (record.sequence, record.pairs) == parse_bpseq_by_hand(source)
    by_id = {r.id: r for r in bprna}
    for record in records:
        name = record.id.rsplit("/", 1)[1]
        if name in by_id:
            assert (record.sequence, record.pairs) == (by_id[name].sequence, by_id[name].pairs)


def test_every_stage_reads_the_nested_folder_the_same_way(tmp_path, bprna):
    folder = tmp_path / "RNAStrAlign"
    files = make_rnastralign(folder, bprna, order_seed=3)
    ids = sorted(files, key=lambda name: name.split("/"))
    examples = get_task("structure", {"preset": "laptop"}).read_split(folder)          # fine-tuning
    assert [e.id for e in examples] == ids
    assert [record for record, _ in iter_sequences(folder, task="structure")] == ids   # leakage
    out = tmp_path / "vienna"                                                         # ViennaRNA
    assert main(["vienna", "--dataset", str(folder), "--output-dir", str(out), "--method", "mfe",
                 "--quiet"]) == 0
    with open(out / "per_sequence.tsv", newline="") as handle:
        assert [row["id"] for row in csv.DictReader(handle, delimiter="\t")] == ids


def test_archiveii_style_ct_folders_and_their_headers(tmp_path, bprna):
    folder = tmp_path / "archiveII"
    for k, rec in enumerate(bprna[:4]):
        family = ("5s", "tRNA")[k % 2]
        text = format_ct(rec)
        if k == 0:  # a header with an energy and a name that differs from the file's
            text = text.replace(f"\t{rec.id}\n", f"  ENERGY = -31.2  some title\n", 1)
        path = folder / family / f"{rec.id}.ct"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    records = list(read_dataset(folder, "structure"))
    expected = sorted(((("5s", "tRNA")[k % 2] + "/" + rec.id), rec) for k, rec in enumerate(bprna[:4]))
    assert [(r.id, r.sequence, r.pairs) for r in records] == [
        (name, rec.sequence, rec.pairs) for name, rec in expected]


def test_a_tree_with_bpseq_and_ct_files_reads_the_bpseq_files_as_published(tmp_path, bprna):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "one.bpseq").write_text(format_bpseq(bprna[0]))
    (folder / "two.ct").write_text(format_ct(bprna[1]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = list(read_structure_folder(folder))
    assert [r.id for r in records] == ["one"]
    assert any("1 .ct file(s) left aside" in str(w.message) for w in caught)


def test_a_folder_without_structure_files_even_in_subfolders(tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "notes.txt").write_text("nothing\n")
    (tmp_path / ".hidden.bpseq").write_text("1 G 0\n")
    with pytest.raises(InputError, match="holds no .bpseq or .ct files"):
        list(read_dataset(tmp_path, "structure"))


def test_a_bad_file_deep_in_the_tree_is_named_with_its_line(tmp_path, bprna):
    folder = tmp_path / "RNAStrAlign"
    make_rnastralign(folder, bprna, order_seed=4)
    bad = folder / "tRNA_database" / f"{bprna[2].id}.bpseq"
    lines = bad.read_text().splitlines(keepends=True)
    lines[3] = "4 G 999\n"
    bad.write_text("".join(lines))
    with pytest.raises(InputError) as err:
        list(read_dataset(folder, "structure"))
    assert err.value.path == str(bad) and err.value.line == 4
    assert err.value.record == f"tRNA_database/{bprna[2].id}" and "partner 999" in str(err.value)


def test_gencode_lncrna_fasta_as_published(tmp_path, resources):
    # lnc_sample.fa: four GENCODE headers ending in ' lnc' / ' pc'; the coding one has CDS:481-799
    transcripts = list(read_dataset(PUBLISHED / "lnc_sample.fa", "coding"))
    headers = [line[1:] for line in (PUBLISHED / "lnc_sample.fa").read_text().splitlines() if line.startswith(">")]
    assert [t.label for t in transcripts] == [int("CDS:" in h) for h in headers] == [0, 1, 0, 0]
    assert transcripts[1].cds == (481, 799) and len(transcripts[1].sequence) == 799
    # data/lncRNA_M/{train,test}.fa: plain FASTA, 60 letters a line, made from the bundled mouse set
    every = list(read_transcripts(resources / "mrna_lncrna/mouse_test.fa.gz"))
    source = [t for t in every if t.cds][:20] + [t for t in every if not t.cds][:20]
    folder = tmp_path / "data" / "lncRNA_M"
    folder.mkdir(parents=True)
    with open(folder / "test.fa", "w") as handle:
        for t in source:
            # the GENCODE id holds every '|' field (CDS:a-b included); the tag follows a space
            handle.write(f">{t.id} {'pc' if t.cds else 'lnc'}\n")
            handle.writelines(t.sequence[i:i + 60] + "\n" for i in range(0, len(t.sequence), 60))
    assert dataset_format(folder / "test.fa", "coding") == "transcript_fasta"
    task = get_task("coding", {"preset": "laptop"})
    examples = task.read_split(folder / "test.fa")
    by_id = {e.id: e for e in task.read_split(resources / "mrna_lncrna/mouse_test.fa.gz")}
    bundled = [by_id[t.id] for t in source]
    assert {e.info["label"] for e in examples} == {0, 1}
    assert [(e.id, e.info, e.tokens.tolist(), e.target.tolist()) for e in examples] == [
        (e.id, e.info, e.tokens.tolist(), e.target.tolist()) for e in bundled]


def test_published_mirna_txt_is_read_by_the_reader_of_the_tsv(resources):
    assert dataset_format(MIRAW_HEAD) == "mirna_table" == dataset_format(MIRAW_HEAD, "interaction")
    for raw, tsv, n in ((MIRAW_HEAD, "mirtar_deepmirtar_miraw.tsv", 300),
                        (INDTEST_HEAD, "mirtar_deepmirtar_indtest.tsv", 100)):
        from_txt = read_pair_table(raw)
        from_tsv = read_pair_table(resources / "mirna_target" / tsv)[:n]   # the same rows, same order
        assert len(from_txt) == n
        assert [(r.mirna_id, r.mirna, r.target_id, r.site, r.label) for r in from_txt] == [
            (r.mirna_id, r.mirna, r.target_id, r.site, r.label) for r in from_tsv]
        # the stored miRNA is 3'->5': the reader reverses it, as rri.py does
        fields = [line.split("\t") for line in raw.read_text().splitlines()]
        assert [r.mirna for r in from_txt] == [f[1][::-1] for f in fields]
        task = get_task("interaction", {"preset": "laptop"})
        assert [e.tokens.tolist() for e in task.read_split(raw)] == [
            e.tokens.tolist() for e in task.read_split(resources / "mirna_target" / tsv)[:n]]
        assert [s for _, s in iter_sequences(raw)] == [s for _, s in iter_sequences(resources / "mirna_target" / tsv)][:2 * n]
    sample = read_pair_table(PUBLISHED / "rri_sample.txt")
    assert len(sample) == 10 and sample[0].mirna == "CCUUUAGGGACCGUUACACUA"[::-1] and sample[0].label == 1


def test_the_leakage_stage_reads_the_published_layouts(tmp_path, bprna):
    folder = tmp_path / "RNAStrAlign"
    make_rnastralign(folder, bprna, order_seed=5)
    pair = read_pair_table(INDTEST_HEAD)[0]
    structure = read_structures(PUBLISHED / "ssp_sample" / "5s_Acetobacter-aceti-2.bpseq")
    corpus = tmp_path / "corpus.fa.gz"
    with gzip.open(corpus, "wt") as handle:
        handle.write(f">keep\nACGTACGTACGTAAAA\n>site\n{pair.site}\n>mirna\n{pair.mirna.replace('U', 'T')}\n")
        handle.write(f">rrna\n{next(iter(structure)).sequence.lower()}\n")
    sources = [SplitSource("interaction", "deepmirtar", "test", str(INDTEST_HEAD)),
               SplitSource("structure", "rnastralign", "test", str(folder))]
    counts = remove_leakage(corpus, tmp_path / "out.fa.gz", sources, tmp_path / "leakage.tsv",
                            show_progress=False)
    assert counts["records_in"] == 4 and counts["records_out"] == 1
    with open(tmp_path / "leakage.tsv", newline="") as handle:
        rows = {r["dataset"]: r for r in csv.DictReader(handle, delimiter="\t")}
    assert rows["deepmirtar"]["sequences"] == str(2 * 100) and rows["deepmirtar"]["corpus_records_removed"] == "2"
    assert rows["rnastralign"]["sequences"] == "13" and rows["rnastralign"]["corpus_records_removed"] == "1"
