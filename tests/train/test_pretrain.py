"""MLM pretraining on real shards of the bundled RNAcentral sample: learning, resume after
SIGKILL, 2-process DDP against 1 process (with dropout), resume only from the same settings and
inputs, non-finite steps, errors naming files, released-weights conversion, the paper preset's
step against the published run's."""
from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnaret.io.errors import InputError
from rnaret.io.fasta import write_fasta
from rnaret.train.config import PretrainConfig, parse_assignments, parse_model_name, preset
from rnaret.train.curves import COLUMNS, read_metrics
from rnaret.train.schedule import lr_at

ROOT = Path(__file__).resolve().parents[2]
N_RECORDS = 2500  # the first records of the sample: every RNA type, 15 to ~10,000 nt


@pytest.fixture(scope="module")
def corpus_fasta(resources, tmp_path_factory):
    """The first N_RECORDS records of the bundled sample as a FASTA file."""
    records, header, chunks = [], None, []
    with gzip.open(resources / "rnacentral" / "rnacentral_sample.fa.gz", "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                if header is not None:
                    records.append((header, "".join(chunks)))
                    if len(records) == N_RECORDS:
                        break
                header, chunks = line[1:].strip(), []
            else:
                chunks.append(line.strip())
    path = tmp_path_factory.mktemp("corpus") / "subset.fa"
    with open(path, "w") as out:
        write_fasta(records, out)
    return path


def _shards(corpus_fasta, tmp_path_factory, k):
    from rnaret.data.shards import write_shards

    out = tmp_path_factory.mktemp(f"shards_k{k}") / f"k{k}"
    write_shards(corpus_fasta, out, k, tokens_per_shard=200_000, valid_fraction=0.1, seed=0,
                 show_progress=False)
    return out


@pytest.fixture(scope="module")
def shards_k1(corpus_fasta, tmp_path_factory):
    return _shards(corpus_fasta, tmp_path_factory, 1)


@pytest.fixture(scope="module")
def shards_k3(corpus_fasta, tmp_path_factory):
    return _shards(corpus_fasta, tmp_path_factory, 3)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args):
    return [sys.executable, "-m", "rnaret", *map(str, args)]


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "weights.safetensors"))


# ------------------------------------------------------------------ config and schedule


def test_paper_preset_has_published_hyperparameters():
    cfg = preset("paper", 1)
    assert (cfg.lr, cfg.weight_decay, cfg.t0, cfg.eta_min) == (1e-4, 0.01, 50_000, 1e-5)
    assert (cfg.max_rows, cfg.max_train_len) == (100, 2000)  # 100 sequences of up to 2,000 tokens
    assert cfg.schedule == "cosine_restarts" and cfg.max_steps == 600_000 and cfg.checkpoint_every == 1000
    from rnaret.train.pretrain import build_model

    sizes = {k: sum(p.numel() for p in build_model(preset("paper", k)).parameters()) for k in (1, 3, 5)}
    assert sizes == {1: 11_810_688, 3: 11_856_768, 5: 12_594_048}  # the published counts


def test_paper_preset_step_holds_what_a_published_step_held(resources):
    """On the bundled sample's length mix (16,201 records, 15 to 10,449 nt): the published run's
    step is 100 random records, each cut to 2,000 tokens and padded to 2,000 (DataLoader,
    batch_size 100); ours, over one epoch of the paper preset's batch stream, has the same number
    of steps, 100 rows in every step but the epoch's last (as the published last batch), and the
    same real tokens, so the same mean real tokens per step (benchmarks/paper_step.py prints it)."""
    import pandas as pd

    from rnaret.train.data import BatchStream, effective_lengths

    lengths = pd.read_csv(resources / "rnacentral" / "rnacentral_sample.index.tsv", sep="\t")["length"].to_numpy()
    n = len(lengths)  # k = 1: one token per nucleotide
    cfg = preset("paper", 1)
    # the published epoch: a random permutation cut into batches of 100, each row cut to 2,000
    order = np.random.default_rng(0).permutation(n)
    published = [np.minimum(lengths[order[i:i + 100]], 2000) for i in range(0, n, 100)]
    stream = BatchStream(effective_lengths(lengths, cfg.max_train_len), cfg.max_tokens, cfg.seed, cfg.max_rows)
    ours = [np.minimum(lengths[stream.next()], cfg.max_train_len) for _ in range(len(published))]
    assert stream.state() == {"epoch": 0, "offset": len(published)}  # one epoch exactly
    assert sorted(len(b) for b in ours) == sorted(len(b) for b in published) == [n % 100] + [100] * (n // 100)
    assert sorted(np.concatenate(ours).tolist()) == sorted(np.concatenate(published).tolist())
    real_ours = np.mean([b.sum() for b in ours])
    real_published = np.mean([b.sum() for b in published])
    assert real_ours == pytest.approx(real_published, rel=1e-12)
    assert 40_000 < real_ours < 45_000  # ~42,300 real tokens per step on this length mix
    padded_ours = np.mean([b.max() * len(b) for b in ours])
    assert padded_ours < 0.25 * 200_000  # the published step padded every row to 2,000
    assert max(b.max() * len(b) for b in ours) <= cfg.max_tokens


def test_config_overrides_and_names():
    assert parse_assignments(["lr=3e-4", "encoder.retnet_layers=4", "max_train_len=null"]) == {
        "lr": 3e-4, "encoder": {"retnet_layers": 4}, "max_train_len": None}
    cfg = preset("laptop", 5, encoder={"retnet_layers": 2}, max_steps=7)
    assert cfg.encoder["retnet_layers"] == 2 and cfg.encoder["retnet_embed_dim"] == 64
    assert cfg.encoder_config().vocab_size == 4**5 + 6 and cfg.max_steps == 7
    assert PretrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert parse_model_name("rnaret-k3") == ("retnet", 3)
    assert parse_model_name("transformer-k1") == ("transformer", 1)
    with pytest.raises(ValueError, match="unknown pretrain config keys"):
        preset("laptop", 1, learning_rate=1.0)
    with pytest.raises(ValueError, match="rnaret-k"):
        parse_model_name("rnaret-k2")


def test_schedule_is_torch_cosine_warm_restarts():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=50, T_mult=1, eta_min=1e-5)
    for step in range(160):
        assert math.isclose(lr_at(step, "cosine_restarts", 1e-3, t0=50, eta_min=1e-5),
                            opt.param_groups[0]["lr"], rel_tol=1e-9, abs_tol=1e-12)
        opt.step()
        ref.step()
    # warmup + cosine: rises linearly, peaks at the base rate, ends at eta_min
    lrs = [lr_at(s, "warmup_cosine", 1e-3, warmup=10, total=100, eta_min=1e-5) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[100] == pytest.approx(1e-5)


# ------------------------------------------------------------------ learning


@pytest.mark.slow
def test_laptop_preset_learns_on_the_bundled_sample(shards_k1, tmp_path):
    """Validation MLM loss ends below the unigram entropy of the validation tokens and is still
    falling; metrics.tsv, loss_curve.png, summary.json and the checkpoint are written."""
    from rnaret.checkpoint import load_encoder
    from rnaret.train.pretrain import pretrain

    cfg = preset("laptop", 1, max_steps=40, eval_every=20, warmup_steps=5, valid_max_batches=2)
    out = tmp_path / "rnaret-k1"
    result = pretrain(cfg, shards_k1, out, threads=2, show_progress=False)
    rows = read_metrics(out / "metrics.tsv")
    valid = [(r["step"], r["valid_loss"]) for r in rows if r["valid_loss"] is not None]
    assert [s for s, _ in valid] == [0, 20, 40]
    entropy = result.unigram_entropy
    assert 1.3 < entropy < math.log(4)  # k=1: four nucleotides, not uniform
    assert valid[-1][1] < entropy, f"validation loss {valid[-1][1]:.4f} not below unigram entropy {entropy:.4f}"
    assert valid[-1][1] < valid[-2][1] < valid[0][1]  # still falling at the end
    train_rows = [r for r in rows if r["train_loss"] is not None]
    assert len(train_rows) == 4 and all(0.12 < r["masked_fraction"] <= 0.15 for r in train_rows)
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in train_rows)
    assert all(r["grad_norm"] > 0 and r["skipped_steps"] == 0 for r in train_rows)
    assert (out / "metrics.tsv").read_text().splitlines()[0].split("\t") == list(COLUMNS)
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["valid_loss"] == pytest.approx(valid[-1][1])
    model = load_encoder(out / "checkpoint")
    assert model.config.retnet_layers == 3 and model.config.k == 1
    # the run folder keeps the last checkpoints and the best
    assert sorted(p.name for p in (out / "train").glob("step-*")) == ["step-000000040"]
    assert json.loads((out / "train" / "best" / "best.json").read_text())["step"] == 40


# ------------------------------------------------------------------ resume after SIGKILL


def _tiny_args(shards, out, steps, *extra):
    return _cli("pretrain", "--shards", shards, "--out", out, "--config-preset", "tiny",
                "--max-steps", steps, "--threads", 1, "--no-progress", *extra)


def wait_for_line(proc, needle: str) -> list[str]:
    """Read ``proc``'s stderr line by line (blocking: no polling, no sleep) until a line holds
    ``needle``; return the lines read. Fails when the process ends first."""
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if needle in line:
            return lines
    proc.wait()
    raise AssertionError(f"the process ended (code {proc.returncode}) before printing {needle!r}:\n"
                         + "".join(lines[-20:]))


def assert_same_tensors(a: dict, b: dict, what: str) -> None:
    """Bit-identical tensors (bytes, not file bytes: safetensors writes its header in no fixed order)."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
        assert a[key].numpy().tobytes() == b[key].numpy().tobytes(), f"{key} differs from {what}"


@pytest.mark.slow
def test_killed_run_resumes_to_bit_identical_weights(shards_k1, tmp_path):
    """SIGKILL after the checkpoint of step 10 is complete (the run prints that line after the
    checkpoint folder is renamed into place); the rerun resumes and ends bit-identical, with dropout
    0.2 (per-row masks from (seed, step, row): nothing to restore for them)."""
    steps = 60
    extra = ("--set", "checkpoint_every=5", "--set", "eval_every=20", "--set", "encoder.dropout=0.2",
             "--set", "encoder.activation_dropout=0.2", "--precision", "fp32")
    reference = subprocess.Popen(_tiny_args(shards_k1, tmp_path / "ref", steps, *extra), env=_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = tmp_path / "killed"
    victim = subprocess.Popen(_tiny_args(shards_k1, killed, steps, *extra), env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_line(victim, "step-000000010 written")
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    victim.stderr.close()
    assert not (killed / "checkpoint").exists()  # killed before the end
    rerun = subprocess.run(_tiny_args(shards_k1, killed, steps, *extra), env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from" in rerun.stderr and "fresh run" not in rerun.stderr
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    assert "resuming" not in err
    assert_same_tensors(_weights(tmp_path / "ref" / "checkpoint"), _weights(killed / "checkpoint"),
                        "the uninterrupted run")
    ra, rb = read_metrics(tmp_path / "ref" / "metrics.tsv"), read_metrics(killed / "metrics.tsv")
    for col in ("step", "train_loss", "valid_loss", "masked_accuracy", "lr", "masked_fraction",
                "grad_norm", "skipped_steps"):
        assert [r[col] for r in ra] == [r[col] for r in rb], col
    assert len(list((killed / "train").glob("step-*"))) == 2  # keep_last of the tiny preset


# ------------------------------------------------------------------ DDP


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_two_process_ddp_matches_one_process(shards_k1, tmp_path, dropout):
    """Launched as on GPUs (rnaret launch -> torchrun, gloo on CPU); same global batches.

    Accumulation of 2 micro-batches, and the chunkwise form for rows over 64 tokens, whose
    choice differs between a rank's share and the whole batch. With dropout 0.2 the masks are
    drawn per row from (seed, step, global row), so both runs drop the same elements."""
    extra = ("--device", "cpu", "--precision", "fp32", "--set", "accumulate=2",
             "--set", "encoder.parallel_max_len=64", "--set", "eval_every=3",
             "--set", f"encoder.dropout={dropout}", "--set", f"encoder.activation_dropout={dropout}")
    runs = {}
    for nproc in (1, 2):
        out = tmp_path / f"n{nproc}"
        cmd = _cli("launch", "--nproc", nproc, "--", *_tiny_args(shards_k1, out, 6, *extra)[3:])
        runs[nproc] = (out, subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True))
    for nproc, (out, proc) in runs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{nproc} process(es): {err[-3000:]}"
    one, two = _weights(runs[1][0] / "checkpoint"), _weights(runs[2][0] / "checkpoint")
    start = _weights_after_init(shards_k1)
    moved = max((one[k] - start[k]).abs().max().item() for k in one)
    assert moved > 1e-3  # the runs did train
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=2e-6, msg=key)
    r1, r2 = read_metrics(runs[1][0] / "metrics.tsv"), read_metrics(runs[2][0] / "metrics.tsv")
    assert [r["step"] for r in r1] == [r["step"] for r in r2]
    for a, b in zip(r1, r2):
        for col in ("train_loss", "valid_loss", "masked_fraction"):
            if a[col] is not None:
                assert b[col] == pytest.approx(a[col], rel=1e-5), (a["step"], col)


def _weights_after_init(shards):
    """The tiny preset's initial weights (seed 0), as every run starts."""
    from rnaret.train.pretrain import build_model

    torch.manual_seed(0)
    model = build_model(preset("tiny", 1, encoder={"parallel_max_len": 64}))
    # (dropout does not change the initial weights)
    return {k: v.detach() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------ errors naming files


def _run_tiny(shards, out, steps=5, restart=False, **overrides):
    from rnaret.train.pretrain import pretrain

    cfg = preset("tiny", 1, max_steps=steps, **{"precision": "fp32", **overrides})
    return pretrain(cfg, shards, out, threads=1, show_progress=False, restart=restart)


def test_missing_or_corrupt_shards_name_the_file(shards_k1, tmp_path):
    import shutil

    with pytest.raises(InputError, match="does-not-exist"):
        _run_tiny(tmp_path / "does-not-exist", tmp_path / "out")
    broken = tmp_path / "broken"
    shutil.copytree(shards_k1, broken)
    shard = sorted((broken / "train").glob("tokens-*.npy"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])  # truncated
    with pytest.raises(InputError, match=shard.name) as err:
        _run_tiny(broken, tmp_path / "out")
    assert str(shard) in str(err.value)
    shard.unlink()
    with pytest.raises(InputError, match="missing") as err:
        _run_tiny(broken, tmp_path / "out")
    assert str(shard) in str(err.value)
    with pytest.raises(InputError, match="k=1"):
        from rnaret.train.pretrain import pretrain

        pretrain(preset("tiny", 3, max_steps=1), shards_k1, tmp_path / "out3", show_progress=False)


def test_corrupt_or_missing_checkpoint_names_the_file(shards_k1, tmp_path):
    out = tmp_path / "run"
    _run_tiny(shards_k1, out, steps=5, schedule="constant")  # more steps later continue this run
    ckpt = out / "train" / "step-000000005"
    state = ckpt / "state.pt"
    state.write_bytes(state.read_bytes()[:500])
    with pytest.raises(InputError, match="state.pt") as err:
        _run_tiny(shards_k1, out, steps=10, schedule="constant")
    assert str(state) in str(err.value)
    state.unlink()
    with pytest.raises(InputError, match="missing") as err:
        _run_tiny(shards_k1, out, steps=10, schedule="constant")
    assert str(state) in str(err.value)
    weights = ckpt / "model" / "weights.safetensors"
    weights.write_bytes(b"\0" * 64)
    with pytest.raises(InputError) as err:
        _run_tiny(shards_k1, out, steps=10, schedule="constant")
    assert str(weights) in str(err.value)


# ------------------------------------------------------------------ resume only what the run started from


def test_resume_only_from_the_same_settings(shards_k1, tmp_path, capsys):
    """A rerun continues the run folder only when its fingerprint matches; otherwise the folder
    is moved to train.replaced and a fresh run starts, naming what changed."""
    out = tmp_path / "run"
    _run_tiny(shards_k1, out, steps=5, schedule="constant")
    # more steps under a schedule that ignores max_steps, and another eval interval: a continuation
    more = _run_tiny(shards_k1, out, steps=8, schedule="constant", eval_every=2)
    assert more.resumed_from.name == "step-000000005" and more.step == 8 and more.replaced is None
    capsys.readouterr()
    # another learning rate: a fresh run, equal to one started in an empty folder
    fresh = _run_tiny(shards_k1, out, steps=8, schedule="constant", lr=1e-2)
    assert fresh.resumed_from is None and fresh.replaced == out / "train.replaced"
    assert "(settings.lr changed)" in capsys.readouterr().err
    assert (out / "train.replaced" / "step-000000008").is_dir()  # the previous run, kept aside
    clean = _run_tiny(shards_k1, tmp_path / "clean", steps=8, schedule="constant", lr=1e-2)
    assert clean.resumed_from is None and clean.replaced is None
    assert_same_tensors(_weights(out / "checkpoint"), _weights(tmp_path / "clean" / "checkpoint"), "a clean run")
    # the LR schedule: under warmup_cosine, max_steps shapes the schedule, so a longer run is another run
    _run_tiny(shards_k1, tmp_path / "warm", steps=5)
    longer = _run_tiny(shards_k1, tmp_path / "warm", steps=8)
    assert longer.resumed_from is None and "(settings.max_steps changed)" in capsys.readouterr().err
    # the validation set
    other_valid = _run_tiny(shards_k1, tmp_path / "warm", steps=8, valid_max_batches=1)
    assert other_valid.resumed_from is None
    err = capsys.readouterr().err
    assert "inputs.validation_batches" in err and "settings.valid_max_batches" in err
    # --restart: deleted, no copy kept
    shutil.rmtree(out / "train.replaced")
    again = _run_tiny(shards_k1, out, steps=8, schedule="constant", restart=True)
    assert again.resumed_from is None and again.replaced is None and not (out / "train.replaced").exists()


@pytest.mark.slow
def test_rebuilt_shards_never_return_the_old_weights(corpus_fasta, shards_k1, tmp_path, capsys):
    """A finished run whose shards are rebuilt from other data: the rerun does not resume at
    max_steps (which returned the old weights as the new checkpoint) but trains afresh on the new
    shards, and ends with the weights of a clean run on them."""
    from rnaret.data.shards import write_shards

    shards = tmp_path / "shards" / "k1"
    shutil.copytree(shards_k1, shards)
    out = tmp_path / "run"
    old = _run_tiny(shards, out, steps=6)
    old_weights = _weights(out / "checkpoint")
    # the same records split another way: another index, another validation split
    write_shards(corpus_fasta, shards, 1, tokens_per_shard=200_000, valid_fraction=0.1, seed=1,
                 show_progress=False)
    capsys.readouterr()
    new = _run_tiny(shards, out, steps=6)
    err = capsys.readouterr().err
    assert new.resumed_from is None and new.replaced == out / "train.replaced"
    assert "inputs.shards" in err and "starting a fresh run" in err and "resuming" not in err
    assert new.valid_loss != old.valid_loss
    new_weights = _weights(out / "checkpoint")
    assert any(not torch.equal(new_weights[k], old_weights[k]) for k in old_weights)
    _run_tiny(shards, tmp_path / "clean", steps=6)
    assert_same_tensors(new_weights, _weights(tmp_path / "clean" / "checkpoint"), "a clean run on the new shards")
    # the old run is kept aside, not lost
    assert_same_tensors(old_weights, _weights(out / "train.replaced" / "step-000000006" / "model"), "the old run")


def test_bf16_run_resumes_bit_identical(shards_k1, tmp_path):
    """Under bf16 autocast too (what `auto` picks on a CPU with bf16 matrix units), a run
    continued from its step-5 checkpoint ends with the weights of an uninterrupted run."""
    whole = _run_tiny(shards_k1, tmp_path / "whole", steps=10, schedule="constant", precision="bf16",
                      encoder={"dropout": 0.2, "activation_dropout": 0.2})
    _run_tiny(shards_k1, tmp_path / "parts", steps=5, schedule="constant", precision="bf16",
              encoder={"dropout": 0.2, "activation_dropout": 0.2})
    parts = _run_tiny(shards_k1, tmp_path / "parts", steps=10, schedule="constant", precision="bf16",
                      encoder={"dropout": 0.2, "activation_dropout": 0.2})
    assert whole.resumed_from is None and parts.resumed_from.name == "step-000000005"
    assert parts.valid_loss == whole.valid_loss
    assert_same_tensors(_weights(tmp_path / "whole" / "checkpoint"), _weights(tmp_path / "parts" / "checkpoint"),
                        "the uninterrupted bf16 run")


def test_half_written_checkpoint_is_ignored(shards_k1, tmp_path):
    """A temporary folder left by a kill during a checkpoint write is removed, not loaded."""
    out = tmp_path / "run"
    _run_tiny(shards_k1, out, steps=5, schedule="constant")
    partial = out / "train" / ".step-000000010.abcd"
    (partial / "model").mkdir(parents=True)
    (partial / "state.pt").write_bytes(b"junk")
    result = _run_tiny(shards_k1, out, steps=10, schedule="constant")
    assert result.resumed_from.name == "step-000000005"
    assert not partial.exists()


# ------------------------------------------------------------------ non-finite steps


def test_nonfinite_steps_are_skipped_logged_and_stop_the_run(shards_k1, tmp_path, capsys):
    """Initial weights holding a NaN: every step's loss is NaN. Each step is skipped (the weights
    and the optimizer do not move), logged, and the run stops with an error after
    max_nonfinite_steps in a row."""
    from rnaret.checkpoint import save_encoder
    from rnaret.train.guard import NonFiniteError
    from rnaret.train.pretrain import build_model

    torch.manual_seed(0)
    model = build_model(preset("tiny", 1))
    with torch.no_grad():
        model.layers[0].ffn.fc2.weight[0, 0] = float("nan")
    save_encoder(model, tmp_path / "nan-init")
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match="4 optimizer steps in a row"):
        _run_tiny(shards_k1, out, steps=20, init_from=str(tmp_path / "nan-init"), max_nonfinite_steps=4,
                  checkpoint_every=2, log_every=2, eval_every=100)
    err = capsys.readouterr().err
    assert [f"step {s} skipped" in err for s in (1, 2, 3, 4)] == [True] * 4
    # the checkpoints of the skipped steps hold the initial weights, and an optimizer that never stepped
    saved = _weights(out / "train" / "step-000000004" / "model")
    for key, value in model.state_dict().items():
        assert torch.equal(saved[key].nan_to_num(), value.nan_to_num()), key
    state = torch.load(out / "train" / "step-000000004" / "state.pt", weights_only=True)
    assert all(float(s["step"]) == 0 for s in state["optimizer"]["state"].values())
    rows = read_metrics(out / "train" / "metrics.tsv")
    assert [r["skipped_steps"] for r in rows if r["step"] > 0] == [2, 2]
    assert all(r["train_loss"] is None and r["grad_norm"] is None for r in rows if r["step"] > 0)


# ------------------------------------------------------------------ released weights


def test_init_from_a_released_pth_converts_and_validates(reference, shards_k3, tmp_path):
    """A published-style .pth (bare encoder keys, as pretrain_{k}mer.pth) becomes our checkpoint."""
    from safetensors.torch import load_file

    from rnaret.train.pretrain import pretrain

    published = load_file(str(reference / "official_vectors" / "weights.safetensors"))
    pth = tmp_path / "pretrain_3mer.pth"
    torch.save(published, pth)
    out = tmp_path / "published-k3"
    result = pretrain(preset("tiny", 3, init_from=str(pth), max_steps=0), shards_k3, out,
                      show_progress=False)
    converted = _weights(out / "checkpoint")
    assert converted.keys() == published.keys()
    for key, value in published.items():
        assert torch.equal(converted[key], value), key
    rows = read_metrics(out / "metrics.tsv")
    assert len(rows) == 1 and rows[0]["step"] == 0 and rows[0]["valid_loss"] == pytest.approx(result.valid_loss)
    assert np.isfinite(result.valid_loss) and result.step == 0
    with pytest.raises(InputError, match="nowhere.pth"):
        pretrain(preset("tiny", 3, init_from=str(tmp_path / "nowhere.pth"), max_steps=0),
                 shards_k3, tmp_path / "x", show_progress=False)


def test_fp16_is_fp32_on_the_cpu_and_its_grad_scaler_changes_no_weight(shards_k1, tmp_path, monkeypatch):
    """precision fp16 (the published pretraining: float16 autocast + GradScaler on CUDA) runs in
    fp32 on the CPU. With the scaler forced on here (the loss scaled by 2**16, the gradients
    unscaled before the guard clips and steps: powers of two, exact in float32), the weights are
    those of the fp32 run, and the scaler's state is checkpointed and resumed."""
    import rnaret.train.pretrain as pretrain_module

    fp32 = _run_tiny(shards_k1, tmp_path / "fp32", steps=6, schedule="constant")
    cpu16 = _run_tiny(shards_k1, tmp_path / "fp16", steps=6, schedule="constant", precision="fp16")
    assert_same_tensors(_weights(tmp_path / "fp32" / "checkpoint"), _weights(tmp_path / "fp16" / "checkpoint"),
                        "fp16 on the CPU is fp32")
    assert cpu16.valid_loss == fp32.valid_loss
    real = pretrain_module.resolve_precision
    monkeypatch.setattr(pretrain_module, "resolve_precision",
                        lambda precision, device: "fp16" if precision == "fp16" else real(precision, device))
    _run_tiny(shards_k1, tmp_path / "scaled", steps=3, schedule="constant", precision="fp16")
    scaled = _run_tiny(shards_k1, tmp_path / "scaled", steps=6, schedule="constant", precision="fp16")
    assert scaled.resumed_from is not None and scaled.resumed_from.name == "step-000000003"
    assert_same_tensors(_weights(tmp_path / "fp32" / "checkpoint"), _weights(tmp_path / "scaled" / "checkpoint"),
                        "the scaled fp32 run")
    from rnaret.checkpoint.training import STATE_FILE

    state = torch.load(tmp_path / "scaled" / "train" / "step-000000006" / STATE_FILE, weights_only=False)
    assert state["scaler"]["scale"] == 2.0 ** 16 and "scaler" not in torch.load(
        tmp_path / "fp32" / "train" / "step-000000006" / STATE_FILE, weights_only=False)
