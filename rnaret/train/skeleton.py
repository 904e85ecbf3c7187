"""What every training loop shares: seeds and random streams, the run folder, resume and saving.

Pretraining (``rnaret.train.pretrain``) and fine-tuning (``rnaret.tasks.finetune``) each keep
only what is their own — their batches, their loss, their evaluation and the state only they
hold (data position, best-so-far record) — and do the rest through these calls:

- ``seed_everything(seed)`` once, before the model is built: python, numpy and torch;
- every random draw of step s from a stream keyed by (seed, stream tag, s, ...)
  (``step_seed``): ``seed_step`` for the global torch generator (heads, anything not keyed by
  row), ``dropout_seed`` for the per-row dropout keys (``rnaret.model.dropout``); pretraining's
  masks and crops use the ``TRAIN_TAG`` stream, its validation batches ``VALID_TAG``;
- ``open_run`` prepares the run folder from the run's fingerprint (``rnaret.train.fingerprint``):
  resume when it is the same run, else a fresh start, the old folder kept aside;
- ``make_optimizer`` builds the fused AdamW and its ``StepGuard`` (``rnaret.train.guard``):
  non-finite steps skipped on the device, clipping, on-device sums of loss and gradient norm;
- ``resume`` loads the newest checkpoint of the run folder into the model, optimizer, guard,
  (scheduler, gradient scaler) and the random generators, and returns the loop's own state;
- ``save`` writes a checkpoint (``rnaret.checkpoint.training``), keeping the newest few.

Learning-rate schedules: ``rnaret.train.schedule``; precision: ``rnaret.precision``; the
metrics logs: ``rnaret.train.curves``. Because every step re-seeds its streams from (seed, step),
a run killed and resumed ends with the weights of the run that was never stopped.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch

from rnaret.checkpoint import training as ckpt
from rnaret.train.data import step_seed
from rnaret.train.guard import StepGuard, make_adamw

TRAIN_TAG, VALID_TAG, DROPOUT_TAG = 0, 1, 2  # seed streams: steps, validation batches, dropout rows


def log(name: str, message: str) -> None:
    """One line ``<name>: <message>`` on stderr (the run's log), flushed at once."""
    print(f"{name}: {message}", file=sys.stderr, flush=True)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_step(seed: int, step: int, *stream: int) -> None:
    """Seed the global torch generator for step ``step`` from (seed, TRAIN_TAG, step, *stream)."""
    torch.manual_seed(step_seed(seed, TRAIN_TAG, step, *stream))


def dropout_seed(seed: int, step: int, *stream: int) -> int:
    """The base of step ``step``'s per-row dropout keys: (seed, DROPOUT_TAG, step, *stream)."""
    return step_seed(seed, DROPOUT_TAG, step, *stream)


def open_run(run_dir, fingerprint: dict, *, restart: bool, name: str):
    """Prepare ``run_dir`` for a run started from ``fingerprint`` (one process only): kept when
    the saved fingerprint is the same, else moved aside (``rnaret.train.fingerprint.open_run_dir``;
    ``restart`` deletes it); half-written checkpoints a killed run left are removed. Says on
    stderr what happened. Returns the ``RunStart``."""
    from rnaret.train.fingerprint import open_run_dir

    start = open_run_dir(run_dir, fingerprint, restart=restart)
    ckpt.remove_partial_writes(run_dir)
    if start.describe(run_dir):
        log(name, start.describe(run_dir))
    return start


def make_optimizer(groups, params, *, lr: float, weight_decay: float, grad_clip, max_consecutive: int,
                   device, name: str, **adamw) -> tuple[torch.optim.Optimizer, StepGuard]:
    """(fused AdamW over ``groups``, its ``StepGuard`` over ``params``).

    groups: parameters or param-group dicts; params: the trainable parameters the guard clips
    (``grad_clip``, None = no clipping) and checks; max_consecutive: non-finite steps in a row
    that stop the run; adamw: betas, eps (``make_adamw``); name: the run's name in messages.
    """
    optimizer = make_adamw(groups, lr=lr, weight_decay=weight_decay, **adamw)
    guard = StepGuard(optimizer, params, grad_clip=grad_clip, max_consecutive=max_consecutive,
                      device=device, name=name)
    return optimizer, guard


def resume(run_dir, model: torch.nn.Module, optimizer, guard: StepGuard, *, scheduler=None, scaler=None,
           rank: int = 0, world_size: int = 1) -> tuple[Path | None, dict | None]:
    """Continue from the newest checkpoint in ``run_dir`` -> (its folder, its state), or
    (None, None) when there is none (or ``run_dir`` is None).

    Loads the weights into ``model`` and the states of ``optimizer``, ``guard``, ``scheduler``
    and ``scaler`` (when given; the scaler only when enabled and saved), then the random
    generators: this rank's entry of a per-rank list saved by a run of the same world size, or
    the one state a single-process loop saved. The loop restores the rest of the returned state
    (step, data position, history) itself.
    """
    latest = ckpt.latest_checkpoint(run_dir) if run_dir is not None else None
    if latest is None:
        return None, None
    state = ckpt.load_checkpoint(latest, model)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    guard.load_state_dict(state["guard"])
    if scaler is not None and scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    if isinstance(rng, dict):
        ckpt.set_rng_state(rng)
    elif len(rng) == world_size:
        ckpt.set_rng_state(rng[rank])
    return latest, state


def rng_state() -> dict:
    """This process's generator states, as ``resume`` restores them (``rnaret.checkpoint.training``)."""
    return ckpt.rng_state()


def save(run_dir, step: int, model: torch.nn.Module, state: dict, keep: int, *, name: str, when: str,
         save_model=None) -> Path:
    """Write checkpoint ``step`` of ``model`` and the loop's ``state`` (a dict of tensors and
    plain values; ``resume`` reads optimizer, guard, rng, and scheduler and scaler when present)
    into ``run_dir`` atomically, keeping the newest ``keep``; say so on stderr (``when``: e.g.
    "step 100"). save_model: how the model is written (default: an encoder checkpoint). Returns
    the checkpoint folder."""
    path = ckpt.save_checkpoint(run_dir, step, model, state, keep, save_model=save_model)
    log(name, f"checkpoint {path} written ({when})")
    return path
