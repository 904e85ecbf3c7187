"""Learning-rate schedules as pure functions of the optimizer step, for every training loop.

A pure function of the step makes resume exact: the scheduler's only state is the step count.

- Pretraining (``lr_at`` in a ``LambdaLR``, ``make_scheduler``): ``SCHEDULES``, the published
  cosine with warm restarts, one warmup + cosine, or constant.
- Fine-tuning (``finetune_scale``, a factor of each group's base rate, set before each step):
  ``FINETUNE_SCHEDULES``, constant or one cosine from the base rate down to a tenth of it over
  the run, with the run's progress counted in steps or in epochs.

Both put the same linear warmup (``warmup_factor``) in front.
"""
from __future__ import annotations

import math

SCHEDULES = ("cosine_restarts", "warmup_cosine", "constant")
FINETUNE_SCHEDULES = ("constant", "cosine")
FINETUNE_FLOOR = 0.1  # fine-tuning's cosine ends at this fraction of the base rate


def warmup_factor(step: int, warmup: int) -> float:
    """The linear warmup's factor at optimizer step ``step`` (0-based): (step + 1) / warmup up to
    1; 1 without warmup (``warmup`` 0)."""
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def finetune_scale(step: int, kind: str, warmup: int, progress: float) -> float:
    """The factor of the base learning rates at fine-tuning step ``step`` (0-based).

    kind: ``constant`` (the warmup only) or ``cosine``: times a half cosine from 1 down to
    ``FINETUNE_FLOOR`` as ``progress`` (the fraction of the run done, capped at 1) goes 0 -> 1.
    """
    scale = warmup_factor(step, warmup)
    if kind == "cosine":
        scale *= FINETUNE_FLOOR + (1.0 - FINETUNE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    elif kind != "constant":
        raise ValueError(f"lr_schedule must be one of {', '.join(FINETUNE_SCHEDULES)}, got {kind!r}")
    return scale


def cosine_warm_restarts(step: int, base_lr: float, t0: int, eta_min: float, t_mult: int = 1) -> float:
    """Learning rate at ``step`` of torch's CosineAnnealingWarmRestarts (the published schedule).

    Cycle i lasts t0 * t_mult**i steps; within a cycle the rate falls from base_lr to eta_min
    along half a cosine, then jumps back to base_lr.
    """
    if t0 < 1:
        raise ValueError(f"t0 must be >= 1, got {t0}")
    if t_mult == 1:
        t_cur, t_i = step % t0, t0
    else:  # the closed form torch uses for geometric cycle lengths
        n = int(math.log(step / t0 * (t_mult - 1) + 1, t_mult)) if step >= t0 else 0
        t_cur = step - t0 * (t_mult**n - 1) // (t_mult - 1)
        t_i = t0 * t_mult**n
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def warmup_cosine(step: int, base_lr: float, warmup: int, total: int, eta_min: float) -> float:
    """Linear warmup from 0 to base_lr over ``warmup`` steps, then one cosine to eta_min at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * progress)) / 2


def lr_at(step: int, kind: str, base_lr: float, *, t0: int = 50_000, t_mult: int = 1,
          eta_min: float = 1e-5, warmup: int = 0, total: int = 1) -> float:
    """Learning rate at optimizer step ``step`` (0-based) for schedule ``kind`` (see SCHEDULES)."""
    if kind == "cosine_restarts":
        lr = cosine_warm_restarts(step, base_lr, t0, eta_min, t_mult)
        # an optional warmup in front of the published schedule (0 = published)
        return lr * warmup_factor(step, warmup)
    if kind == "warmup_cosine":
        return warmup_cosine(step, base_lr, warmup, total, eta_min)
    if kind == "constant":
        return base_lr * warmup_factor(step, warmup)
    raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, **kwargs) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following ``lr_at(step, kind, base_lr, **kwargs)`` for every param group.

    kwargs: t0, t_mult, eta_min, warmup, total (see ``lr_at``). Call ``scheduler.step()`` once per
    optimizer step.
    """
    import torch  # here: the schedule names are read (rnaret.train.config) without torch

    lr_at(0, kind, 1.0, **kwargs)  # fail early on an unknown kind or bad t0
    base_lrs = [group["lr"] for group in optimizer.param_groups]

    def factor_for(base_lr: float):
        return lambda step: lr_at(step, kind, base_lr, **kwargs) / base_lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor_for(lr) for lr in base_lrs])
