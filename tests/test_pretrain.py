"""MLM pretraining on real shards of the bundled RNAcentral sample: learning, resume after
SIGKILL, 2-process DDP against 1 process, errors naming files, released-weights conversion."""
from __future__ import annotations

import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rnaret.io.errors import InputError
from rnaret.io.fasta import write_fasta
from rnaret.train.config import PretrainConfig, parse_assignments, parse_model_name, preset
from rnaret.train.curves import COLUMNS, read_metrics
from rnaret.train.schedule import lr_at

ROOT = Path(__file__).resolve().parents[1]
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
    assert (cfg.lr, cfg.weight_decay, cfg.t0, cfg.eta_min, cfg.max_tokens) == (1e-4, 0.01, 50_000, 1e-5, 200_000)
    assert cfg.schedule == "cosine_restarts" and cfg.max_steps == 600_000 and cfg.checkpoint_every == 1000
    from rnaret.train.pretrain import build_model

    sizes = {k: sum(p.numel() for p in build_model(preset("paper", k)).parameters()) for k in (1, 3, 5)}
    assert sizes == {1: 11_810_688, 3: 11_856_768, 5: 12_594_048}  # the published counts


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


@pytest.mark.slow
def test_killed_run_resumes_to_bit_identical_weights(shards_k1, tmp_path):
    steps = 60
    extra = ("--set", "checkpoint_every=5", "--set", "eval_every=20")
    reference = subprocess.Popen(_tiny_args(shards_k1, tmp_path / "ref", steps, *extra), env=_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = tmp_path / "killed"
    victim = subprocess.Popen(_tiny_args(shards_k1, killed, steps, *extra), env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "train" / "step-000000010").exists():
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert not (killed / "checkpoint").exists()  # killed before the end
    rerun = subprocess.run(_tiny_args(shards_k1, killed, steps, *extra), env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from" in rerun.stderr
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    assert "resuming" not in err
    # tensor bytes, not file bytes: safetensors writes its metadata map in no fixed order
    a, b = _weights(tmp_path / "ref" / "checkpoint"), _weights(killed / "checkpoint")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
        assert a[key].numpy().tobytes() == b[key].numpy().tobytes(), f"{key} differs from the uninterrupted run"
    ra, rb = read_metrics(tmp_path / "ref" / "metrics.tsv"), read_metrics(killed / "metrics.tsv")
    for col in ("step", "train_loss", "valid_loss", "masked_accuracy", "lr", "masked_fraction"):
        assert [r[col] for r in ra] == [r[col] for r in rb], col
    assert len(list((killed / "train").glob("step-*"))) == 2  # keep_last of the tiny preset


# ------------------------------------------------------------------ DDP


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(shards_k1, tmp_path):
    """Launched as on GPUs (rnaret launch -> torchrun, gloo on CPU); same global batches.

    Accumulation of 2 micro-batches, and the chunkwise form for rows over 64 tokens, whose
    choice differs between a rank's share and the whole batch."""
    extra = ("--device", "cpu", "--set", "accumulate=2", "--set", "encoder.parallel_max_len=64",
             "--set", "eval_every=3")
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
    return {k: v.detach() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------ errors naming files


def _run_tiny(shards, out, steps=5, **overrides):
    from rnaret.train.pretrain import pretrain

    cfg = preset("tiny", 1, max_steps=steps, **overrides)
    return pretrain(cfg, shards, out, threads=1, show_progress=False)


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
    _run_tiny(shards_k1, out, steps=5)
    ckpt = out / "train" / "step-000000005"
    state = ckpt / "state.pt"
    state.write_bytes(state.read_bytes()[:500])
    with pytest.raises(InputError, match="state.pt") as err:
        _run_tiny(shards_k1, out, steps=10)
    assert str(state) in str(err.value)
    state.unlink()
    with pytest.raises(InputError, match="missing") as err:
        _run_tiny(shards_k1, out, steps=10)
    assert str(state) in str(err.value)
    weights = ckpt / "model" / "weights.safetensors"
    weights.write_bytes(b"\0" * 64)
    with pytest.raises(InputError) as err:
        _run_tiny(shards_k1, out, steps=10)
    assert str(weights) in str(err.value)


def test_resume_refuses_other_settings_and_restart_starts_over(shards_k1, tmp_path):
    from rnaret.train.pretrain import pretrain

    out = tmp_path / "run"
    _run_tiny(shards_k1, out, steps=5)
    with pytest.raises(InputError, match="lr") as err:
        _run_tiny(shards_k1, out, steps=10, lr=1e-2)
    assert "config.json" in str(err.value)
    # more steps is a continuation, not another run
    result = _run_tiny(shards_k1, out, steps=10)
    assert result.resumed_from.name == "step-000000005" and result.step == 10
    fresh = pretrain(preset("tiny", 1, max_steps=5, lr=1e-2), shards_k1, out, show_progress=False,
                     restart=True)
    assert fresh.resumed_from is None and fresh.step == 5


def test_half_written_checkpoint_is_ignored(shards_k1, tmp_path):
    """A temporary folder left by a kill during a checkpoint write is removed, not loaded."""
    out = tmp_path / "run"
    _run_tiny(shards_k1, out, steps=5)
    partial = out / "train" / ".step-000000010.abcd"
    (partial / "model").mkdir(parents=True)
    (partial / "state.pt").write_bytes(b"junk")
    result = _run_tiny(shards_k1, out, steps=10)
    assert result.resumed_from.name == "step-000000005"
    assert not partial.exists()


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
