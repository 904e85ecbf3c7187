"""Downstream datasets of the config and the removal of their valid/test sequences from the
corpus: identical records first, then records holding them (MMseqs2, real bundled data)."""
from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys

import pytest
import yaml

from rnaret.settings.dataset_sources import SplitSource, split_sources
from rnaret.data.leakage import remove_leakage
from rnaret.data.leakage_report import read_tsv as read_hits
from rnaret.io.dataset_readers import iter_sequences
from rnaret.io.fasta import read_fasta


@pytest.fixture(scope="module")
def config_datasets(root):
    return yaml.safe_load((root / "config.yaml").read_text())["datasets"]


def test_config_datasets_resolve_to_splits(config_datasets, root):
    sources = split_sources(config_datasets)
    labels = {s.label for s in sources}
    assert {"structure/bprna/test", "interaction/mirtar/valid", "interaction/mirtar_indtest/test",
            "coding/mouse/train"} <= labels
    mirtar_test = next(s for s in sources if s.label == "interaction/mirtar/test")
    assert mirtar_test.row_split == "test"
    assert all((root / s.path).exists() for s in sources)
    assert not any(s.split == "finetuned_on" for s in sources)


def read_table(path):
    with open(path, newline="") as handle:
        return {(r["task"], r["dataset"], r["split"]): r for r in csv.DictReader(handle, delimiter="\t")}


def test_leakage_removes_case_and_u_t_variants(tmp_path, root):
    bprna = root / "resources/structure/bprna_test.csv"
    mouse = root / "resources/mrna_lncrna/mouse_test.fa.gz"
    test_seqs = [s for _, s in iter_sequences(str(bprna))][:3]
    mouse_seq = next(read_fasta(mouse)).sequence
    corpus = tmp_path / "corpus.fa.gz"
    with gzip.open(corpus, "wt") as handle:
        handle.write(f">keep1\nACGTACGTAAAA\n")
        handle.write(f">leak_upper_t\n{test_seqs[0].upper().replace('U', 'T')}\n")
        handle.write(f">leak_lower\n{test_seqs[1].lower()}\n")
        handle.write(f">leak_same\n{test_seqs[2]}\n")
        handle.write(f">leak_same_again\n{test_seqs[2]}\n")
        handle.write(f">leak_mouse_rna\n{mouse_seq.replace('T', 'U')}\n")
        handle.write(f">similar_prefix\n{test_seqs[0][:-1]}\n")
    sources = [SplitSource("structure", "bprna", "test", str(bprna)),
               SplitSource("coding", "mouse", "test", str(mouse))]
    counts = remove_leakage(corpus, tmp_path / "out.fa.gz", sources, tmp_path / "leakage.tsv",
                            tmp_path / "leakage.json", show_progress=False)
    assert [r.id for r in read_fasta(tmp_path / "out.fa.gz")] == ["keep1"]
    assert counts["records_in"] == 7 and counts["records_out"] == 1 and counts["records_removed"] == 6
    # identity first: five identical records; the one-letter-shorter copy is the similarity pass's
    assert counts["records_removed_identical"] == 5 and counts["records_removed_similar"] == 1
    table = read_table(tmp_path / "leakage.tsv")
    bprna_row = table[("structure", "bprna", "test")]
    assert bprna_row["identical_in_corpus"] == "3" and bprna_row["corpus_records_identical"] == "4"
    assert bprna_row["corpus_records_similar"] == "1" and bprna_row["corpus_records_removed"] == "5"
    assert bprna_row["sequences"] == "1266"
    assert table[("coding", "mouse", "test")]["corpus_records_removed"] == "1"
    assert table[("all", "all", "all")]["corpus_records_removed"] == "6"
    saved = json.loads((tmp_path / "leakage.json").read_text())
    assert saved["thresholds"] == {"min_identity": 0.8, "min_test_coverage": 0.8, "max_evalue": 1.0}
    assert saved["mmseqs"]["version"] and saved["per_split"]["structure/bprna/test"] == \
        {"identical": 4, "similar": 1}


SWAP = str.maketrans("ACGTacgt", "CGTAcgta")


def two_mismatches(sequence):
    """Two substitutions at a third and two thirds of the sequence (no long exact run left)."""
    letters = list(sequence)
    for p in (len(letters) // 3, 2 * len(letters) // 3):
        letters[p] = letters[p].translate(SWAP)
    return "".join(letters)


@pytest.fixture(scope="module")
def planted(tmp_path_factory, root):
    """The first 500 bundled corpus records plus: a bpRNA test tRNA inside a longer corpus
    record, a bpRNA test sequence with two mismatches, a test miRNA inside a precursor-length
    record and one with two mismatches, and an unrelated (shuffled) test sequence."""
    import random

    rng = random.Random(0)
    tmp = tmp_path_factory.mktemp("planted")
    bprna = root / "resources/structure/bprna_test.csv"
    mirtar = root / "resources/mirna_target/mirtar_deepmirtar_miraw.tsv"
    sources = [SplitSource("structure", "bprna", "test", str(bprna)),
               SplitSource("interaction", "mirtar", "test", str(mirtar), "test")]
    structures = [s.upper().replace("U", "T") for _, s in iter_sequences(str(bprna))]
    mirnas = [s.upper().replace("U", "T") for r, s in iter_sequences(mirtar, "test", task="interaction")
              if r.endswith("mirna_seq")]
    sample = [r for _, r in zip(range(500), read_fasta(root / "resources/rnacentral/rnacentral_sample.fa.gz"))]
    host = sample[7].sequence
    trna = next(s for s in structures if 70 <= len(s) <= 90)
    other = structures[40]
    mirna = next(s for s in mirnas if len(s) == 22)
    shuffled = "".join(rng.sample(structures[41], len(structures[41])))
    planted = {
        "planted_inside": host[:50] + trna + host[50:],
        "planted_two_mismatches": two_mismatches(other),
        "planted_mirna_inside": host[:30] + mirna + host[30:90],
        "planted_mirna_two_mismatches": host[:30] + two_mismatches(mirna) + host[30:90],
        "planted_unrelated": shuffled,
    }
    corpus = tmp / "corpus.fa.gz"
    with gzip.open(corpus, "wt") as handle:
        for record in sample:
            handle.write(f">{record.description}\n{record.sequence}\n")
        for name, sequence in planted.items():
            handle.write(f">{name}\n{sequence}\n")
    counts = remove_leakage(corpus, tmp / "out.fa.gz", sources, tmp / "leakage.tsv", tmp / "leakage.json",
                            hits_path=tmp / "hits.tsv.gz", threads=2, show_progress=False)
    kept = {r.id for r in read_fasta(tmp / "out.fa.gz")}
    return tmp, counts, kept, planted, sample


def test_planted_test_sequences_are_removed_and_the_unrelated_one_kept(planted):
    tmp, counts, kept, records, sample = planted
    assert {name for name in records if name not in kept} == {
        "planted_inside", "planted_two_mismatches", "planted_mirna_inside", "planted_mirna_two_mismatches"}
    assert "planted_unrelated" in kept
    hits = {r["corpus_record"]: r for r in reversed(read_hits(tmp / "hits.tsv.gz")) if r["removed"] == "yes"}
    assert hits["planted_inside"]["identity"] == "1.000" and hits["planted_inside"]["test_coverage"] == "1.000"
    assert float(hits["planted_two_mismatches"]["identity"]) < 1.0
    assert hits["planted_mirna_two_mismatches"]["splits"] == "interaction/mirtar/test"
    assert counts["records_removed"] == counts["records_in"] - len(kept)
    assert counts["records_removed_identical"] + counts["records_removed_similar"] == counts["records_removed"]


def test_every_similarity_removal_has_a_passing_hit_in_the_hits_table(planted):
    tmp, counts, kept, records, sample = planted
    rows = read_hits(tmp / "hits.tsv.gz")
    removed_by_hits = {r["corpus_record"] for r in rows if r["removed"] == "yes"}
    all_ids = [r.id for r in sample] + list(records)
    removed = {i for i in all_ids if i not in kept}
    assert removed_by_hits == removed and len(removed) == counts["records_removed_similar"]
    for row in rows:
        passed = float(row["identity"]) >= 0.8 and float(row["test_coverage"]) >= 0.8 \
            and float(row["evalue"]) <= 1.0
        assert (row["removed"] == "yes") == passed, row
    table = read_table(tmp / "leakage.tsv")
    assert int(table[("all", "all", "all")]["corpus_records_similar"]) == len(removed)


def test_thresholds_decide_what_is_removed(tmp_path, planted, root):
    """Raised to identity 1.0 the mismatched copies stay; the contained ones still go."""
    tmp, *_ = planted
    from rnaret.data.similarity import Thresholds

    sources = [SplitSource("structure", "bprna", "test", str(root / "resources/structure/bprna_test.csv")),
               SplitSource("interaction", "mirtar", "test",
                           str(root / "resources/mirna_target/mirtar_deepmirtar_miraw.tsv"), "test")]
    remove_leakage(tmp / "corpus.fa.gz", tmp_path / "out.fa.gz", sources, tmp_path / "t.tsv",
                   thresholds=Thresholds(min_identity=1.0), show_progress=False)
    kept = {r.id for r in read_fasta(tmp_path / "out.fa.gz")}
    assert {"planted_two_mismatches", "planted_mirna_two_mismatches", "planted_unrelated"} <= kept
    assert not {"planted_inside", "planted_mirna_inside"} & kept


def test_the_command_without_mmseqs_fails_naming_the_environment_and_writes_nothing(tmp_path, root):
    corpus = tmp_path / "c.fa"
    corpus.write_text(">a\nACGTACGTACGTAAACCC\n")
    datasets = json.dumps({"structure": {"bprna": {"test": str(root / "resources/structure/bprna_test.csv")}}})
    result = subprocess.run([sys.executable, "-m", "rnaret", "leakage", str(corpus), "-o", str(tmp_path / "o.fa.gz"),
                             "--datasets", datasets, "--table", str(tmp_path / "t.tsv"),
                             "--counts", str(tmp_path / "c.json"), "--mmseqs", "mmseqs-not-installed"],
                            capture_output=True, text=True, cwd=root, timeout=120)
    assert result.returncode == 1
    assert "envs/data.yaml" in result.stderr and "apt-get install mmseqs2" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.fa"]


@pytest.mark.parametrize("flag, value, key", [("--min-identity", "1.2", "min_identity"),
                                              ("--min-test-coverage", "0", "min_test_coverage"),
                                              ("--max-evalue", "-1", "max_evalue")])
def test_the_command_refuses_bad_thresholds_naming_them(tmp_path, root, flag, value, key):
    corpus = tmp_path / "c.fa"
    corpus.write_text(">a\nACGTACGTACGTAAACCC\n")
    result = subprocess.run([sys.executable, "-m", "rnaret", "leakage", str(corpus), "-o", str(tmp_path / "o.fa"),
                             "--datasets", "{}", "--table", str(tmp_path / "t.tsv"), flag, value],
                            capture_output=True, text=True, cwd=root, timeout=120)
    assert result.returncode == 2 and f"leakage.{key}" in result.stderr


def test_the_report_figure_closest_pairs_and_summary_rows(planted, tmp_path):
    tmp, counts, kept, records, sample = planted
    from rnaret.commands.corpus_summary import leakage_rows
    from rnaret.data.leakage_report import closest_pairs, plot_leakage, read_tsv

    hits = read_tsv(tmp / "hits.tsv.gz")
    closest = closest_pairs(hits)
    assert 1 <= len(closest) <= 10
    keys = [(-float(r["identity"]), -float(r["test_coverage"]), -int(r["aligned_length"])) for r in closest]
    assert keys == sorted(keys)
    removed = {h["corpus_record"] for h in hits if h["removed"] == "yes"}
    assert {r["corpus_record"] for r in closest} <= removed
    png = plot_leakage(hits, read_tsv(tmp / "leakage.tsv"), counts["thresholds"], tmp_path / "leakage.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    identical, similar = leakage_rows(counts)
    assert identical["records_in"] - identical["records_out"] == counts["records_removed_identical"]
    assert similar["records_in"] - similar["records_out"] == counts["records_removed_similar"]
    assert similar["records_out"] == counts["records_out"]
    assert "interaction/mirtar/test:" in similar["detail"] and "similar" in similar["detail"]


def test_nothing_left_to_search_needs_no_mmseqs(tmp_path, root):
    """Every record identical to a test sequence (or no split to check): the similarity pass has
    nothing to search and does not call MMseqs2."""
    bprna = root / "resources/structure/bprna_test.csv"
    first = next(iter_sequences(str(bprna)))[1]
    corpus = tmp_path / "c.fa"
    corpus.write_text(f">same\n{first}\n")
    sources = [SplitSource("structure", "bprna", "test", str(bprna))]
    counts = remove_leakage(corpus, tmp_path / "o.fa", sources, tmp_path / "t.tsv", show_progress=False,
                            mmseqs="mmseqs-not-installed")
    assert counts["records_out"] == 0 and counts["records_removed_identical"] == 1
    assert counts["mmseqs"]["version"].startswith("not run")
    counts = remove_leakage(corpus, tmp_path / "o2.fa", [], tmp_path / "t2.tsv", show_progress=False,
                            mmseqs="mmseqs-not-installed")
    assert counts["records_out"] == 1 and counts["records_removed"] == 0
