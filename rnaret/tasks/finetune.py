"""The generic fine-tuning and evaluation loop shared by every task (see ``rnaret.tasks.base``).

What is its own: the batches (examples of an epoch, crops, batch order), the task's loss, the
validation and the choice of the best state. Seeds and random streams, the run folder's
checkpoints and resume, the optimizer and its step guard come from ``rnaret.train.skeleton``
(shared with pretraining), the learning-rate schedule from ``rnaret.train.schedule``.

Seeded; AdamW (fused: a step whose loss or gradient norm is not finite is skipped on the device,
``rnaret.train.guard``); a number of epochs or of steps; batches of a fixed size or a token
budget, made of examples of similar length, collated (and on CUDA pinned) by a background thread;
validation ``evals_per_epoch`` times in every ``eval_every_epochs``-th epoch (and in the last)
and the best checkpoint (highest ``task.selection`` on valid) kept — not the last one; the
encoder fine-tuned whole or frozen (``freeze_encoder``); precision from ``rnaret.precision``
(fp32, bf16 autocast, or auto).

Reproducible and resumable: epoch e's sample, crops and batch order come from (seed, e), step
s's dropout from (seed, s, row) (``rnaret.model.dropout``), so with a ``run_dir`` the loop writes
a checkpoint after every epoch (model, optimizer, RNG, epoch, best-so-far weights and record,
history; ``rnaret.checkpoint.training``) and a rerun continues from it, ending bit-identical on
the CPU to a run that was never stopped. The training loss, gradient norm (before clipping) and
skipped steps are summed on the device and read at each validation (the ``train_log.tsv`` rows).

The fine-tuned checkpoint folder ``rnaret finetune`` writes from the result:
``rnaret.checkpoint.finetuned``.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rnaret.data.progress import progress as progress_bar
from rnaret.tasks.base import Batch, Example, Task
from rnaret.train.curves import write_history

CHECKPOINT_KEEP = 1  # fine-tuning run folders keep their newest epoch checkpoint


class TaskModel(nn.Module):
    """An encoder and a task head: ``forward(tokens (B,L), padding_mask (B,L)) -> head output``.

    The head reads the encoder's ``last_inner_state`` (B, L, d). With ``freeze_encoder`` the
    encoder runs without gradients and in eval mode (no dropout) even while the head trains.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, freeze_encoder: bool = False):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            for parameter in self.encoder.parameters():
                parameter.requires_grad_(False)

    def train(self, mode: bool = True):
        """Train mode for the head (and the encoder unless frozen)."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor):
        """tokens (B, L) int64, padding_mask (B, L) bool True at real positions -> head output."""
        context = torch.no_grad() if self.freeze_encoder else contextlib.nullcontext()
        with context:
            states = self.encoder(tokens, padding_mask=padding_mask, return_logits=False).last_inner_state
        return self.head(states, padding_mask)


def pick_device(device: str | None = None) -> torch.device:
    """``rnaret.device.resolve_device``: auto/None = CUDA when available, else CPU; an explicit
    ``cuda`` without a GPU raises DeviceError."""
    from rnaret.device import resolve_device

    return resolve_device(device)


def autocast(device: torch.device, precision: str | None = None):
    """``rnaret.precision.autocast`` on ``device``; ``precision`` None keeps this function's former
    choice for its remaining callers (bf16 on CUDA, float32 on CPU)."""
    from rnaret.precision import autocast as precision_autocast

    device = torch.device(device)
    if precision is None:
        precision = "bf16" if device.type == "cuda" else "fp32"
    return precision_autocast(device, precision)


def make_batches(lengths: list[int] | np.ndarray, *, batch_size: int | None = None,
                 max_tokens: int | None = None, rng: np.random.Generator | None = None,
                 pool_batches: int = 50) -> list[list[int]]:
    """Group example indices into batches of similar length.

    ``lengths``: (N,) token counts. With ``max_tokens`` a batch holds as many examples as keep
    ``n * longest <= max_tokens`` (at least one); otherwise ``batch_size`` examples. Without
    ``rng`` (evaluation) indices are sorted by length; with ``rng`` (training) they are shuffled,
    sorted by length within pools of ``pool_batches`` batches, and the batches shuffled, so batch
    composition changes from epoch to epoch while padding stays small.
    """
    lengths = np.asarray(lengths)
    if batch_size is None and max_tokens is None:
        raise ValueError("give batch_size or max_tokens")
    order = np.arange(len(lengths))
    if rng is None:
        pools = [order[np.argsort(lengths, kind="stable")]]
    else:
        order = rng.permutation(order)
        per_pool = pool_batches * (batch_size or max(1, int(max_tokens // max(1, np.median(lengths)))))
        pools = [chunk[np.argsort(lengths[chunk], kind="stable")]
                 for chunk in np.array_split(order, max(1, math.ceil(len(order) / per_pool)))]
    batches: list[list[int]] = []
    for pool in pools:
        current: list[int] = []
        longest = 0
        for index in pool.tolist():
            new_longest = max(longest, int(lengths[index]))
            full = (len(current) >= batch_size if max_tokens is None
                    else (len(current) + 1) * new_longest > max_tokens)
            if current and full:
                batches.append(current)
                current, new_longest = [], int(lengths[index])
            current.append(index)
            longest = new_longest
        if current:
            batches.append(current)
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _collated(task: Task, examples: list[Example], batches: list[list[int]], device: torch.device):
    """(indices, batch) per batch, collated and (on CUDA) pinned: what the prefetch thread makes."""
    from rnaret.train.prefetch import pin

    for indices in batches:
        batch = task.collate([examples[i] for i in indices])
        yield indices, Batch(*pin((batch.tokens, batch.padding_mask, batch.targets), device), batch.examples)


def _on_device(batch: Batch, device: torch.device) -> Batch:
    from rnaret.train.prefetch import to_device

    return Batch(*to_device((batch.tokens, batch.padding_mask, batch.targets), device), batch.examples)


@torch.no_grad()
def predict(task: Task, model: nn.Module, examples: list[Example], *, device: torch.device,
            max_tokens: int | None = None, progress: bool = True, desc: str = "predict",
            precision: str | None = None) -> list[dict]:
    """Run ``model`` over ``examples`` in eval mode -> prediction rows in the examples' order.

    precision: fp32, bf16 or auto (``rnaret.precision``); None: bf16 on CUDA, fp32 on CPU."""
    from rnaret.train.prefetch import Prefetcher

    model.eval()
    device = torch.device(device)
    budget = int(max_tokens or task.settings["eval_max_tokens"])
    batches = make_batches(task.batch_lengths(examples), max_tokens=budget)
    rows: list[dict | None] = [None] * len(examples)
    with progress_bar(total=len(examples), desc=desc, unit="seq", disable=not progress, leave=False) as bar, \
            Prefetcher(_collated(task, examples, batches, device), depth=2) as stream:
        for indices, batch in stream:
            batch = _on_device(batch, device)
            with autocast(device, precision):
                output = model(batch.tokens, batch.padding_mask)
            output = _to_float(output)
            for i, row in zip(indices, task.predict(output, batch)):
                rows[i] = row
            bar.update(len(indices))
    return rows  # type: ignore[return-value]


def _to_float(value):
    if isinstance(value, torch.Tensor):
        return value.float()
    if isinstance(value, dict):
        return {key: _to_float(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float(item) for item in value)
    return value


def evaluate(task: Task, model: nn.Module, examples: list[Example], *, device: torch.device,
             progress: bool = True, desc: str = "evaluate",
             precision: str | None = None) -> tuple[list[dict], dict[str, float]]:
    """Predict ``examples`` and compute the task's metrics -> (rows, metrics); precision as in
    ``predict``."""
    rows = predict(task, model, examples, device=device, progress=progress, desc=desc, precision=precision)
    return rows, task.metrics(rows)


@dataclass
class FinetuneResult:
    """What ``finetune`` returns: the model holding the best weights and the training history."""

    model: TaskModel
    best: dict[str, Any]       # {"epoch", "step", "metric", "value", "valid_metrics"}
    history: list[dict[str, Any]]


def _subset(examples: list[Example], n: int | None, rng: np.random.Generator) -> list[Example]:
    if n is None or n >= len(examples):
        return examples
    chosen = np.sort(rng.choice(len(examples), size=int(n), replace=False))
    return [examples[i] for i in chosen]


def finetune(task: Task, model: TaskModel, train: list[Example], valid: list[Example], *,
             device: torch.device | None = None, progress: bool = True,
             log_path: Path | None = None, run_dir: Path | None = None,
             precision: str | None = "auto") -> FinetuneResult:
    """Fine-tune ``model`` on ``train``, choosing the best state on ``valid`` (``keep: last``,
    the published protocol: the state after the last epoch, the best point then describing it).

    Settings come from ``task.settings`` (see ``rnaret.tasks.base.COMMON_SETTINGS``). Returns
    the model with the best validation weights loaded, the best point and the per-evaluation
    history (also written to ``log_path`` as TSV when given). run_dir: a run folder (prepared by
    ``rnaret.train.skeleton.open_run``) where a checkpoint is written after every epoch and
    from whose newest checkpoint the run continues; None: no checkpoints. precision: fp32, bf16 or
    auto (``rnaret.precision``).
    """
    from rnaret.checkpoint.training import save_weights
    from rnaret.model.dropout import row_keys, row_seeds
    from rnaret.precision import resolve_precision
    from rnaret.train import skeleton
    from rnaret.train.prefetch import Prefetcher
    from rnaret.train.schedule import finetune_scale

    settings = task.settings
    seed = int(settings["seed"])
    name = f"rnaret finetune {task.name}"
    skeleton.seed_everything(seed)
    device = pick_device(device)
    precision = resolve_precision(precision, device)
    model.to(device)
    valid = _subset(valid, settings.get("valid_max_examples"), np.random.default_rng(seed + 1))

    head_lr = settings.get("head_lr") or settings["lr"]
    groups = [{"params": [p for p in model.head.parameters() if p.requires_grad], "lr": float(head_lr)}]
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": float(settings["lr"])})
    optimizer, guard = skeleton.make_optimizer(
        groups, [p for g in groups for p in g["params"]], lr=float(settings["lr"]),
        weight_decay=float(settings["weight_decay"]), grad_clip=settings.get("grad_clip"),
        max_consecutive=int(settings.get("max_nonfinite_steps") or 10), device=device, name=name)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    warmup = int(settings.get("warmup_steps") or 0)
    max_steps = settings.get("max_steps")
    epochs = int(settings["epochs"]) if max_steps is None else 10**9
    every = 1 if settings.get("eval_every_epochs") is None else int(settings["eval_every_epochs"])
    if every < 1:
        raise ValueError(f"eval_every_epochs must be at least 1, got {every}")
    keep = settings.get("keep") or "best"
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be best or last, got {keep!r}")
    schedule = settings.get("lr_schedule") or "constant"
    finetune_scale(0, schedule, warmup, 0.0)  # fail early on an unknown schedule

    def trainable_state() -> dict[str, torch.Tensor]:
        return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}

    best: dict[str, Any] = {"metric": task.selection, "value": -math.inf}
    best_state = trainable_state()
    history: list[dict[str, Any]] = []
    step = first_epoch = 0
    finished = False
    seconds_before = 0.0  # training time of the epochs a resumed run continues
    latest, state = skeleton.resume(run_dir, model, optimizer, guard)
    if state is not None:
        step, first_epoch, finished = int(state["step"]), int(state["epoch"]), bool(state["finished"])
        best, best_state, history = dict(state["best"]), dict(state["best_state"]), list(state["history"])
        seconds_before = float(state["seconds"])
        skeleton.log("rnaret finetune", f"resuming from {latest} (epoch {first_epoch}, step {step})")
    started = time.monotonic() - seconds_before

    def validate(epoch: float) -> None:
        nonlocal best_state
        interval = guard.interval()  # the one read of the device since the last validation
        _, metrics = evaluate(task, model, valid, device=device, progress=progress, desc="valid",
                              precision=precision)
        value = metrics.get(task.selection, float("nan"))
        record = {"epoch": round(epoch, 3), "step": step, "train_loss": interval["loss"],
                  "grad_norm": interval["grad_norm"], "skipped_steps": interval["skipped"],
                  **{f"valid_{key}": val for key, val in metrics.items()},
                  "seconds": round(time.monotonic() - started, 1)}
        history.append(record)
        # NaN never wins; ties keep the earlier (cheaper) checkpoint
        if not math.isnan(value) and value > best["value"]:
            best.update(epoch=record["epoch"], step=step, value=value, valid_metrics=metrics)
            best_state = trainable_state()
        if log_path is not None:
            write_history(history, log_path)
        loss = "nan" if interval["loss"] is None else f"{interval['loss']:.4f}"
        print(f"{task.name}: epoch {record['epoch']} step {step} train_loss {loss} valid "
              f"{task.selection} {value:.4f} (best {best['value']:.4f}) {record['seconds']} s",
              file=sys.stderr, flush=True)
        model.train()

    def save(epoch_done: int, done: bool) -> None:
        state = {"step": step, "epoch": epoch_done, "finished": done, "optimizer": optimizer.state_dict(),
                 "guard": guard.state_dict(), "rng": skeleton.rng_state(), "best": best,
                 "best_state": best_state, "history": history, "settings": settings,
                 "seconds": time.monotonic() - started}
        skeleton.save(run_dir, step, model, state, CHECKPOINT_KEEP, name="rnaret finetune",
                      when=f"epoch {epoch_done}, step {step}", save_model=save_weights)

    epoch = first_epoch
    while not finished and epoch < epochs:
        # everything random in an epoch comes from (seed, epoch): resume-exact without RNG state
        rng = np.random.default_rng([seed, epoch])
        epoch_examples = _subset(train, settings.get("train_samples_per_epoch"), rng)
        views = [task.train_view(e, rng) for e in epoch_examples]
        batches = make_batches(task.batch_lengths(views), batch_size=int(settings["batch_size"]),
                               max_tokens=settings.get("max_tokens"), rng=rng)
        n_evals = max(1, int(settings.get("evals_per_epoch") or 1))
        validating = (epoch + 1) % every == 0 or epoch + 1 >= epochs
        eval_at = ({math.ceil(len(batches) * (j + 1) / n_evals) for j in range(n_evals)}
                   if validating else set())
        model.train()
        bar = progress_bar(total=len(batches), desc=f"{task.name} epoch {epoch + 1}", unit="batch",
                           disable=not progress, leave=False)
        with Prefetcher(_collated(task, views, batches, device), depth=2) as stream:
            for position, (indices, batch) in enumerate(stream, start=1):
                batch = _on_device(batch, device)
                # progress through the run: by steps when max_steps is set, else by epochs
                done_fraction = (step / int(max_steps) if max_steps is not None
                                 else (epoch + (position - 1) / len(batches)) / epochs)
                scale = finetune_scale(step, schedule, warmup, done_fraction)
                for group, lr in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = lr * scale
                # the step's random draws: global RNG (heads) and dropout rows, from (seed, step)
                skeleton.seed_step(seed, step)
                keys = row_keys(skeleton.dropout_seed(seed, step),
                                torch.arange(len(indices), device=device))  # made on the device
                with autocast(device, precision), row_seeds(model, keys):
                    output = model(batch.tokens, batch.padding_mask)
                loss = task.loss(_to_float(output), batch)
                loss.backward()
                step += 1
                guard.step(loss, 1.0, step)
                bar.update(1)
                last = max_steps is not None and step >= int(max_steps)
                if position in eval_at or last:
                    validate(epoch + position / len(batches))
                if last:
                    finished = True
                    break
        bar.close()
        epoch += 1
        finished = finished or epoch >= epochs
        if run_dir is not None:
            save(epoch, finished)
    guard.finish()
    if keep == "last":
        # the published scripts test the model after the last epoch; validation is only logged
        if history:
            last = history[-1]
            best = {"metric": task.selection, "epoch": last["epoch"], "step": last["step"],
                    "value": last.get(f"valid_{task.selection}", math.nan),
                    "valid_metrics": {k[len("valid_"):]: v for k, v in last.items() if k.startswith("valid_")}}
    else:
        model.load_state_dict(best_state)
    return FinetuneResult(model=model, best=best, history=history)


def encoder_width(encoder: nn.Module) -> int:
    """d, the width of ``last_inner_state``, read from the encoder's config (or ``output_dim``)."""
    if hasattr(encoder, "output_dim"):
        return int(encoder.output_dim)
    config = getattr(encoder, "config", None)
    for name in ("retnet_embed_dim", "embed_dim", "d_model"):
        if config is not None and hasattr(config, name):
            return int(getattr(config, name))
    raise ValueError(f"cannot tell the state width of {type(encoder).__name__}")


def encoder_k(encoder: nn.Module) -> int:
    """The tokenizer k the encoder was built for."""
    if hasattr(encoder, "k"):
        return int(encoder.k)
    return int(encoder.config.k)
