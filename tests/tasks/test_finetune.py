"""The generic fine-tuning loop: batching, seeding, best-on-validation, freezing, checkpoints,
resume after SIGKILL and only from the same settings and inputs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rnaret.io.errors import InputError
from rnaret.model import EncoderConfig, build_encoder
from rnaret.model.onehot import OneHotConfig, OneHotModel
from rnaret.tasks import TASKS, get_task
from rnaret.checkpoint.finetuned import load_finetuned, save_finetuned
from rnaret.tasks.finetune import TaskModel, evaluate, finetune, make_batches, pick_device
from rnaret.tasks.run import initial_model

MAIN = "mirna_target/mirtar_deepmirtar_miraw.tsv"
ROOT = Path(__file__).resolve().parents[2]


def tiny_encoder(seed: int = 0, k: int = 5, dropout: float = 0.0):
    torch.manual_seed(seed)
    return build_encoder(EncoderConfig.paper(k, retnet_embed_dim=16, retnet_value_embed_dim=16,
                                             retnet_ffn_embed_dim=32, retnet_layers=2, retnet_retention_heads=2,
                                             dropout=dropout, activation_dropout=dropout))


@pytest.fixture(scope="module")
def pairs(resources):
    """Small real train/valid sets of miRNA-target pairs (both labels in each)."""
    task = get_task("interaction")
    table = pd.read_csv(resources / MAIN, sep="\t", dtype=str)
    out = {}
    for split, n in (("train", 96), ("valid", 64)):
        rows = pd.concat([table[(table.split == split) & (table.label == lab)].head(n // 2) for lab in "01"])
        out[split] = [e for e in task.read_split(resources / MAIN, split) if e.info["line"] - 2 in set(rows.index)]
    return out


def test_make_batches_respects_the_token_budget_and_covers_every_example():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=500)
    for batches in (make_batches(lengths, max_tokens=1000), make_batches(lengths, max_tokens=1000, rng=rng)):
        assert sorted(i for b in batches for i in b) == list(range(500))
        for b in batches:
            assert len(b) == 1 or len(b) * max(lengths[b]) <= 1000
    evaluation = make_batches(lengths, max_tokens=1000)
    flat = [i for b in evaluation for i in b]
    assert list(lengths[flat]) == sorted(lengths)
    fixed = make_batches(lengths, batch_size=32, rng=np.random.default_rng(1))
    assert sorted((len(b) for b in fixed), reverse=True) == [32] * (len(fixed) - 1) + [500 % 32]
    assert make_batches(lengths, batch_size=32, rng=np.random.default_rng(2)) != fixed
    # long examples alone exceed the budget but still form a batch
    assert make_batches([5000, 10], max_tokens=1000) == [[1], [0]]


def test_same_seed_same_weights(pairs):
    states = []
    for _ in range(2):
        task = get_task("interaction", {"epochs": 1, "lr": 1e-3, "batch_size": 32, "seed": 3})
        model = TaskModel(tiny_encoder(dropout=0.2), task.build_head(16))
        result = finetune(task, model, pairs["train"], pairs["valid"], progress=False,
                          device=torch.device("cpu"))
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    # the log rows carry the gradient norm (before clipping) and the skipped steps
    assert all(h["grad_norm"] > 0 and h["skipped_steps"] == 0 for h in result.history)


def test_best_checkpoint_is_chosen_on_validation_not_the_last(pairs):
    # training on flipped labels drives the validation AUC down: the first evaluation is the best
    flipped = [type(e)(e.id, e.tokens, 1 - e.target, e.info) for e in pairs["train"]]
    task = get_task("interaction", {"epochs": 6, "lr": 3e-3, "batch_size": 16, "evals_per_epoch": 1})
    model = TaskModel(tiny_encoder(), task.build_head(16))
    result = finetune(task, model, flipped, pairs["valid"], progress=False, device=torch.device("cpu"),
                      precision="fp32")  # the precision evaluate() below uses on the CPU
    aucs = [h["valid_auc"] for h in result.history]
    assert result.best["value"] == max(aucs)
    assert result.best["step"] == result.history[int(np.argmax(aucs))]["step"]
    assert result.best["step"] < result.history[-1]["step"] and aucs[-1] < max(aucs)
    # the returned model holds the best weights: it reproduces the best validation metrics
    _, metrics = evaluate(task, result.model, pairs["valid"], device=torch.device("cpu"), progress=False)
    assert metrics["auc"] == pytest.approx(result.best["value"], abs=1e-9)


def test_validation_every_n_epochs_and_always_in_the_last(pairs):
    base = {"epochs": 5, "lr": 1e-3, "batch_size": 64, "train_samples_per_epoch": 128}
    every = get_task("interaction", {**base, "eval_every_epochs": 2, "evals_per_epoch": 2})
    result = finetune(every, TaskModel(tiny_encoder(), every.build_head(16)), pairs["train"], pairs["valid"],
                      progress=False, device=torch.device("cpu"))
    assert [h["epoch"] for h in result.history] == [1.5, 2.0, 3.5, 4.0, 4.5, 5.0]
    # the same training: validating less changes nothing but which states are candidates
    each = get_task("interaction", {**base, "evals_per_epoch": 2})
    all_evals = finetune(each, TaskModel(tiny_encoder(), each.build_head(16)), pairs["train"], pairs["valid"],
                         progress=False, device=torch.device("cpu"))
    by_epoch = {h["epoch"]: h["valid_auc"] for h in all_evals.history}
    assert [h["valid_auc"] for h in result.history] == [by_epoch[h["epoch"]] for h in result.history]
    with pytest.raises(ValueError, match="setting eval_every_epochs: 0 is less than the minimum of 1"):
        bad = get_task("interaction", {**base, "eval_every_epochs": 0})
        finetune(bad, TaskModel(tiny_encoder(), bad.build_head(16)), pairs["train"], pairs["valid"],
                 progress=False, device=torch.device("cpu"))


def test_frozen_encoder_keeps_its_weights(pairs):
    task = get_task("interaction", {"epochs": 1, "lr": 1e-2, "batch_size": 32, "freeze_encoder": True})
    encoder = tiny_encoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    head = task.build_head(16)
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    finetune(task, TaskModel(encoder, head, freeze_encoder=True), pairs["train"], pairs["valid"], progress=False,
             device=torch.device("cpu"))
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert any(not torch.equal(head_before[k], v) for k, v in head.state_dict().items())


def test_saved_checkpoint_reloads_to_the_same_predictions(pairs, tmp_path):
    task = get_task("interaction", {"epochs": 1, "lr": 1e-3, "batch_size": 32})
    model = TaskModel(tiny_encoder(), task.build_head(16))
    result = finetune(task, model, pairs["train"], pairs["valid"], progress=False, device=torch.device("cpu"))
    path = save_finetuned(result.model, task, tmp_path / "ckpt", encoder_kind="retnet", init="tiny",
                          best=result.best, history=result.history)
    loaded_task, loaded, meta = load_finetuned(path)
    assert meta["best"]["step"] == result.best["step"] and loaded_task.settings == task.settings
    a, _ = evaluate(task, result.model, pairs["valid"], device=pick_device("cpu"), progress=False)
    b, _ = evaluate(loaded_task, loaded, pairs["valid"], device=pick_device("cpu"), progress=False)
    assert [r["score"] for r in a] == [r["score"] for r in b]


def test_onehot_control_trains_and_round_trips(resources, tmp_path):
    task = get_task("coding", {"epochs": 1, "lr": 3e-3, "max_tokens": 4000, "train_crop": 200, "onehot_dim": 32})
    everything = task.read_split(resources / "mrna_lncrna/mouse_test.fa.gz")
    examples = [e for label in (1, 0) for e in everything if e.info["label"] == label][:20] \
        + [e for e in everything if e.info["label"] == 0][:20]
    examples = examples[:15] + examples[20:35] + examples[15:20] + examples[35:]  # both classes in each part
    model, kind = initial_model(task, "onehot")
    assert kind == "onehot" and model.encoder.output_dim == 32
    assert sum(p.numel() for p in model.encoder.parameters()) == 0  # nothing learned in the encoder
    result = finetune(task, model, examples[:30], examples[30:], progress=False, device=torch.device("cpu"))
    path = save_finetuned(result.model, task, tmp_path / "onehot", encoder_kind=kind, init="onehot")
    _, loaded, _ = load_finetuned(path)
    assert isinstance(loaded.encoder, OneHotModel)
    a, _ = evaluate(task, result.model, examples[30:], device=torch.device("cpu"), progress=False)
    b, _ = evaluate(task, loaded, examples[30:], device=torch.device("cpu"), progress=False)
    assert [r["score"] for r in a] == [r["score"] for r in b]


def test_onehot_states_are_one_hot_and_zero_at_padding():
    model = OneHotModel(OneHotConfig(k=1))
    tokens = torch.tensor([[6, 7, 9, 0]])
    states = model(tokens).last_inner_state
    assert states.shape == (1, 4, 10)
    assert states[0, :3].argmax(-1).tolist() == [6, 7, 9] and states[0, :3].sum().item() == 3
    assert states[0, 3].abs().sum() == 0


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown interaction setting 'epoch'"):
        get_task("interaction", {"epoch": 3})
    with pytest.raises(ValueError, match="unknown coding preset 'huge'"):
        get_task("coding", {"preset": "huge"})
    laptop = get_task("interaction", {"preset": "laptop", "epochs": 7})
    assert laptop.settings["epochs"] == 7 and laptop.settings["lr"] == 1e-3
    paper = get_task("interaction")
    assert (paper.settings["lr"], paper.settings["batch_size"], paper.settings["epochs"]) == (1e-5, 64, 50)
    with pytest.raises(ValueError, match="setting lr_schedule: 'linear' is not one of"):
        get_task("interaction", {"lr_schedule": "linear"})
    with pytest.raises(ValueError, match="setting epochs: -3 is less than the minimum of 1"):
        get_task("interaction", {"epochs": -3})
    with pytest.raises(ValueError, match="unknown task 'folding'"):
        get_task("folding")
    assert {"interaction", "coding"} <= set(TASKS)


def test_encoder_k_must_match_the_task(tmp_path):
    from rnaret.checkpoint import save_encoder

    save_encoder(tiny_encoder(k=1), tmp_path / "k1")
    with pytest.raises(InputError, match="the encoder is k=1 but the coding task is set to k=5"):
        initial_model(get_task("coding"), str(tmp_path / "k1"))


def test_dataset_entry_and_settings_from_the_pipeline_config(root):
    from rnaret.tasks.run import dataset_entry, task_settings

    config = root / "config.yaml"
    assert dataset_entry("interaction", config, "mirtar_indtest")["finetuned_on"] == "mirtar"
    entry = dataset_entry("interaction", config, "mirtar", ["test=other.tsv#indtest"])
    assert entry["train"] == {"path": "resources/mirna_target/mirtar_deepmirtar_miraw.tsv", "split": "train"}
    assert entry["test"] == {"path": "other.tsv", "split": "indtest"}
    assert dataset_entry("coding", None, None, ["train=a.fa"]) == {"train": "a.fa"}
    with pytest.raises(InputError, match="give --dataset"):
        dataset_entry("coding", config, "human")
    with pytest.raises(InputError, match="NAME=PATH"):
        dataset_entry("coding", None, None, ["a.fa"])
    settings = task_settings("coding", config, ["epochs=2", "freeze_encoder=true", "train_crop=null"])
    assert settings == {"preset": "laptop", "epochs": 2, "freeze_encoder": True, "train_crop": None}
    assert get_task("coding", settings).settings["lr"] == get_task("coding", {"preset": "laptop"}).settings["lr"]


# ------------------------------------------------------------------ resume


@pytest.fixture(scope="module")
def run_files(resources, tmp_path_factory):
    """On disk: a tiny k=5 encoder with dropout 0.2 and a small interaction table (192 train and
    64 valid pairs, both labels in each)."""
    from rnaret.checkpoint import save_encoder

    folder = tmp_path_factory.mktemp("finetune_run")
    table = pd.read_csv(resources / MAIN, sep="\t", dtype=str)
    rows = pd.concat([table[(table.split == split) & (table.label == label)].head(n // 2)
                      for split, n in (("train", 192), ("valid", 64)) for label in "01"])
    rows.to_csv(folder / "pairs.tsv", sep="\t", index=False)
    save_encoder(tiny_encoder(dropout=0.2), folder / "encoder")
    return folder


def _finetune_cmd(files, out, *extra):
    return [sys.executable, "-m", "rnaret", "finetune", "--task", "interaction", "--init", str(files / "encoder"),
            "--out", str(out), "--split", f"train={files / 'pairs.tsv'}#train",
            "--split", f"valid={files / 'pairs.tsv'}#valid", "--set", "epochs=10", "--set", "batch_size=16",
            "--set", "lr=1e-3", "--threads", "1", "--quiet", "--precision", "fp32", "--device", "cpu", *extra]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _assert_same_checkpoint(a: Path, b: Path) -> None:
    """Same head and encoder tensors, bit for bit; same training log but for the wall-clock column."""
    for name in ("head.safetensors", "encoder/weights.safetensors"):
        ta, tb = _tensors(a / name), _tensors(b / name)
        assert ta.keys() == tb.keys()
        for key in ta:
            assert ta[key].numpy().tobytes() == tb[key].numpy().tobytes(), f"{name}: {key}"
    la = pd.read_csv(a / "train_log.tsv", sep="\t").drop(columns="seconds")
    lb = pd.read_csv(b / "train_log.tsv", sep="\t").drop(columns="seconds")
    pd.testing.assert_frame_equal(la, lb)


@pytest.mark.slow
def test_killed_finetuning_resumes_to_bit_identical_weights(run_files, tmp_path):
    """SIGKILL once the checkpoint of epoch 1 is complete (the line printed after its folder is
    renamed into place; read from the pipe, no polling); the rerun continues from it and ends with
    the weights and log of an unbroken run (dropout 0.2: masks from (seed, step, row))."""
    reference = subprocess.Popen(_finetune_cmd(run_files, tmp_path / "ref"), env=_env(), text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim = subprocess.Popen(_finetune_cmd(run_files, tmp_path / "killed"), env=_env(), text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = []
    for line in victim.stderr:
        seen.append(line)
        if "written (epoch 1," in line:
            break
    else:
        raise AssertionError("the run ended before its first checkpoint:\n" + "".join(seen[-20:]))
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    victim.stderr.close()
    assert not (tmp_path / "killed").exists()
    rerun = subprocess.run(_finetune_cmd(run_files, tmp_path / "killed"), env=_env(), capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from" in rerun.stderr and "(epoch 1, step 12)" in rerun.stderr
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    _assert_same_checkpoint(tmp_path / "ref", tmp_path / "killed")
    assert sorted(p.name for p in (tmp_path / "killed.train").iterdir()) == [
        "fingerprint.json", "step-000000120", "train_log.tsv"]  # the newest epoch's checkpoint only


def test_finetuning_resumes_only_from_the_same_settings_and_inputs(run_files, tmp_path, capsys):
    from rnaret.tasks.run import run_finetune

    entry = {"train": {"path": str(run_files / "pairs.tsv"), "split": "train"},
             "valid": {"path": str(run_files / "pairs.tsv"), "split": "valid"}}
    settings = {"epochs": 2, "batch_size": 32, "lr": 1e-3}

    def run(out, table_entry=entry, **changes):
        return run_finetune("interaction", table_entry, str(run_files / "encoder"), out,
                            settings={**settings, **changes}, device="cpu", progress=False, precision="fp32")

    out = tmp_path / "ft"
    first = run(out)
    capsys.readouterr()
    # the same run again: continued from its last checkpoint (nothing left to train), same result
    again = run(out)
    err = capsys.readouterr().err
    assert "resuming from" in err and "(epoch 2, step 12)" in err and again == first
    # another setting: the run folder is replaced, a fresh run starts
    run(out, lr=2e-3)
    err = capsys.readouterr().err
    assert "(settings.lr changed)" in err and "resuming" not in err
    assert (tmp_path / "ft.train.replaced" / "step-000000012").is_dir()
    # another training file content (one label flipped), same path: a fresh run too
    table = pd.read_csv(run_files / "pairs.tsv", sep="\t", dtype=str)
    table.loc[0, "label"] = "1" if table.loc[0, "label"] == "0" else "0"
    edited = tmp_path / "pairs.tsv"
    table.to_csv(edited, sep="\t", index=False)
    moved = {"train": {"path": str(edited), "split": "train"}, "valid": entry["valid"]}
    run(out, moved, lr=2e-3)
    err = capsys.readouterr().err
    assert "(inputs.train.digest changed)" in err
