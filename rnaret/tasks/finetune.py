"""The generic fine-tuning and evaluation loop shared by every task (see ``rnaret.tasks.base``).

Seeded; AdamW; a number of epochs or of steps; batches of a fixed size or a token budget, made
of examples of similar length; validation ``evals_per_epoch`` times per epoch and the best
checkpoint (highest ``task.selection`` on valid) kept — not the last one; the encoder
fine-tuned whole or frozen (``freeze_encoder``); float32 on CPU, bf16 autocast on CUDA.

A fine-tuned checkpoint is a folder::

    task.json          {"task", "settings", "encoder_kind", "init", "best": {...}}
    encoder/           the encoder (``save_encoder`` of rnaret.checkpoint, or the onehot model's)
    head.safetensors   the head's state dict
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rnaret.data.progress import progress as progress_bar
from rnaret.io.atomic import atomic_dir, atomic_open
from rnaret.tasks.base import Example, Task


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


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, precision: str = "auto"):
    """The autocast of ``precision`` (``rnaret.precision``, the one switch); ``auto`` keeps this
    loop's rule of bf16 on CUDA and float32 on CPU, as the pretraining loop does."""
    from rnaret.precision import autocast as precision_autocast

    if precision == "auto":
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


@torch.no_grad()
def predict(task: Task, model: nn.Module, examples: list[Example], *, device: torch.device,
            max_tokens: int | None = None, progress: bool = True, desc: str = "predict",
            precision: str = "auto") -> list[dict]:
    """Run ``model`` over ``examples`` in eval mode -> prediction rows in the examples' order."""
    model.eval()
    budget = int(max_tokens or task.settings["eval_max_tokens"])
    batches = make_batches([len(e.tokens) for e in examples], max_tokens=budget)
    rows: list[dict | None] = [None] * len(examples)
    with progress_bar(total=len(examples), desc=desc, unit="seq", disable=not progress, leave=False) as bar:
        for indices in batches:
            batch = task.collate([examples[i] for i in indices]).to(device)
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
             precision: str = "auto") -> tuple[list[dict], dict[str, float]]:
    """Predict ``examples`` and compute the task's metrics -> (rows, metrics)."""
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
             log_path: Path | None = None, precision: str = "auto") -> FinetuneResult:
    """Fine-tune ``model`` on ``train``, choosing the best state on ``valid``.

    Settings come from ``task.settings`` (see ``rnaret.tasks.base.COMMON_SETTINGS``). Returns
    the model with the best validation weights loaded, the best point and the per-evaluation
    history (also written to ``log_path`` as TSV when given).
    """
    settings = task.settings
    seed = int(settings["seed"])
    seed_everything(seed)
    device = device or pick_device()
    model.to(device)
    rng = np.random.default_rng(seed)
    valid = _subset(valid, settings.get("valid_max_examples"), np.random.default_rng(seed + 1))

    head_lr = settings.get("head_lr") or settings["lr"]
    groups = [{"params": [p for p in model.head.parameters() if p.requires_grad], "lr": float(head_lr)}]
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": float(settings["lr"])})
    optimizer = torch.optim.AdamW(groups, weight_decay=float(settings["weight_decay"]))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    warmup = int(settings.get("warmup_steps") or 0)
    max_steps = settings.get("max_steps")
    epochs = int(settings["epochs"]) if max_steps is None else 10**9
    schedule = settings.get("lr_schedule") or "constant"
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be constant or cosine, got {schedule!r}")
    clip = settings.get("grad_clip")

    def trainable_state() -> dict[str, torch.Tensor]:
        return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}

    best: dict[str, Any] = {"metric": task.selection, "value": -math.inf}
    best_state = trainable_state()
    history: list[dict[str, Any]] = []
    step = 0
    started = time.monotonic()

    def validate(epoch: float, train_loss: float) -> None:
        nonlocal best_state
        _, metrics = evaluate(task, model, valid, device=device, progress=progress, desc="valid",
                              precision=precision)
        value = metrics.get(task.selection, float("nan"))
        record = {"epoch": round(epoch, 3), "step": step, "train_loss": train_loss,
                  **{f"valid_{key}": val for key, val in metrics.items()},
                  "seconds": round(time.monotonic() - started, 1)}
        history.append(record)
        # NaN never wins; ties keep the earlier (cheaper) checkpoint
        if not math.isnan(value) and value > best["value"]:
            best.update(epoch=record["epoch"], step=step, value=value, valid_metrics=metrics)
            best_state = trainable_state()
        if log_path is not None:
            _write_history(history, log_path)
        print(f"{task.name}: epoch {record['epoch']} step {step} train_loss {train_loss:.4f} valid "
              f"{task.selection} {value:.4f} (best {best['value']:.4f}) {record['seconds']} s",
              file=sys.stderr, flush=True)
        model.train()

    done = False
    for epoch in range(epochs):
        epoch_examples = _subset(train, settings.get("train_samples_per_epoch"), rng)
        views = [task.train_view(e, rng) for e in epoch_examples]
        batches = make_batches([len(v.tokens) for v in views], batch_size=int(settings["batch_size"]),
                               max_tokens=settings.get("max_tokens"), rng=rng)
        n_evals = max(1, int(settings.get("evals_per_epoch") or 1))
        eval_at = {math.ceil(len(batches) * (j + 1) / n_evals) for j in range(n_evals)}
        model.train()
        losses: list[float] = []
        bar = progress_bar(batches, desc=f"{task.name} epoch {epoch + 1}", unit="batch", disable=not progress,
                           leave=False)
        for position, indices in enumerate(bar, start=1):
            batch = task.collate([views[i] for i in indices]).to(device)
            scale = min(1.0, (step + 1) / warmup) if warmup else 1.0
            if schedule == "cosine":
                # progress through the run: by steps when max_steps is set, else by epochs
                done_fraction = (step / int(max_steps) if max_steps is not None
                                 else (epoch + (position - 1) / len(batches)) / epochs)
                scale *= 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done_fraction)))
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = lr * scale
            with autocast(device, precision):
                output = model(batch.tokens, batch.padding_mask)
            loss = task.loss(_to_float(output), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], float(clip))
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
            last = max_steps is not None and step >= int(max_steps)
            if position in eval_at or last:
                validate(epoch + position / len(batches), float(np.mean(losses)))
                losses = []
            if last:
                done = True
                break
        bar.close()
        if done:
            break
    model.load_state_dict(best_state)
    return FinetuneResult(model=model, best=best, history=history)


def _write_history(history: list[dict], path: Path) -> None:
    import pandas as pd

    with atomic_open(path) as handle:
        pd.DataFrame(history).to_csv(handle, sep="\t", index=False, float_format="%.6g")


# -- fine-tuned checkpoints -----------------------------------------------------------------
def save_finetuned(model: TaskModel, task: Task, path: Path, *, encoder_kind: str, init: str,
                   best: dict | None = None, history: list[dict] | None = None) -> Path:
    """Write a fine-tuned checkpoint folder (see the module docstring) atomically -> ``path``;
    ``history`` (the per-validation records of ``finetune``) goes to ``train_log.tsv`` in it."""
    from safetensors.torch import save_file

    from rnaret.model.onehot import OneHotModel, save_onehot

    with atomic_dir(path) as tmp:
        if isinstance(model.encoder, OneHotModel):
            save_onehot(model.encoder, tmp / "encoder")
        else:
            from rnaret.checkpoint import save_encoder

            save_encoder(model.encoder, tmp / "encoder")
        head_state = {key: value.detach().to("cpu").contiguous() for key, value in model.head.state_dict().items()}
        save_file(head_state, str(tmp / "head.safetensors"))
        meta = {**task.describe(), "encoder_kind": encoder_kind, "init": str(init),
                "best": _jsonable(best or {})}
        (tmp / "task.json").write_text(json.dumps(meta, indent=2) + "\n")
        if history:
            _write_history(history, tmp / "train_log.tsv")
    return Path(path)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def is_finetuned_checkpoint(path) -> bool:
    """True when ``path`` is a folder written by ``save_finetuned``."""
    return (Path(path) / "task.json").is_file() and (Path(path) / "head.safetensors").is_file()


def load_finetuned(path, *, settings_override: dict | None = None) -> tuple[Task, TaskModel, dict]:
    """Load a fine-tuned checkpoint folder -> (task, model in eval mode on CPU, metadata).

    Raises InputError when the folder is not a fine-tuned checkpoint.
    """
    from safetensors.torch import load_file

    from rnaret.io.errors import InputError
    from rnaret.tasks import get_task

    path = Path(path)
    if not is_finetuned_checkpoint(path):
        raise InputError(path, "not a fine-tuned checkpoint folder (needs task.json and head.safetensors)")
    meta = json.loads((path / "task.json").read_text())
    task = get_task(meta["task"], {**meta.get("settings", {}), **(settings_override or {})})
    if meta.get("encoder_kind") == "onehot":
        from rnaret.model.onehot import load_onehot

        encoder = load_onehot(path / "encoder")
    else:
        from rnaret.checkpoint import load_encoder

        encoder = load_encoder(path / "encoder")
    head = task.build_head(encoder_width(encoder))
    head.load_state_dict(load_file(str(path / "head.safetensors")), strict=True)
    model = TaskModel(encoder, head)
    model.eval()
    return task, model, meta


def load_published_finetuned(path, task: Task) -> TaskModel:
    """A released fine-tuned ``.pth`` (keys ``ret.*`` + ``classifier.*``) -> TaskModel in eval mode."""
    from rnaret.checkpoint import load_encoder, load_published_state_dict
    from rnaret.io.errors import InputError

    _, head_state = load_published_state_dict(path)
    if not head_state:
        raise InputError(path, "no classifier.* weights: a pretraining file, not a fine-tuned one")
    encoder = load_encoder(path)  # the ret.* part
    head = task.build_head(encoder_width(encoder))
    try:
        task.load_published_head(head, head_state)
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    model = TaskModel(encoder, head)
    model.eval()
    return model


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
