"""Downstream datasets of the config and the removal of their valid/test sequences from the corpus."""
from __future__ import annotations

import csv
import gzip

import pytest
import yaml

from rnaret.data.datasets import SplitSource, iter_sequences, split_sources
from rnaret.data.leakage import remove_leakage
from rnaret.io.errors import InputError
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


def test_table_rows_are_selected_by_split_column(root):
    table = root / "resources/mirna_target/mirtar_deepmirtar_miraw.tsv"
    counts = {split: sum(1 for _ in iter_sequences(SplitSource("i", "m", split, str(table), split)))
              for split in ("train", "valid", "test")}
    # SOURCE.md: train 22,173, valid 2,774, test 2,773 rows; two sequences (miRNA, target) a row
    assert counts == {"train": 2 * 22173, "valid": 2 * 2774, "test": 2 * 2773}
    record, seq = next(iter_sequences(SplitSource("i", "m", "test", str(table), "test")))
    assert record.endswith(":mirna_seq")


def test_every_structure_format_gives_the_same_sequences(root, tmp_path):
    csv_path = root / "resources/structure/bprna_test.csv"
    with open(csv_path, newline="") as handle:
        by_id = {row["id"]: row["sequence"] for row in csv.DictReader(handle)}
    assert [s for _, s in iter_sequences(str(csv_path))] == list(by_id.values())
    dbn = dict(iter_sequences(str(root / "resources/structure/bprna_test.dbn")))
    assert dbn == by_id
    bpseq = dict(iter_sequences(str(root / "resources/structure/bpseq/bprna_test")))
    assert len(bpseq) == 20 and all(by_id[k] == v for k, v in bpseq.items())
    # a CT file written from one bpseq record
    name, seq = next(iter(bpseq.items()))
    ct = tmp_path / f"{name}.ct"
    ct.write_text(f"{len(seq)} {name}\n" + "".join(
        f"{i} {c} {i - 1} {i + 1} 0 {i}\n" for i, c in enumerate(seq, 1)))
    assert dict(iter_sequences(str(ct))) == {name: seq}


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(InputError, match="unknown dataset format"):
        list(iter_sequences(str(tmp_path / "x.parquet")))
    with pytest.raises(InputError, match="not found"):
        list(iter_sequences(str(tmp_path / "absent.csv")))
    table = tmp_path / "t.tsv"
    table.write_text("id\tlabel\na\t1\n")
    with pytest.raises(InputError, match="no sequence column"):
        list(iter_sequences(str(table)))
    with pytest.raises(InputError, match="no 'split' column"):
        list(iter_sequences(SplitSource("t", "d", "test", str(table), "test")))


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
