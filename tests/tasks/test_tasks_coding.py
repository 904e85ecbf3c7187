"""mRNA/lncRNA: CDS labels from the headers, crops, the held-out validation split, and a brief
fine-tune + evaluation + `rnaret classify` on the bundled GENCODE mouse transcripts."""
from __future__ import annotations

import gzip
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from rnaret.checkpoint import save_encoder
from rnaret.cli import main
from rnaret.io.errors import InputError
from rnaret.io.fasta import read_fasta, write_fasta
from rnaret.metrics import read_metrics_tsv
from rnaret.model import EncoderConfig, build_encoder
from rnaret.tasks import get_task
from rnaret.io.transcripts import read_transcripts

TRAIN = "mrna_lncrna/mouse_train.fa.gz"
TEST = "mrna_lncrna/mouse_test.fa.gz"


def test_labels_and_cds_agree_with_the_index_table(resources):
    index = pd.read_csv(resources / "mrna_lncrna/mouse_train.index.tsv", sep="\t")
    transcripts = list(read_transcripts(resources / TRAIN))
    assert len(transcripts) == len(index) == 4860
    assert [t.id.split("|")[0] for t in transcripts] == index["transcript_id"].tolist()
    assert [t.label for t in transcripts] == (index["label"] == "pc").astype(int).tolist()
    coding = index[index["label"] == "pc"]
    expected = list(zip(coding["cds_start"].astype(int), coding["cds_end"].astype(int)))
    assert [t.cds for t in transcripts if t.cds] == expected


def test_per_position_labels_mark_the_cds_one_token_per_nucleotide(resources):
    task = get_task("coding")
    examples = task.read_split(resources / TEST)
    assert len(examples) == 1000
    for example in itertools.islice(examples, 200):
        n = example.info["length"]
        assert len(example.tokens) == len(example.target) == n
        if example.info["label"] == 1:
            start, end = example.info["cds_start"], example.info["cds_end"]
            assert example.target[start - 1:end].min() == 1.0 and example.target.sum() == end - start + 1
        else:
            assert example.target.sum() == 0


@pytest.mark.parametrize("header, sequence, message", [
    ("t1|g|x|CDS:5-80| pc", "ACGT" * 10, "not inside the sequence"),
    ("t1|g|x|CDS:9-3| pc", "ACGT" * 10, "not inside the sequence"),
    ("t1|g|x|CDS:a-b| pc", "ACGT" * 10, "malformed CDS field"),
    ("t1|g|x|UTR5:1-10| pc", "ACGT" * 10, "tagged 'pc'"),
    ("t1|g|x|CDS:1-12| lnc", "ACGT" * 10, "tagged 'lnc'"),
    ("t1|g|x| lnc", "ACG", "shorter than k=5"),
])
def test_bad_transcripts_are_input_errors_naming_the_record(tmp_path, header, sequence, message):
    path = tmp_path / "bad.fa"
    path.write_text(f">ok|g| lnc\n{'ACGT' * 10}\n>{header}\n{sequence}\n")
    with pytest.raises(InputError, match=message) as info:
        get_task("coding").read_split(path)
    assert info.value.record == header.split()[0] and info.value.line == 3


def test_training_crops_keep_the_full_transcript_tokens_and_labels(resources):
    task = get_task("coding", {"train_crop": 100})
    example = next(e for e in task.read_split(resources / TEST) if e.info["label"] == 1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        view = task.train_view(example, rng)
        start = next(s for s in range(len(example.tokens) - 99)
                     if np.array_equal(example.tokens[s:s + 100], view.tokens))
        assert np.array_equal(view.target, example.target[start:start + 100])


def test_valid_is_held_out_by_transcript_with_a_fixed_seed(resources):
    entry = {"train": str(resources / TEST)}
    a = get_task("coding", {"valid_fraction": 0.2}).load_dataset(entry)
    b = get_task("coding", {"valid_fraction": 0.2}).load_dataset(entry)
    ids = lambda xs: [x.id for x in xs]  # noqa: E731
    assert ids(a["valid"]) == ids(b["valid"]) and ids(a["train"]) == ids(b["train"])
    assert not set(ids(a["valid"])) & set(ids(a["train"]))
    assert len(a["valid"]) + len(a["train"]) == 1000 and 150 < len(a["valid"]) < 250
    other = get_task("coding", {"valid_fraction": 0.2, "seed": 1}).load_dataset(entry)
    assert ids(other["valid"]) != ids(a["valid"])


@pytest.fixture(scope="module")
def tiny_k5_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig.paper(5, retnet_embed_dim=16, retnet_value_embed_dim=16,
                                                retnet_ffn_embed_dim=32, retnet_layers=2,
                                                retnet_retention_heads=2, dropout=0.0, activation_dropout=0.0,
                                                chunk_size=64, parallel_max_len=128))
    return save_encoder(encoder, tmp_path_factory.mktemp("pretrained") / "rnaret-k5")


def subset_fasta(source, path, n_per_class, max_length=1500):
    """The first n coding and n non-coding records of ``source`` up to ``max_length`` nt."""
    picked = {0: [], 1: []}
    for record in read_fasta(source):
        label = int("CDS:" in record.description)
        if len(picked[label]) < n_per_class and len(record.sequence) <= max_length:
            picked[label].append((record.description, record.sequence))
    records = [r for pair in zip(picked[1], picked[0]) for r in pair]
    with gzip.open(path, "wt") as handle:
        write_fasta(records, handle)
    return records


def test_finetune_evaluate_and_classify_coding(resources, tmp_path, tiny_k5_checkpoint):
    train = tmp_path / "train.fa.gz"
    subset_fasta(resources / TRAIN, train, 24)
    test = tmp_path / "test.fa.gz"
    test_records = subset_fasta(resources / TEST, test, 10)
    checkpoint = tmp_path / "checkpoint"
    assert main(["finetune", "--task", "coding", "--init", str(tiny_k5_checkpoint), "--out", str(checkpoint),
                 "--split", f"train={train}", "--set", "preset=laptop", "--set", "epochs=2",
                 "--set", "train_samples_per_epoch=null", "--set", "valid_max_examples=null",
                 "--set", "train_crop=200", "--set", "valid_fraction=0.25", "--set", "eval_every_epochs=1",
                 "--quiet"]) == 0
    log = pd.read_csv(checkpoint / "train_log.tsv", sep="\t")
    assert len(log) == 2 and (log["valid_n"] > 0).all() and (log["valid_n"] < 48).all()

    out = tmp_path / "evaluation"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--out", str(out), "--split", f"test={test}",
                 "--quiet", "--precision", "fp32"]) == 0
    metrics = read_metrics_tsv(out / "metrics.tsv")
    assert (metrics["n"], metrics["n_pos"], metrics["n_neg"]) == (20, 10, 10)
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    # every metric is the one scikit-learn computes from the predictions beside it
    from sklearn import metrics as sk

    y, score = predictions["label"], predictions["score"]
    called = (score >= 0.5).astype(int)
    assert predictions["prediction"].tolist() == called.tolist()
    for name, value in (("accuracy", sk.accuracy_score(y, called)), ("auc", sk.roc_auc_score(y, score)),
                        ("precision", sk.precision_score(y, called, zero_division=0)),
                        ("recall", sk.recall_score(y, called, zero_division=0)),
                        ("f1", sk.f1_score(y, called, zero_division=0)), ("mcc", sk.matthews_corrcoef(y, called))):
        assert metrics[name] == pytest.approx(value, abs=1e-6), name
    assert predictions["id"].tolist() == [header.split()[0] for header, _ in test_records]
    assert predictions["length"].tolist() == [len(seq) for _, seq in test_records]
    assert predictions["label"].tolist() == [1, 0] * 10
    assert (out / "roc.png").stat().st_size > 1000

    # classify the same transcripts (no labels needed): same scores, per-position track
    plain = tmp_path / "user.fa"
    plain.write_text("".join(f">{h.split('|')[0]} {h}\n{s.replace('T', 'U')}\n" for h, s in test_records))
    table, track = tmp_path / "coding.tsv", tmp_path / "positions.tsv.gz"
    assert main(["classify", str(plain), "--checkpoint", str(checkpoint), "--output", str(table),
                 "--positions", str(track), "--quiet", "--precision", "fp32"]) == 0
    calls = pd.read_csv(table, sep="\t")
    assert calls.columns.tolist() == ["id", "length", "score", "prediction", "window_start"]
    assert calls["id"].tolist() == [h.split("|")[0] for h, _ in test_records]
    np.testing.assert_allclose(calls["score"], predictions["score"], rtol=1e-4, atol=1e-6)
    assert set(calls["prediction"]) <= {"coding", "noncoding"}
    with gzip.open(track, "rt") as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle][1:]
    assert [len(r[1].split(",")) for r in rows] == [len(s) for _, s in test_records]
    for (_, probs), score, start in zip(rows, calls["score"], calls["window_start"]):
        p = np.array(probs.split(","), dtype=float)
        assert p[start - 1:start + 29].mean() == pytest.approx(score, abs=2e-3)


def test_classify_rejects_bad_input(tmp_path, tiny_k5_checkpoint, capsys):
    from rnaret.checkpoint import load_encoder
    from rnaret.checkpoint.finetuned import save_finetuned
    from rnaret.tasks.finetune import TaskModel

    bad = tmp_path / "bad.fa"
    bad.write_text(">x\nACGTACGTAC\n>y\nACGTXXACGT\n")
    good = tmp_path / "good.fa"
    good.write_text(">x\nACGTACGTAC\n")
    output = tmp_path / "o.tsv"
    assert main(["classify", str(good), "--checkpoint", str(tmp_path), "--output", str(output)]) == 1
    assert "neither a fine-tuned checkpoint folder" in capsys.readouterr().err
    task = get_task("coding")
    encoder = load_encoder(tiny_k5_checkpoint)
    checkpoint = save_finetuned(TaskModel(encoder, task.build_head(16)), task, tmp_path / "ckpt",
                                encoder_kind="retnet", init=str(tiny_k5_checkpoint))
    assert main(["classify", str(bad), "--checkpoint", str(checkpoint), "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert "record 'y'" in err and "line 4, column 5" in err and "'X' at position 5" in err
    assert not output.exists()
    interaction = get_task("interaction")
    other = save_finetuned(TaskModel(encoder, interaction.build_head(16)), interaction, tmp_path / "int",
                           encoder_kind="retnet", init=str(tiny_k5_checkpoint))
    assert main(["classify", str(good), "--checkpoint", str(other), "--output", str(output)]) == 1
    assert "a fine-tuned interaction checkpoint, not a coding one" in capsys.readouterr().err
