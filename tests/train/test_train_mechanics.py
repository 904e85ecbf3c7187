"""The pieces the training loops share: skipped non-finite steps (StepGuard), the background
batch builder (Prefetcher), run fingerprints and run folders, per-row dropout masks, the
skeleton's save and resume with the random streams, and fine-tuning's learning-rate schedule."""
from __future__ import annotations

import json
import threading

import pytest
import torch

from rnaret.io.errors import InputError
from rnaret.train import fingerprint as fp
from rnaret.train.guard import NonFiniteError, StepGuard, make_adamw
from rnaret.train.prefetch import Prefetcher

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ StepGuard


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 8, generator=g), torch.randn(64, 1, generator=g)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return model, x, y


def _snapshot(model, optimizer):
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    return params, state


def _same(a, b) -> bool:
    return a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and \
        a[1].keys() == b[1].keys() and all(torch.equal(a[1][p][k], b[1][p][k]) for p in a[1] for k in a[1][p])


def test_guard_skips_nonfinite_steps_and_continues(capsys):
    model, x, y = _regression()
    optimizer = make_adamw(model.parameters(), lr=1e-2, weight_decay=0.01)
    guard = StepGuard(optimizer, model.parameters(), grad_clip=1.0, max_consecutive=3,
                      device=torch.device("cpu"), name="test")
    losses = []

    def step(number, poison=None):
        loss = torch.nn.functional.mse_loss(model(x), y)
        if poison == "loss":
            loss = loss * float("nan")
        loss.backward()
        if poison == "grad":  # a finite loss whose gradient overflowed
            next(model.parameters()).grad[0, 0] = float("inf")
        losses.append(float(loss.detach()))
        guard.step(loss, 1.0, number)

    step(1)
    before = _snapshot(model, optimizer)
    step(2, "loss")
    assert _same(before, _snapshot(model, optimizer))  # weights, moments and step count untouched
    step(3, "grad")
    assert _same(before, _snapshot(model, optimizer))
    step(4)  # finite again: the update happens and the count of skipped steps in a row resets
    assert not _same(before, _snapshot(model, optimizer))
    assert int(guard.consecutive) == 0
    assert all(float(s["step"]) == 2 for s in optimizer.state.values())  # two real steps
    step(5)
    interval = guard.interval()
    assert interval["skipped"] == 2
    assert interval["loss"] == pytest.approx((losses[0] + losses[3] + losses[4]) / 3, rel=1e-6)
    assert interval["grad_norm"] > 0
    err = capsys.readouterr().err
    assert "step 2 skipped" in err and "step 3 skipped" in err and "(2 in a row)" in err
    assert "step 4 skipped" not in err


def test_guard_stops_after_max_consecutive_nonfinite_steps():
    model, x, y = _regression()
    optimizer = make_adamw(model.parameters(), lr=1e-2, weight_decay=0.0)
    guard = StepGuard(optimizer, model.parameters(), grad_clip=None, max_consecutive=3,
                      device=torch.device("cpu"), name="test")
    with pytest.raises(NonFiniteError, match=r"3 optimizer steps in a row \(up to step 3\)"):
        for number in range(1, 10):
            loss = torch.nn.functional.mse_loss(model(x), y) * float("inf")
            loss.backward()
            guard.step(loss, 1.0, number)
            assert number <= 4  # read one step late: the error comes with step 4 at the latest
    # a last skipped run is caught by finish() even without a later step
    guard = StepGuard(optimizer, model.parameters(), grad_clip=None, max_consecutive=2,
                      device=torch.device("cpu"), name="test")
    for number in (1, 2):
        loss = torch.nn.functional.mse_loss(model(x), y) * float("nan")
        loss.backward()
        guard.step(loss, 1.0, number)
    with pytest.raises(NonFiniteError):
        guard.finish()


# ------------------------------------------------------------------ Prefetcher


def test_prefetcher_keeps_order_and_forwards_errors():
    built = []

    def items():
        for i in range(10):
            built.append(i)
            yield i

    with Prefetcher(items(), depth=2) as stream:
        assert list(stream) == list(range(10))
    assert built == list(range(10))

    def failing():
        yield 1
        raise InputError("some.file", "bad record", line=3)

    stream = Prefetcher(failing(), depth=2)
    assert next(stream) == 1
    with pytest.raises(InputError, match="some.file: line 3: bad record"):
        next(stream)
    stream.close()
    assert list(Prefetcher(iter(range(3)), depth=0)) == [0, 1, 2]


def test_prefetcher_builds_ahead_and_close_stops_it():
    """The thread builds up to depth items before any is taken; close() ends it even while it
    waits on a full queue."""
    produced = threading.Semaphore(0)

    def endless():
        i = 0
        while True:
            produced.release()
            yield i
            i += 1

    stream = Prefetcher(endless(), depth=3)
    for _ in range(4):  # depth items queued, and the thread holds the next one
        produced.acquire()
    assert next(stream) == 0
    stream.close()
    assert stream._thread is None


# ------------------------------------------------------------------ fingerprints and run folders


def test_digests_follow_content_not_location(tmp_path):
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "x.txt").write_text("one")
    (a / "sub" / "y.txt").write_text("two")
    b = tmp_path / "elsewhere" / "b"
    b.parent.mkdir()
    import shutil

    shutil.copytree(a, b)
    assert fp.file_digest(a) == fp.file_digest(b)
    (b / "sub" / "y.txt").write_text("three")
    assert fp.file_digest(a) != fp.file_digest(b)
    (b / "sub" / "y.txt").write_text("two")
    (b / "sub" / "y.txt").rename(b / "sub" / "z.txt")  # same bytes, other name
    assert fp.file_digest(a) != fp.file_digest(b)
    with pytest.raises(InputError, match="does not exist"):
        fp.file_digest(tmp_path / "missing")


def test_open_run_dir_resumes_replaces_and_restarts(tmp_path):
    run = tmp_path / "train"
    first = {"kind": "pretrain", "settings": {"lr": 1e-3, "betas": (0.9, 0.99)}, "inputs": {"shards": "aa"}}
    start = fp.open_run_dir(run, first)
    assert not start.resume and start.changed == [] and start.describe(run) is None
    (run / "step-000000005").mkdir()
    assert fp.open_run_dir(run, first).resume  # tuples and lists read back alike
    second = {**first, "inputs": {"shards": "bb"}, "settings": {"lr": 2e-3, "betas": [0.9, 0.99]}}
    start = fp.open_run_dir(run, second)
    assert not start.resume and start.changed == ["inputs.shards", "settings.lr"]
    assert start.replaced == tmp_path / "train.replaced"
    assert (tmp_path / "train.replaced" / "step-000000005").is_dir()
    assert "inputs.shards, settings.lr changed" in start.describe(run)
    assert json.loads((run / "fingerprint.json").read_text())["inputs"]["shards"] == "bb"
    assert list(p.name for p in run.iterdir()) == ["fingerprint.json"]
    # a folder written without a fingerprint (an older version) is not continued
    legacy = tmp_path / "legacy"
    (legacy / "step-000000001").mkdir(parents=True)
    start = fp.open_run_dir(legacy, first)
    assert not start.resume and start.changed == ["fingerprint.json (none recorded)"]
    # restart: deleted, nothing kept
    (run / "step-000000009").mkdir()
    start = fp.open_run_dir(run, second, restart=True)
    assert not start.resume and start.replaced is None and not (run / "step-000000009").exists()
    (run / "fingerprint.json").write_text("{not json")
    with pytest.raises(InputError, match="fingerprint.json"):
        fp.open_run_dir(run, second)


# ------------------------------------------------------------------ per-row dropout


def test_row_dropout_masks_belong_to_the_row():
    """A row's dropout mask is the same alone or in a batch, padded or not, in the parallel or
    the segmented chunkwise form; another key gives another mask; the keep rate is 1 - p."""
    from rnaret.model import EncoderConfig, build_encoder
    from rnaret.model.dropout import keep_mask, row_keys, row_seeds

    cfg = EncoderConfig.paper(1, retnet_embed_dim=16, retnet_value_embed_dim=16, retnet_ffn_embed_dim=32,
                              retnet_layers=2, retnet_retention_heads=2, dropout=0.3, activation_dropout=0.3,
                              chunk_size=16, parallel_max_len=64, segment_len=32)
    torch.manual_seed(0)
    model = build_encoder(cfg).double().train()
    g = torch.Generator().manual_seed(1)
    lengths = [150, 40, 90]
    tokens = torch.zeros(3, 150, dtype=torch.long)
    for i, n in enumerate(lengths):
        tokens[i, :n] = torch.randint(6, 10, (n,), generator=g)
    keys = row_keys(123, [0, 1, 2])
    with row_seeds(model, keys):
        whole = model(tokens).hidden  # chunkwise (150 > 64), in segments of 32
    with row_seeds(model, keys[1:2]):
        alone = model(tokens[1:2, :40]).hidden  # parallel, unpadded
    with row_seeds(model, keys[[0, 2]]):
        pair = model(tokens[[0, 2]], form="parallel").hidden
    torch.testing.assert_close(alone[0], whole[1, :40], rtol=0, atol=1e-12)
    torch.testing.assert_close(pair, whole[[0, 2]], rtol=0, atol=1e-12)
    with row_seeds(model, row_keys(124, [1])):
        other = model(tokens[1:2, :40]).hidden
    assert (other - alone).abs().max() > 0.1
    model.eval()
    with row_seeds(model, keys):
        assert torch.equal(model(tokens).hidden, model(tokens).hidden)  # no dropout in eval mode
    keep = keep_mask(row_keys(5, range(64)), 0, 0, (64, 500, 128), 0.2)
    assert keep.float().mean().item() == pytest.approx(0.8, abs=2e-3)
    # rows and sites are independent streams
    assert (keep[0].float() * keep[1].float()).mean().item() == pytest.approx(0.64, abs=5e-3)
    other_site = keep_mask(row_keys(5, range(64)), 12345, 0, (64, 500, 128), 0.2)
    assert (keep.float() * other_site.float()).mean().item() == pytest.approx(0.64, abs=2e-3)


# ------------------------------------------------------------------ the training skeleton


def _by_index(model, optimizer):
    """(weights, optimizer state keyed by parameter index): comparable across model instances."""
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {i: {k: v.clone() for k, v in s.items()} for i, s in optimizer.state_dict()["state"].items()})


def test_skeleton_save_then_resume_restores_weights_optimizer_guard_and_random_streams(tmp_path):
    from rnaret.checkpoint.training import save_weights
    from rnaret.train import skeleton

    def setup():
        model, x, y = _regression(1)
        params = list(model.parameters())
        optimizer, guard = skeleton.make_optimizer(params, params, lr=1e-2, weight_decay=0.01, grad_clip=1.0,
                                                   max_consecutive=3, device=torch.device("cpu"), name="test")
        return model, optimizer, guard, x, y

    def train_step(model, optimizer, guard, x, y, step):
        skeleton.seed_step(7, step)
        loss = torch.nn.functional.mse_loss(torch.nn.functional.dropout(model(x), 0.5), y)
        loss.backward()
        guard.step(loss, 1.0, step + 1)

    model, optimizer, guard, x, y = setup()
    assert skeleton.resume(tmp_path, model, optimizer, guard) == (None, None)  # nothing saved yet
    skeleton.seed_everything(7)
    for step in range(3):
        train_step(model, optimizer, guard, x, y, step)
    state = {"step": 3, "optimizer": optimizer.state_dict(), "guard": guard.state_dict(),
             "rng": skeleton.rng_state(), "mine": [1, 2]}
    path = skeleton.save(tmp_path, 3, model, state, 1, name="test", when="step 3", save_model=save_weights)
    after_save = torch.rand(4)
    train_step(model, optimizer, guard, x, y, 3)
    uninterrupted = _by_index(model, optimizer)

    fresh, fresh_optimizer, fresh_guard, _, _ = setup()
    torch.manual_seed(12345)  # a resumed process starts from other generator states
    found, loaded = skeleton.resume(tmp_path, fresh, fresh_optimizer, fresh_guard)
    assert found == path and loaded["step"] == 3 and loaded["mine"] == [1, 2]
    assert torch.equal(torch.rand(4), after_save)  # the generators continue where they were saved
    train_step(fresh, fresh_optimizer, fresh_guard, x, y, 3)
    resumed = _by_index(fresh, fresh_optimizer)
    assert uninterrupted[0].keys() == resumed[0].keys() and uninterrupted[1].keys() == resumed[1].keys()
    assert all(torch.equal(uninterrupted[0][k], resumed[0][k]) for k in resumed[0])
    assert all(torch.equal(uninterrupted[1][i][k], resumed[1][i][k]) for i in resumed[1] for k in resumed[1][i])


def test_skeleton_resume_keeps_the_generators_of_another_world_size(tmp_path):
    """Per-rank generator states (a list) are restored only by a run of as many ranks."""
    from rnaret.checkpoint.training import save_weights
    from rnaret.train import skeleton

    model, _, _ = _regression(0)
    optimizer, guard = skeleton.make_optimizer(list(model.parameters()), list(model.parameters()), lr=1e-3,
                                               weight_decay=0.0, grad_clip=None, max_consecutive=3,
                                               device=torch.device("cpu"), name="test")
    torch.manual_seed(1)
    saved = skeleton.rng_state()
    state = {"step": 1, "optimizer": optimizer.state_dict(), "guard": guard.state_dict(), "rng": [saved, saved]}
    skeleton.save(tmp_path, 1, model, state, 1, name="test", when="step 1", save_model=save_weights)
    torch.manual_seed(1)
    from_saved = torch.rand(3)
    torch.manual_seed(2)
    skeleton.resume(tmp_path, model, optimizer, guard, rank=1, world_size=2)
    assert torch.equal(torch.rand(3), from_saved)
    torch.manual_seed(2)
    untouched = torch.rand(3)
    assert not torch.equal(untouched, from_saved)
    torch.manual_seed(2)
    skeleton.resume(tmp_path, model, optimizer, guard, rank=0, world_size=1)  # two saved, one rank
    assert torch.equal(torch.rand(3), untouched)


def test_finetune_schedule_is_the_warmup_then_a_cosine_to_a_tenth():
    import math

    from rnaret.train.schedule import finetune_scale, lr_at, warmup_factor

    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    assert [finetune_scale(s, "constant", 2, 0.9) for s in range(3)] == [0.5, 1.0, 1.0]
    assert finetune_scale(10, "cosine", 0, 0.0) == 1.0
    assert finetune_scale(10, "cosine", 0, 1.0) == pytest.approx(0.1, abs=1e-15)
    assert finetune_scale(10, "cosine", 0, 3.0) == finetune_scale(10, "cosine", 0, 1.0)  # capped at the end
    # the formula fine-tuning has always used, to the bit
    for step, warmup, progress in ((0, 3, 0.0), (2, 3, 0.25), (7, 3, 0.5), (40, 0, 0.8125)):
        scale = min(1.0, (step + 1) / warmup) if warmup else 1.0
        scale *= 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        assert finetune_scale(step, "cosine", warmup, progress) == scale
    # pretraining's constant schedule puts the same warmup in front
    assert [lr_at(s, "constant", 2e-3, warmup=4) for s in range(5)] == [2e-3 * warmup_factor(s, 4) for s in range(5)]
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine, got 'linear'"):
        finetune_scale(0, "linear", 0, 0.0)
