"""Within-dataset homology (test/valid against train/valid of the same dataset), reported and
never removed: the comparisons each dataset gets, and counts on planted real sequences."""
from __future__ import annotations

import csv
import json
import random
import subprocess
import sys

import pytest
import yaml

from rnaret.io.dataset_readers import iter_sequences
from rnaret.data.homology import check_dataset, comparisons


@pytest.fixture(scope="module")
def config_datasets(root):
    datasets = yaml.safe_load((root / "config.yaml").read_text())["datasets"]
    # paths relative to the repository root, as the pipeline gives them
    for entries in datasets.values():
        for entry in entries.values():
            for split, value in entry.items():
                if split in ("train", "valid", "test"):
                    if isinstance(value, dict):
                        value["path"] = str(root / value["path"])
                    else:
                        entry[split] = str(root / value)
    return datasets


def test_each_dataset_is_compared_with_its_own_training_splits(config_datasets):
    def pairs(task, name):
        return [(c.evaluated.split, c.reference_label) for c in comparisons(config_datasets, task, name)]

    assert pairs("structure", "bprna") == [("test", "bprna/train"), ("test", "bprna/valid"),
                                           ("valid", "bprna/train")]
    assert pairs("coding", "mouse") == [("test", "mouse/train")]
    # a test-only dataset is compared with the dataset whose models evaluate it
    assert pairs("interaction", "mirtar_indtest") == [("test", "mirtar/train"), ("test", "mirtar/valid")]
    with pytest.raises(KeyError, match="datasets.coding.absent"):
        comparisons(config_datasets, "coding", "absent")


SWAP = str.maketrans("ACGU", "CGUA")


def test_identical_similar_and_unrelated_test_sequences_are_counted(tmp_path, root):
    train = [s for _, s in iter_sequences(str(root / "resources/structure/bprna_train.csv"))][:200]
    rng = random.Random(0)
    with_mismatches = list(train[1])
    for p in (len(with_mismatches) // 3, 2 * len(with_mismatches) // 3):
        with_mismatches[p] = with_mismatches[p].translate(SWAP)
    tests = {"same": train[0], "two_mismatches": "".join(with_mismatches),
             "contained": train[2][10:-10], "unrelated": "".join(rng.sample(train[3], len(train[3])))}
    (tmp_path / "train.fa").write_text("".join(f">t{i}\n{s}\n" for i, s in enumerate(train)))
    (tmp_path / "test.fa").write_text("".join(f">{k}\n{s}\n" for k, s in tests.items()))
    datasets = {"coding": {"toy": {"train": str(tmp_path / "train.fa"), "test": str(tmp_path / "test.fa")}}}
    rows, hits = check_dataset(datasets, "coding", "toy", threads=2)
    assert len(rows) == 1
    row = rows[0]
    assert (row["identical_in_reference"], row["similar_in_reference"], row["in_reference"]) == (1, 2, 3)
    assert row["unique_sequences"] == 4 and row["fraction_in_reference"] == "0.7500"
    assert {h["test_record"] for h in hits} == {"two_mismatches", "contained"}
    assert {h["reference_record"] for h in hits} == {"t1", "t2"}


def test_the_command_writes_one_row_per_comparison(tmp_path, root, config_datasets):
    table = tmp_path / "homology.tsv"
    result = subprocess.run([sys.executable, "-m", "rnaret", "homology", "--datasets", json.dumps(config_datasets),
                             "--dataset", "structure/bprna", "--table", str(table), "--threads", "2"],
                            capture_output=True, text=True, cwd=root, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(r["split"], r["reference"]) for r in rows] == [("test", "bprna/train"), ("test", "bprna/valid"),
                                                           ("valid", "bprna/train")]
    assert all(int(r["in_reference"]) <= int(r["unique_sequences"]) for r in rows)
    assert rows[0]["unique_sequences"] == "1266"
    bad = subprocess.run([sys.executable, "-m", "rnaret", "homology", "--datasets", json.dumps(config_datasets),
                          "--dataset", "structure/absent", "--table", str(tmp_path / "x.tsv")],
                         capture_output=True, text=True, cwd=root, timeout=120)
    assert bad.returncode == 2 and "datasets.structure.absent" in bad.stderr
