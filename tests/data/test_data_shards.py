"""Tokenize + shard: round trip to the sequences, length order, split, index, bounded runs."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from rnaret.data.lengths import LengthPolicy, apply_length_policy
from rnaret.data.shards import ShardCorpus, assign_split, source_id, write_shards
from rnaret.io.errors import InputError
from rnaret.io.fasta import read_fasta
from rnaret.tokenizer import UNK, decode, encode


@pytest.fixture(scope="module")
def filtered(tmp_path_factory, resources):
    """The bundled sample under the default length policy (windows of 2,000 nt)."""
    out = tmp_path_factory.mktemp("filtered") / "filtered.fa.gz"
    apply_length_policy(resources / "rnacentral" / "rnacentral_sample.fa.gz", out, LengthPolicy(),
                        show_progress=False)
    return out


@pytest.fixture(scope="module")
def shards_k3(tmp_path_factory, filtered):
    root = tmp_path_factory.mktemp("shards") / "k3"
    manifest = write_shards(filtered, root, 3, tokens_per_shard=1_000_000, valid_fraction=0.05,
                            seed=7, run_tokens=300_000, show_progress=False)
    return root, manifest


def test_round_trip_every_record(shards_k3, filtered):
    root, manifest = shards_k3
    records = {r.id: r.sequence for r in read_fasta(filtered)}
    seen = set()
    for split in ("train", "valid"):
        corpus = ShardCorpus(root, split)
        for i in range(len(corpus)):
            rid = corpus.record_id(i)
            seq = records[rid]
            tokens = corpus.tokens(i)
            assert tokens.dtype == np.int64 and len(tokens) == corpus.lengths[i]
            np.testing.assert_array_equal(tokens, encode(seq, 3))
            # decoding is slow in Python: check every 10th record
            if i % 10 == 0 and set(seq.upper()) <= set("ACGTU"):
                assert corpus.sequence(i) == seq.upper().replace("U", "T") == decode(tokens, 3)
            seen.add(rid)
    assert seen == set(records)  # every record exactly once over the two splits
    assert manifest["splits"]["train"]["records"] + manifest["splits"]["valid"]["records"] == len(records)


def test_records_are_sorted_by_length_across_shards(shards_k3):
    root, manifest = shards_k3
    corpus = ShardCorpus(root / "train")
    assert np.all(np.diff(corpus.lengths) >= 0)
    files = manifest["splits"]["train"]["files"]
    assert len(files) > 5  # 1 M tokens a shard
    assert all(f["tokens"] <= 1_000_000 for f in files)
    assert sum(f["records"] for f in files) == len(corpus)
    assert [f["first_record"] for f in files] == list(np.cumsum([0] + [f["records"] for f in files])[:-1])
    for f in files:  # shard files hold exactly their records' tokens
        assert np.load(root / "train" / f["file"], mmap_mode="r").shape == (f["tokens"],)
        assert corpus.lengths[f["first_record"]] == f["min_length"]


def test_valid_split_is_by_source_sequence(shards_k3):
    root, manifest = shards_k3
    train, valid = ShardCorpus(root, "train"), ShardCorpus(root, "valid")
    train_sources = {source_id(train.record_id(i)) for i in range(len(train))}
    valid_sources = {source_id(valid.record_id(i)) for i in range(len(valid))}
    assert not train_sources & valid_sources  # windows of one sequence stay together
    fraction = len(valid_sources) / (len(valid_sources) + len(train_sources))
    assert 0.04 < fraction < 0.06
    assert all(assign_split(valid.record_id(i), 0.05, 7) == "valid" for i in range(len(valid)))
    assert source_id("URS0000_9606/1801-3800") == "URS0000_9606"


def test_unk_tokens_and_non_acgtu_letters_are_counted(shards_k3, filtered):
    _root, manifest = shards_k3
    records = list(read_fasta(filtered))
    letters = sum(len(r.sequence) - sum(r.sequence.upper().count(c) for c in "ACGTU") for r in records)
    unk = sum(int(np.count_nonzero(encode(r.sequence, 3) == UNK)) for r in records)
    splits = manifest["splits"]
    assert splits["train"]["non_acgtu_letters"] + splits["valid"]["non_acgtu_letters"] == letters > 0
    assert splits["train"]["unk_tokens"] + splits["valid"]["unk_tokens"] == unk > letters


def test_manifest_records_format_policy_and_checksum(shards_k3, filtered):
    root, manifest = shards_k3
    on_disk = json.loads((root / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["k"] == 3 and manifest["vocab_size"] == 70 and manifest["dtype"] == "uint16"
    import hashlib
    assert manifest["source"]["md5"] == hashlib.md5(filtered.read_bytes()).hexdigest()
    assert manifest["shards"] == {"tokens_per_shard": 1_000_000, "valid_fraction": 0.05, "seed": 7,
                                  "split_by": "blake2b(seed:source id) < valid_fraction"}


def test_output_does_not_depend_on_run_size(tmp_path, shards_k3, filtered):
    """Sorted runs bound memory; a run 30x larger must give byte-identical shards."""
    root, _ = shards_k3
    other = tmp_path / "k3"
    write_shards(filtered, other, 3, tokens_per_shard=1_000_000, valid_fraction=0.05, seed=7,
                 run_tokens=10_000_000, show_progress=False)
    for split in ("train", "valid"):
        names = sorted(p.name for p in (root / split).iterdir())
        assert names == sorted(p.name for p in (other / split).iterdir())
        for name in names:
            assert (root / split / name).read_bytes() == (other / split / name).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temporary runs removed


def test_multi_level_merge_gives_the_same_shards(tmp_path, shards_k3, filtered, monkeypatch):
    """With a fan-in of 3 the ~35 runs take several merge levels; the result must not change."""
    import rnaret.data.shards as shards

    monkeypatch.setattr(shards, "MERGE_FAN_IN", 3)
    root, _ = shards_k3
    write_shards(filtered, tmp_path / "k3", 3, tokens_per_shard=1_000_000, valid_fraction=0.05,
                 seed=7, run_tokens=300_000, show_progress=False)
    for split in ("train", "valid"):
        for path in sorted((root / split).iterdir()):
            assert path.read_bytes() == (tmp_path / "k3" / split / path.name).read_bytes(), path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k3"]


def test_a_record_longer_than_a_shard_gets_its_own(tmp_path):
    fasta = tmp_path / "in.fa"
    fasta.write_text(">a\nACGUACGU\n>b\nACG\n>long\n" + "ACGU" * 30 + "\n>c\nACGUA\n")
    manifest = write_shards(fasta, tmp_path / "k1", 1, tokens_per_shard=16, valid_fraction=0.0,
                            run_tokens=50, show_progress=False)  # 'long' exceeds a run too
    files = manifest["splits"]["train"]["files"]
    assert [(f["records"], f["tokens"]) for f in files] == [(3, 16), (1, 120)]  # b+c+a fill one
    corpus = ShardCorpus(tmp_path / "k1" / "train")
    assert [corpus.record_id(i) for i in range(len(corpus))] == ["b", "c", "a", "long"]
    assert corpus.sequence(3) == "ACGT" * 30
    assert len(ShardCorpus(tmp_path / "k1", "valid")) == 0


def test_reader_survives_pickling_for_dataloader_workers(shards_k3):
    root, _ = shards_k3
    corpus = ShardCorpus(root, "valid")
    corpus.tokens(0), corpus.record_id(0)  # open the memory maps and the id file
    copy = pickle.loads(pickle.dumps(corpus))
    np.testing.assert_array_equal(copy.tokens(len(copy) - 1), corpus.tokens(len(corpus) - 1))
    assert copy.record_id(3) == corpus.record_id(3)


def test_reader_rejects_a_folder_without_manifest(tmp_path):
    with pytest.raises(InputError, match="manifest"):
        ShardCorpus(tmp_path / "train")


def test_sigterm_leaves_no_partial_output(tmp_path, resources):
    """A job stopped by SIGTERM (Snakemake, SLURM) removes its temporary runs and writes nothing."""
    import signal
    import subprocess
    import sys
    import time

    records = list(read_fasta(resources / "rnacentral" / "rnacentral_sample.fa.gz"))
    fasta = tmp_path / "big.fa"
    with open(fasta, "w") as out:
        for copy in range(6):
            for r in records:
                out.write(f">{r.id}_{copy}\n{r.sequence}\n")
    proc = subprocess.Popen([sys.executable, "-m", "rnaret", "shard", str(fasta), "--output",
                             str(tmp_path / "k3"), "--k", "3", "--run-tokens", "1000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # wait for the observable state "a sorted run is on disk" (at 1 M of the ~52 M tokens: the
    # job is then far from done); the loop ends when it appears or the job ends, whatever the load
    while proc.poll() is None and not list(tmp_path.glob(".k3.runs.*/*.bin")):
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.fa"]


def test_valid_from_train_holds_nothing_out(tmp_path, filtered):
    """The published corpus: every record in train; the records drawn for validation are also
    written to valid, so the validation loss watches records that are trained on."""
    root = tmp_path / "k3"
    manifest = write_shards(filtered, root, 3, tokens_per_shard=1_000_000, valid_fraction=0.05, seed=7,
                            run_tokens=300_000, valid_from_train=True, show_progress=False)
    train, valid = ShardCorpus(root, "train"), ShardCorpus(root, "valid")
    train_ids = [train.record_id(i) for i in range(len(train))]
    assert sorted(train_ids) == sorted(r.id for r in read_fasta(filtered))
    valid_ids = {valid.record_id(i) for i in range(len(valid))}
    assert valid_ids and valid_ids <= set(train_ids)
    assert all(assign_split(i, 0.05, 7) == "valid" for i in valid_ids)
    index = {train.record_id(i): i for i in range(len(train))}
    for i in range(0, len(valid), 97):
        assert np.array_equal(valid.tokens(i), train.tokens(index[valid.record_id(i)]))
    assert manifest["shards"]["valid_from_train"] is True
    assert manifest["splits"]["train"]["records"] == len(train_ids)
