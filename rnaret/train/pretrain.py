"""The MLM pretraining loop: token-budget batches, AdamW, accumulation, clipping, DDP, resume.

``pretrain(config, shards, out)`` trains an encoder on ``shards/train`` and validates on
``shards/valid``. Output folder::

    out/checkpoint/       the final model (config.json + weights.safetensors): what fine-tuning loads
    out/metrics.tsv       see rnaret.train.curves
    out/loss_curve.png
    out/summary.json      steps, tokens, final and best validation loss, unigram entropy
    out/train/            run state: config.json, step-*/ checkpoints, best/, live metrics.tsv

A rerun with the same ``out`` continues from the newest checkpoint in ``out/train`` (the state
holds optimizer, scheduler, RNG and data position, and every random draw of a step is seeded by
(seed, step)), so a killed run ends with the weights the uninterrupted run ends with.
CUDA runs under bf16 autocast; CPU runs in float32; the code path is the same.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnaret.io.atomic import atomic_open
from rnaret.io.errors import InputError
from rnaret.masking import MaskingConfig, masked_lm_loss
from rnaret.train import checkpointing as ckpt
from rnaret.train import distributed as dist_utils
from rnaret.train.config import RESUMABLE_CHANGES, PretrainConfig, model_name
from rnaret.train.curves import plot_loss_curve, write_metrics
from rnaret.train.data import (BatchStream, effective_lengths, make_global_batch, open_split,
                               step_seed, unigram_entropy, validation_batches)
from rnaret.train.schedule import make_scheduler

RUN_SUBDIR = "train"
RUN_CONFIG = "config.json"
TRAIN_TAG, VALID_TAG = 0, 1  # seed streams: training steps and validation batches


@dataclass
class PretrainResult:
    """What a finished run reports (on every rank)."""

    out: Path
    step: int
    valid_loss: float | None
    masked_accuracy: float | None
    unigram_entropy: float
    best_step: int | None
    best_valid_loss: float | None
    resumed_from: Path | None


def build_model(config: PretrainConfig) -> torch.nn.Module:
    """A fresh encoder for ``config`` (via ``rnaret.model.build_encoder``), or the one loaded from
    ``config.init_from`` (a published ``pretrain_{k}mer.pth`` or one of our checkpoint folders;
    its own sizes then win over ``config.encoder``).

    The one place that turns a config into a model, for every architecture. Raises InputError
    naming ``init_from`` when it is missing, unreadable, or of another k or architecture.
    """
    from rnaret.model import build_encoder

    init_from = config.init_from
    if init_from is None:
        try:
            return build_encoder(config.encoder_config())
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("rnaret.model"):
                raise ValueError(f"architecture {config.architecture!r} is not available in this "
                                 f"installation ({exc.name} is missing)") from exc
            raise
    from rnaret.checkpoint import load_encoder

    path = Path(init_from)
    if not path.exists():
        raise InputError(path, "init_from checkpoint does not exist")
    try:
        model = load_encoder(path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"init_from checkpoint cannot be read ({type(exc).__name__}: {exc})") from exc
    if model.config.k != config.k:
        raise InputError(path, f"init_from checkpoint has k={model.config.k}, the run asks for k={config.k}")
    if model.config.architecture != config.architecture:
        raise InputError(path, f"init_from checkpoint is a {model.config.architecture} encoder, "
                         f"the run asks for {config.architecture}")
    return model.train()


def _autocast(config: PretrainConfig, device: torch.device):
    """bf16 autocast on CUDA ('auto'/'bf16'), or on CPU when asked for 'bf16'; else nothing."""
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def evaluate(model, corpus, batches: list[list[int]], config: PretrainConfig,
             ctx: dist_utils.DistributedContext) -> dict:
    """Validation MLM loss, masked accuracy and perplexity over the fixed ``batches``.

    Each rank takes whole batches (b % world_size == rank); sums are reduced over ranks.
    Masks are seeded per batch, so every evaluation scores the same masked tokens.
    Returns {"valid_loss", "masked_accuracy", "perplexity", "n_masked"}.
    """
    masking = _masking(config)
    was_training = model.training
    model.eval()
    loss_sum = correct = n = 0.0
    with torch.no_grad():
        for b, indices in enumerate(batches):
            if b % ctx.world_size != ctx.rank:
                continue
            gen = torch.Generator().manual_seed(step_seed(config.seed, VALID_TAG, b))
            batch = make_global_batch(corpus, indices, config.k, config.max_train_len, gen, masking).local
            inputs, labels = batch.inputs.to(ctx.device), batch.labels.to(ctx.device)
            with _autocast(config, ctx.device):
                logits = model(inputs).logits
            s, c = masked_lm_loss(logits, labels)
            loss_sum += float(s)
            correct += float(c)
            n += batch.n_chosen
    model.train(was_training)
    loss_sum, correct, n = dist_utils.all_reduce_sum([loss_sum, correct, n], ctx)
    loss = loss_sum / n if n else float("nan")
    return {"valid_loss": loss, "masked_accuracy": correct / n if n else float("nan"),
            "perplexity": math.exp(min(loss, 700.0)), "n_masked": int(n)}


def _masking(config: PretrainConfig) -> MaskingConfig:
    return MaskingConfig(mask_prob=config.mask_prob, mask_token_prob=config.mask_token_prob,
                         random_token_prob=config.random_token_prob)


def _check_run_config(run_dir: Path, config: PretrainConfig, ctx) -> None:
    """Refuse to continue a run in ``run_dir`` that was started with different settings."""
    path = run_dir / RUN_CONFIG
    if path.is_file():
        try:
            saved = PretrainConfig.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise InputError(path, f"cannot read the run's config: {exc}") from exc
        changed = [name for name in config.differences(saved) if name not in RESUMABLE_CHANGES]
        if changed:
            raise InputError(path, f"this run folder was started with other settings ({', '.join(changed)} "
                             f"differ); delete {run_dir} or pass --restart to start over")
    if ctx.is_main:
        with atomic_open(path, "w", encoding="utf-8") as handle:
            handle.write(config.to_json() + "\n")


def pretrain(config: PretrainConfig, shards, out, *, device: str | None = None,
             threads: int | None = None, show_progress: bool = True,
             restart: bool = False) -> PretrainResult:
    """Train (or continue training) an encoder by MLM on ``shards``; write ``out`` (module doc).

    config: the run's ``PretrainConfig``; shards: a shard folder with train/ and valid/ splits
    (``rnaret shard``); ``config.init_from``: starting weights (a published ``.pth`` or our
    checkpoint) instead of a random initialisation — with ``config.max_steps == 0`` the run only
    converts and validates them; device: "cpu", "cuda" or None (CUDA when available); threads: CPU
    threads for torch; restart: delete ``out/train`` first instead of resuming.
    Under torchrun, every rank calls this; rank 0 writes the files.
    """
    ctx = dist_utils.setup(device)
    try:
        return _pretrain(config, Path(shards), Path(out), ctx, threads, show_progress, restart)
    finally:
        dist_utils.teardown(ctx)


def _pretrain(config, shards, out, ctx, threads, show_progress, restart) -> PretrainResult:
    if threads:
        torch.set_num_threads(threads)
    run_dir = out / RUN_SUBDIR
    if ctx.is_main:
        if restart and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_partial_writes(run_dir)
    dist_utils.barrier(ctx)
    _check_run_config(run_dir, config, ctx)

    # the same initial weights on every rank, whatever the rank
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    train = open_split(shards, "train", config.k)
    valid = open_split(shards, "valid", config.k)
    model = build_model(config).to(ctx.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, eps=config.eps,
                                  weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config.schedule, t0=config.t0, t_mult=config.t_mult,
                               eta_min=config.eta_min, warmup=config.warmup_steps,
                               total=max(1, config.max_steps))
    stream = BatchStream(effective_lengths(train.lengths, config.max_train_len),
                         config.max_tokens, config.seed)
    valid_budget = config.valid_max_tokens or config.max_tokens
    valid_batches = validation_batches(effective_lengths(valid.lengths, config.max_train_len),
                                       valid_budget, config.seed, config.valid_max_batches)
    entropy = unigram_entropy(valid, valid_batches, config.k, config.max_train_len, config.seed)
    masking = _masking(config)

    step = 0
    rows: list[dict] = []
    acc = _fresh_accumulators()
    best = ckpt.read_best(run_dir)
    resumed_from = ckpt.latest_checkpoint(run_dir)
    if resumed_from is not None:
        state = ckpt.load_checkpoint(resumed_from, model)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        stream.restore(state["data"])
        step = int(state["step"])
        rows = list(state["metrics"])
        acc = dict(state["accumulators"])
        rng = state["rng"]
        if len(rng) == ctx.world_size:
            ckpt.set_rng_state(rng[ctx.rank])
        if ctx.is_main:
            print(f"rnaret pretrain: resuming from {resumed_from} (step {step})", file=sys.stderr, flush=True)
    if ctx.enabled:
        _broadcast_parameters(model, ctx)

    name = model_name(config.architecture, config.k)
    progress = _progress_bar(config.max_steps, step, name, show_progress and ctx.is_main)
    last_eval = None
    if step == 0 and not rows:  # the starting point of the curve
        last_eval = evaluate(model, valid, valid_batches, config, ctx)
        rows.append({"step": 0, **_valid_cells(last_eval), "lr": scheduler.get_last_lr()[0]})
    interval_start = time.perf_counter()
    while step < config.max_steps:
        lr = scheduler.get_last_lr()[0]
        # every random draw of this step comes from (seed, step): resume-exact, rank-count free
        gen = torch.Generator().manual_seed(step_seed(config.seed, TRAIN_TAG, step))
        torch.manual_seed(step_seed(config.seed, TRAIN_TAG, step, 1 + ctx.rank))
        micro = [make_global_batch(train, stream.next(), config.k, config.max_train_len, gen, masking,
                                   ctx.rank, ctx.world_size) for _ in range(config.accumulate)]
        n_chosen = sum(m.global_chosen for m in micro)  # the same number on every rank
        for m in micro:
            if m.local is None:
                continue
            inputs, labels = m.local.inputs.to(ctx.device), m.local.labels.to(ctx.device)
            with _autocast(config, ctx.device):
                logits = model(inputs).logits
            loss_sum, _ = masked_lm_loss(logits, labels)
            # the global mean: gradients summed over ranks equal the one-process gradient
            (loss_sum / max(n_chosen, 1)).backward()
            # kept on the device: no host sync per micro-batch
            acc["loss_sum"] = acc["loss_sum"] + loss_sum.detach().double()
        dist_utils.all_reduce_gradients(params, ctx)
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        acc["chosen"] += n_chosen
        acc["maskable"] += sum(m.global_maskable for m in micro)
        acc["tokens"] += sum(m.global_tokens for m in micro)
        acc["lr"] = lr
        progress.update(1)

        final = step == config.max_steps
        do_eval = step % config.eval_every == 0 or final
        if step % config.log_every == 0 or do_eval:
            elapsed = time.perf_counter() - interval_start
            (loss_sum,) = dist_utils.all_reduce_sum([float(acc["loss_sum"])], ctx)
            row = {"step": step, "train_loss": loss_sum / max(acc["chosen"], 1),
                   "tokens_per_s": acc["tokens"] / max(elapsed, 1e-9), "lr": acc["lr"],
                   "masked_fraction": acc["chosen"] / max(acc["maskable"], 1)}
            if do_eval:
                last_eval = evaluate(model, valid, valid_batches, config, ctx)
                row.update(_valid_cells(last_eval))
                if best is None or last_eval["valid_loss"] < best["valid_loss"]:
                    best = {"step": step, "valid_loss": last_eval["valid_loss"]}
                    if ctx.is_main:
                        ckpt.save_best(run_dir, model, step, last_eval["valid_loss"])
            rows.append(row)
            acc = _fresh_accumulators()
            progress.set_postfix(loss=f"{row['train_loss']:.3f}", lr=f"{lr:.2e}", refresh=False)
            if ctx.is_main:
                write_metrics(run_dir / "metrics.tsv", rows)
        if step % config.checkpoint_every == 0 or final:
            rng = dist_utils.gather_objects(ckpt.rng_state(), ctx)
            if ctx.is_main:
                state = {"step": step, "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "data": stream.state(), "rng": rng,
                         "metrics": rows, "accumulators": {**acc, "loss_sum": float(acc["loss_sum"])},
                         "world_size": ctx.world_size, "config": config.to_dict()}
                ckpt.save_checkpoint(run_dir, step, model, state, config.keep_last)
            dist_utils.barrier(ctx)
        if not acc["chosen"]:  # a row was just written: time the next interval from here
            interval_start = time.perf_counter()
    progress.close()

    if last_eval is None:  # resumed at the end, or max_steps == 0: report the current model
        last_eval = evaluate(model, valid, valid_batches, config, ctx)
        if not rows or rows[-1]["step"] != step or rows[-1].get("valid_loss") is None:
            rows.append({"step": step, **_valid_cells(last_eval), "lr": scheduler.get_last_lr()[0]})
    if best is None:
        best = {"step": step, "valid_loss": last_eval["valid_loss"]}
    if ctx.is_main:
        _write_outputs(out, model, rows, entropy, config, step, last_eval, best, name)
    dist_utils.barrier(ctx)
    return PretrainResult(out=out, step=step, valid_loss=last_eval["valid_loss"],
                          masked_accuracy=last_eval["masked_accuracy"], unigram_entropy=entropy,
                          best_step=best["step"], best_valid_loss=best["valid_loss"],
                          resumed_from=resumed_from)


def _fresh_accumulators() -> dict:
    """Sums over the steps since the last metrics row (loss_sum: this rank's, the rest global)."""
    return {"loss_sum": 0.0, "chosen": 0, "maskable": 0, "tokens": 0, "lr": 0.0}


def _valid_cells(result: dict) -> dict:
    return {k: result[k] for k in ("valid_loss", "masked_accuracy", "perplexity")}


def _broadcast_parameters(model, ctx) -> None:
    """Rank 0's parameters and buffers on every rank (they are equal already; this makes sure)."""
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def _progress_bar(total: int, initial: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    # a log file gets an update every 30 s instead of a carriage-return stream
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=f"pretrain {name}", unit="step",
                disable=not enabled, mininterval=0.5 if interactive else 30.0, dynamic_ncols=True)


def _write_outputs(out: Path, model, rows, entropy, config, step, last_eval, best, name) -> None:
    """The rule's outputs: final model, metrics TSV, loss-curve PNG, summary JSON."""
    from rnaret.checkpoint import save_encoder

    save_encoder(model, out / "checkpoint")
    write_metrics(out / "metrics.tsv", rows)
    init_from = config.init_from
    source = f" from {Path(init_from).name}" if init_from else ""
    plot_loss_curve(out / "loss_curve.png", rows, unigram_entropy=entropy,
                    title=f"{name} MLM pretraining{source} ({step} steps)")
    summary = {"model": name, "steps": step, "valid_loss": last_eval["valid_loss"],
               "masked_accuracy": last_eval["masked_accuracy"], "perplexity": last_eval["perplexity"],
               "unigram_entropy": entropy, "best_step": best["step"],
               "best_valid_loss": best["valid_loss"],
               "init_from": str(init_from) if init_from else None,
               "parameters": sum(p.numel() for p in model.parameters()),
               "config": config.to_dict()}
    with atomic_open(out / "summary.json", "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
        handle.write("\n")
