"""Downstream datasets of the config and the removal of their valid/test sequences from the corpus."""
from __future__ import annotations

import csv
import gzip

import pytest
import yaml

from rnaret.data.datasets import SplitSource, split_sources
from rnaret.data.leakage import remove_leakage
from rnaret.io.datasets import iter_sequences
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
        handle.write(f">keep2_prefix_only\n{test_seqs[0][:-1]}\n")
    sources = [SplitSource("structure", "bprna", "test", str(bprna)),
               SplitSource("coding", "mouse", "test", str(mouse))]
    counts = remove_leakage(corpus, tmp_path / "out.fa.gz", sources, tmp_path / "leakage.tsv",
                            tmp_path / "leakage.json", show_progress=False)
    assert [r.id for r in read_fasta(tmp_path / "out.fa.gz")] == ["keep1", "keep2_prefix_only"]
    assert counts["records_in"] == 7 and counts["records_out"] == 2 and counts["records_removed"] == 5
    with open(tmp_path / "leakage.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    table = {(r["task"], r["dataset"], r["split"]): r for r in rows}
    assert table[("structure", "bprna", "test")]["found_in_corpus"] == "3"
    assert table[("structure", "bprna", "test")]["corpus_records_removed"] == "4"
    assert table[("structure", "bprna", "test")]["sequences"] == "1266"
    assert table[("coding", "mouse", "test")]["corpus_records_removed"] == "1"
    assert table[("all", "all", "all")]["corpus_records_removed"] == "5"
