"""miRNA-target interaction: the published input layout, the pair-table reader, and a brief
fine-tune + evaluation on the bundled DeepMirTar/miRAW pairs through the command line."""
from __future__ import annotations

import csv
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from rnaret.checkpoint import save_encoder
from rnaret.cli import main
from rnaret.io.errors import InputError
from rnaret.metrics import read_metrics_tsv
from rnaret.model import EncoderConfig, build_encoder
from rnaret.tasks import get_task
from rnaret.tasks.interaction import pair_tokens
from rnaret.io.mirna_table import read_pair_table

MAIN = "mirna_target/mirtar_deepmirtar_miraw.tsv"
INDTEST = "mirna_target/mirtar_deepmirtar_indtest.tsv"


def published_kmer_ids(seq: str, k: int) -> list[int]:
    """rri.py's k-mer ids, written out independently: itertools.product('ATCG') order from 6, U as T."""
    index = {"".join(p): i + 6 for i, p in enumerate(itertools.product("ATCG", repeat=k))}
    seq = seq.upper().replace("U", "T")
    return [index.get(seq[i:i + k], 2) for i in range(len(seq) - k + 1)]


def test_pair_tokens_follow_the_published_layout(resources):
    rows = list(csv.DictReader(open(resources / MAIN), delimiter="\t"))[:3]
    for row in rows:
        k = 5
        mirna = row["mirna_seq_3to5"][::-1]  # rri.py reverses the stored 3'->5' string
        assert mirna == row["mirna_seq"]
        expected = ([3, 1, 1] + published_kmer_ids(mirna, k) + [1, 1, 3, 1, 1]
                    + published_kmer_ids(row["target_seq"], k) + [1, 1])
        assert pair_tokens(mirna, row["target_seq"], k).tolist() == expected
        # one token per nucleotide plus CLS and SEP
        assert len(expected) == len(mirna) + len(row["target_seq"]) + 2


def test_reader_selects_the_split_column_and_reverses_the_mirna(resources):
    counts = {s: len(read_pair_table(resources / MAIN, s)) for s in ("train", "valid", "test")}
    assert counts == {"train": 22173, "valid": 2774, "test": 2773}
    indtest = read_pair_table(resources / INDTEST)
    assert len(indtest) == 828 and sum(r.label for r in indtest) == 443
    first = read_pair_table(resources / MAIN, "train")[0]
    assert (first.mirna_id, first.mirna, first.label) == ("hsa-miR-96-5p", "UUUGGCACUAGCACAUUUUUGCU", 1)


def test_published_five_column_file_gives_the_same_examples(resources, tmp_path):
    table = pd.read_csv(resources / INDTEST, sep="\t").head(50)
    raw = tmp_path / "data_DeepMirTar_IndTest_noRepeats_3folds.txt"
    table[["mirna_id", "mirna_seq_3to5", "target_id", "target_seq", "label"]].to_csv(
        raw, sep="\t", header=False, index=False)
    ours = tmp_path / "indtest.tsv"
    table.to_csv(ours, sep="\t", index=False)
    task = get_task("interaction")
    a, b = task.read_split(raw), task.read_split(ours)
    assert [e.tokens.tolist() for e in a] == [e.tokens.tolist() for e in b]
    assert [e.target for e in a] == table["label"].tolist()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.drop(columns=["target_seq"]), "missing column 'target_seq'"),
    (lambda t: t.assign(label=["2"] + t["label"].astype(str).tolist()[1:]), "label must be 0 or 1"),
    (lambda t: t.assign(target_seq=["ACGT*ACGT"] + t["target_seq"].tolist()[1:]), "not nucleotides"),
    (lambda t: t.assign(mirna_seq=["ACGU"] + t["mirna_seq"].tolist()[1:]), "not the reverse"),
])
def test_reader_rejects_bad_rows_naming_file_and_line(resources, tmp_path, edit, message):
    table = pd.read_csv(resources / INDTEST, sep="\t", dtype=str).head(5)
    path = tmp_path / "bad.tsv"
    edit(table).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match=message) as info:
        read_pair_table(path)
    assert str(path) in str(info.value)
    if "column" not in message:
        assert info.value.line == 2


def test_reader_rejects_a_split_the_table_lacks(resources, tmp_path):
    with pytest.raises(InputError, match="no row has split 'dev'"):
        read_pair_table(resources / MAIN, "dev")
    table = pd.read_csv(resources / INDTEST, sep="\t").head(3).drop(columns=["split"])
    table.to_csv(tmp_path / "nosplit.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="no 'split' column"):
        get_task("interaction").read_split(tmp_path / "nosplit.tsv", "train")
    (tmp_path / "notes.txt").write_text("just some words\n")
    with pytest.raises(InputError, match="neither a table"):
        read_pair_table(tmp_path / "notes.txt")


@pytest.fixture(scope="module")
def tiny_k5_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig.paper(5, retnet_embed_dim=16, retnet_value_embed_dim=16,
                                                retnet_ffn_embed_dim=32, retnet_layers=2,
                                                retnet_retention_heads=2, dropout=0.0, activation_dropout=0.0))
    return save_encoder(encoder, tmp_path_factory.mktemp("pretrained") / "rnaret-k5")


def test_finetune_and_evaluate_interaction_from_the_command_line(resources, tmp_path, tiny_k5_checkpoint):
    table = pd.read_csv(resources / MAIN, sep="\t", dtype=str)
    # a small real subset: both labels in every split
    parts = [table[(table.split == s) & (table.label == lab)].head(n)
             for s, n in (("train", 128), ("valid", 48), ("test", 60)) for lab in ("0", "1")]
    subset = tmp_path / "pairs.tsv"
    pd.concat(parts).sample(frac=1.0, random_state=0).to_csv(subset, sep="\t", index=False)
    checkpoint = tmp_path / "checkpoint"
    rc = main(["finetune", "--task", "interaction", "--init", str(tiny_k5_checkpoint), "--out", str(checkpoint),
               "--split", f"train={subset}#train", "--split", f"valid={subset}#valid",
               "--set", "preset=laptop", "--set", "epochs=2", "--set", "train_samples_per_epoch=null",
               "--set", "valid_max_examples=null", "--set", "evals_per_epoch=1", "--set", "lr=3e-3",
               "--threads", "2", "--quiet"])
    assert rc == 0
    assert {p.name for p in checkpoint.iterdir()} == {"task.json", "encoder", "head.safetensors", "train_log.tsv"}
    log = pd.read_csv(checkpoint / "train_log.tsv", sep="\t")
    assert len(log) == 2 and log["valid_n"].tolist() == [96, 96]

    out = tmp_path / "evaluation"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--out", str(out),
                 "--split", f"test={subset}#test", "--quiet"]) == 0
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "metrics.tsv").read_text().splitlines()[0] == "metric\tvalue"
    metrics = read_metrics_tsv(out / "metrics.tsv")
    assert list(metrics)[:7] == ["accuracy", "precision", "recall", "f1", "auc", "mcc", "n"]
    assert metrics["n"] == 120 and metrics["n_pos"] == 60
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    test_rows = pd.read_csv(subset, sep="\t").reset_index(drop=True)
    test_rows = test_rows[test_rows.split == "test"]
    # one prediction per test row, in input order, carrying that row's ids and label
    assert predictions["mirna_id"].tolist() == test_rows["mirna_id"].tolist()
    assert predictions["target_id"].tolist() == test_rows["target_id"].tolist()
    assert predictions["label"].tolist() == test_rows["label"].tolist()
    from sklearn import metrics as sk

    y, called = predictions["label"], predictions["prediction"]
    assert metrics["auc"] == pytest.approx(sk.roc_auc_score(y, predictions["score"]), abs=1e-6)
    for name, value in (("accuracy", sk.accuracy_score(y, called)),
                        ("precision", sk.precision_score(y, called, zero_division=0)),
                        ("recall", sk.recall_score(y, called, zero_division=0)),
                        ("f1", sk.f1_score(y, called, zero_division=0)), ("mcc", sk.matthews_corrcoef(y, called))):
        assert metrics[name] == pytest.approx(value, abs=1e-9), name
    assert np.array_equal(predictions["prediction"], (predictions["score"] >= 0.5).astype(int))


def test_evaluate_rejects_a_folder_that_is_not_a_checkpoint(tmp_path, resources, capsys):
    rc = main(["evaluate", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o"),
               "--split", f"test={resources / INDTEST}"])
    assert rc == 1
    assert "not a fine-tuned checkpoint folder" in capsys.readouterr().err


def test_evaluate_a_released_finetuned_file(resources, tmp_path, tiny_k5_checkpoint):
    """A MirTar_5mer.pth-style file (ret.* + classifier.0/2.*) is evaluated without training."""
    from rnaret.checkpoint import load_encoder

    encoder = load_encoder(tiny_k5_checkpoint)
    g = torch.Generator().manual_seed(0)
    classifier = {"0.weight": torch.randn(16, 16, generator=g), "0.bias": torch.randn(16, generator=g),
                  "2.weight": torch.randn(2, 16, generator=g), "2.bias": torch.randn(2, generator=g)}
    state = {f"ret.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"classifier.{k}": v for k, v in classifier.items()})
    released = tmp_path / "MirTar_5mer.pth"
    torch.save(state, released)
    subset = tmp_path / "indtest.tsv"
    table = pd.read_csv(resources / INDTEST, sep="\t")
    both = pd.concat([table[table.label == 1].head(20), table[table.label == 0].head(20)])
    both.to_csv(subset, sep="\t", index=False)
    out = tmp_path / "published-k5"
    assert main(["evaluate", "--task", "interaction", "--checkpoint", str(released), "--out", str(out),
                 "--split", f"test={subset}", "--quiet"]) == 0
    assert read_metrics_tsv(out / "metrics.tsv")["n"] == 40
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    rows = read_pair_table(subset)
    tokens = torch.from_numpy(pair_tokens(rows[0].mirna, rows[0].site, 5))[None]
    with torch.no_grad():
        cls = encoder(tokens, return_logits=False).last_inner_state[:, 0]
        logits = torch.tanh(cls @ classifier["0.weight"].T + classifier["0.bias"]) @ classifier["2.weight"].T \
            + classifier["2.bias"]
    assert predictions["score"][0] == pytest.approx(float(torch.softmax(logits, -1)[0, 1]), abs=1e-5)
