"""The MLM pretraining loop: token-budget batches, AdamW, accumulation, clipping, DDP, resume.

``pretrain(config, shards, out)`` trains an encoder on ``shards/train`` and validates on
``shards/valid``. Output folder::

    out/checkpoint/       the final model (config.json + weights.safetensors): what fine-tuning loads
    out/metrics.tsv       see rnaret.train.curves
    out/loss_curve.png
    out/summary.json      steps, tokens, final and best validation loss, unigram entropy
    out/train/            the run: fingerprint.json, step-*/ checkpoints, best/, live metrics.tsv

A rerun with the same ``out`` continues from the newest checkpoint in ``out/train`` when the
run's fingerprint (``rnaret.train.fingerprint``: the resolved settings, the shard index, the
initial weights, the validation set) equals the one the folder was started with; otherwise the
folder is moved to ``out/train.replaced`` and a fresh run starts, saying what changed. The state
holds optimizer, scheduler, RNG and data position, and every random draw of a step is seeded by
(seed, step) — masks, crops and dropout (``rnaret.model.dropout``, per row) — so a killed run
ends with the weights the uninterrupted run ends with.

What is its own: the token-budget batches and their masks, the MLM loss, the validation, the
data position and the metrics rows; seeds and random streams, the run folder's checkpoints and
resume, the optimizer and its step guard come from ``rnaret.train.skeleton`` (shared with
fine-tuning), the learning-rate schedule from ``rnaret.train.schedule``.

Per step, nothing waits for the device: a background thread builds, crops, masks (and on CUDA
pins) the next batches; the MLM head runs only at the chosen positions (their flat indices come
with the batch, computed on the CPU); losses, gradient norms and skipped-step counts are summed
on the device and read once per metrics row (``rnaret.train.guard``); a step whose loss or
gradient norm is not finite is skipped on the device. Precision: ``rnaret.precision``
(``config.precision``: fp32, bf16 autocast, auto, or fp16 = float16 autocast with a gradient
scaler on CUDA, as the published pretraining runs, fp32 on the CPU).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rnaret.checkpoint import training as ckpt
from rnaret.data.progress import progress as progress_bar
from rnaret.io.atomic import atomic_open
from rnaret.io.errors import InputError
from rnaret.masking import MaskingConfig, masked_lm_loss
from rnaret.model.dropout import row_seeds
from rnaret.precision import FP16, autocast, resolve_precision
from rnaret.train import distributed as dist_utils
from rnaret.train import fingerprint as fp
from rnaret.train import skeleton
from rnaret.train.config import PretrainConfig, model_name
from rnaret.train.curves import plot_loss_curve, write_metrics
from rnaret.train.data import (BatchStream, LocalBatch, effective_lengths, make_global_batch,
                               open_split, step_seed, unigram_entropy, validation_batches)
from rnaret.train.prefetch import Prefetcher, pin, to_device
from rnaret.train.schedule import make_scheduler
from rnaret.train.skeleton import TRAIN_TAG, VALID_TAG

RUN_SUBDIR = "train"
NAME = "rnaret pretrain"


@dataclass
class PretrainResult:
    """What a finished run reports (on every rank).

    resumed_from: the checkpoint the run continued from, or None; replaced: where an earlier run
    folder started from other settings or inputs was moved (a fresh run started), or None.
    """

    out: Path
    step: int
    valid_loss: float | None
    masked_accuracy: float | None
    unigram_entropy: float
    best_step: int | None
    best_valid_loss: float | None
    resumed_from: Path | None
    replaced: Path | None = None


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


def mlm_loss(model, batch: LocalBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, correct predictions) of ``batch`` (on the model's device).

    The encoder runs without its MLM head; the head then projects only the hidden states at the
    chosen positions: (N, d) -> (N, vocab), never (B, L, vocab) for the whole batch.
    """
    hidden = model(batch.inputs, return_logits=False).hidden  # (B, L, d)
    chosen = hidden.flatten(0, 1).index_select(0, batch.positions)  # (N, d)
    return masked_lm_loss(model.output_projection(chosen), batch.targets)


def _valid_stream(corpus, batches, config, ctx, masking):
    """This rank's validation batches (b % world_size == rank), built and pinned in order."""
    for b, indices in enumerate(batches):
        if b % ctx.world_size != ctx.rank:
            continue
        gen = torch.Generator().manual_seed(step_seed(config.seed, VALID_TAG, b))
        batch = make_global_batch(corpus, indices, config.k, config.max_train_len, gen, masking)
        yield pin(batch.local, ctx.device), int(batch.local.targets.numel())


def evaluate(model, corpus, batches: list[list[int]], config: PretrainConfig,
             ctx: dist_utils.DistributedContext) -> dict:
    """Validation MLM loss, masked accuracy and perplexity over the fixed ``batches``.

    Each rank takes whole batches (b % world_size == rank); sums stay on the device until the
    end, then are reduced over ranks. Masks are seeded per batch, so every evaluation scores the
    same masked tokens. Returns {"valid_loss", "masked_accuracy", "perplexity", "n_masked"}.
    """
    masking = _masking(config)
    precision = resolve_precision(config.precision, ctx.device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
    correct = torch.zeros((), dtype=torch.float64, device=ctx.device)
    n = 0
    with torch.no_grad(), Prefetcher(_valid_stream(corpus, batches, config, ctx, masking),
                                     depth=config.prefetch) as stream:
        for local, n_chosen in stream:
            with autocast(ctx.device, precision):
                s, c = mlm_loss(model, to_device(local, ctx.device))
            loss_sum += s.double()
            correct += c.double()
            n += n_chosen
    model.train(was_training)
    loss_sum, correct, n = dist_utils.all_reduce_sum([float(loss_sum), float(correct), n], ctx)
    loss = loss_sum / n if n else float("nan")
    return {"valid_loss": loss, "masked_accuracy": correct / n if n else float("nan"),
            "perplexity": math.exp(min(loss, 700.0)), "n_masked": int(n)}


def _masking(config: PretrainConfig) -> MaskingConfig:
    return MaskingConfig(mask_prob=config.mask_prob, mask_token_prob=config.mask_token_prob,
                         random_token_prob=config.random_token_prob)


def run_fingerprint(config: PretrainConfig, shards: Path, valid_batches, precision: str) -> dict:
    """The fingerprint of a pretraining run (``rnaret.train.fingerprint``): the settings that
    decide each step (with the resolved precision), the shard index, the initial weights and the
    validation batches."""
    return {"kind": "pretrain",
            "settings": {**config.run_settings(), "precision": precision},
            "inputs": {"shards": fp.shard_digest(shards),
                       "init_from": fp.file_digest(config.init_from) if config.init_from else None,
                       "validation_batches": fp.value_digest(valid_batches)}}


def pretrain(config: PretrainConfig, shards, out, *, device: str | None = None,
             threads: int | None = None, show_progress: bool = True,
             restart: bool = False) -> PretrainResult:
    """Train (or continue training) an encoder by MLM on ``shards``; write ``out`` (module doc).

    config: the run's ``PretrainConfig``; shards: a shard folder with train/ and valid/ splits
    (``rnaret shard``); ``config.init_from``: starting weights (a published ``.pth`` or our
    checkpoint) instead of a random initialisation — with ``config.max_steps == 0`` the run only
    converts and validates them; device: auto/None (CUDA when available), "cpu" or "cuda[:N]"
    (``rnaret.device``; an explicit cuda without a GPU is an error); threads: CPU threads for
    torch; restart: delete ``out/train`` first instead of resuming.
    Under torchrun, every rank calls this; rank 0 writes the files.
    """
    from rnaret.device import resolve_device

    kind = resolve_device(device).type  # fails at once for a GPU that is not there
    ctx = dist_utils.setup(kind)
    try:
        return _pretrain(config, Path(shards), Path(out), ctx, threads, show_progress, restart)
    finally:
        dist_utils.teardown(ctx)


def _step_batches(train, stream: BatchStream, config: PretrainConfig, ctx, first_step: int):
    """(step, micro-batches, stream position after them) for steps first_step .. max_steps - 1.

    Every draw of step s comes from a generator seeded by (seed, s); dropout keys from
    (seed, s, micro-batch, global row). Run in the prefetch thread, in step order.
    """
    masking = _masking(config)
    for step in range(first_step, config.max_steps):
        gen = torch.Generator().manual_seed(step_seed(config.seed, TRAIN_TAG, step))
        micro = [make_global_batch(train, stream.next(), config.k, config.max_train_len, gen, masking,
                                   ctx.rank, ctx.world_size,
                                   dropout_base=skeleton.dropout_seed(config.seed, step, j))
                 for j in range(config.accumulate)]
        yield step, pin(micro, ctx.device), stream.state()


def _pretrain(config, shards, out, ctx, threads, show_progress, restart) -> PretrainResult:
    if threads:
        torch.set_num_threads(threads)
    precision = resolve_precision(config.precision, ctx.device)
    train = open_split(shards, "train", config.k)
    valid = open_split(shards, "valid", config.k)
    valid_budget = config.valid_max_tokens or config.max_tokens
    valid_batches = validation_batches(effective_lengths(valid.lengths, config.max_train_len),
                                       valid_budget, config.seed, config.valid_max_batches,
                                       config.max_rows)
    run_dir = out / RUN_SUBDIR
    start = None
    if ctx.is_main:
        start = skeleton.open_run(run_dir, run_fingerprint(config, shards, valid_batches, precision),
                                  restart=restart, name=NAME)
    start = dist_utils.broadcast_object(start, ctx)
    dist_utils.barrier(ctx)

    # the same initial weights on every rank, whatever the rank
    skeleton.seed_everything(config.seed)
    model = build_model(config).to(ctx.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, guard = skeleton.make_optimizer(
        params, params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay,
        grad_clip=config.grad_clip, max_consecutive=config.max_nonfinite_steps, device=ctx.device, name=NAME)
    scheduler = make_scheduler(optimizer, config.schedule, t0=config.t0, t_mult=config.t_mult,
                               eta_min=config.eta_min, warmup=config.warmup_steps,
                               total=max(1, config.max_steps))
    # fp16 (the published pretraining, CUDA only): the loss is scaled before the backward pass
    # and the gradients unscaled before the guard clips and steps; a step with inf/NaN gradients
    # is skipped by the guard (as GradScaler.step would) and lowers the scale. Disabled: identity.
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == FP16)
    stream = BatchStream(effective_lengths(train.lengths, config.max_train_len),
                         config.max_tokens, config.seed, config.max_rows)
    entropy = unigram_entropy(valid, valid_batches, config.k, config.max_train_len, config.seed)

    step = 0
    rows: list[dict] = []
    acc = _fresh_accumulators()
    best = ckpt.read_best(run_dir)
    resumed_from, state = skeleton.resume(run_dir, model, optimizer, guard, scheduler=scheduler, scaler=scaler,
                                          rank=ctx.rank, world_size=ctx.world_size)
    if state is not None:
        stream.restore(state["data"])
        step = int(state["step"])
        rows = list(state["metrics"])
        acc = dict(state["accumulators"])
        if ctx.is_main:
            skeleton.log(NAME, f"resuming from {resumed_from} (step {step})")
    if ctx.enabled:
        _broadcast_parameters(model, ctx)

    name = model_name(config.architecture, config.k)
    progress = progress_bar(total=config.max_steps, initial=step, desc=f"pretrain {name}", unit="step",
                            disable=not (show_progress and ctx.is_main))
    last_eval = None
    if step == 0 and not rows:  # the starting point of the curve
        last_eval = evaluate(model, valid, valid_batches, config, ctx)
        rows.append({"step": 0, **_valid_cells(last_eval), "lr": scheduler.get_last_lr()[0]})
    interval_start = time.perf_counter()
    steps = Prefetcher(_step_batches(train, stream, config, ctx, step), depth=config.prefetch)
    try:
        for batch_step, micro, stream_state in steps:
            assert batch_step == step, "the batch stream and the loop disagree on the step"
            lr = scheduler.get_last_lr()[0]
            # any other random draw of the step (none in our models) from (seed, step, rank)
            skeleton.seed_step(config.seed, step, 1 + ctx.rank)
            n_chosen = sum(m.global_chosen for m in micro)  # the same number on every rank
            loss_total = torch.zeros((), dtype=torch.float32, device=ctx.device)
            for m in micro:
                if m.local is None:
                    continue
                local = to_device(m.local, ctx.device)
                with autocast(ctx.device, precision), row_seeds(model, local.row_keys):
                    loss_sum, _ = mlm_loss(model, local)
                # the global mean: gradients summed over ranks equal the one-process gradient
                scaler.scale(loss_sum / max(n_chosen, 1)).backward()
                loss_total = loss_total + loss_sum.detach().float()  # on the device: no sync
            global_loss = dist_utils.all_reduce_gradients(params, ctx, extra=loss_total)
            step += 1
            if scaler.is_enabled():
                scaler.unscale_(optimizer)
            guard.step(global_loss, n_chosen, step)
            if scaler.is_enabled():
                scaler.update()
            scheduler.step()
            acc["chosen"] += n_chosen
            acc["maskable"] += sum(m.global_maskable for m in micro)
            acc["tokens"] += sum(m.global_tokens for m in micro)
            acc["lr"] = lr
            progress.update(1)

            final = step == config.max_steps
            do_eval = step % config.eval_every == 0 or final
            if step % config.log_every == 0 or do_eval:
                elapsed = time.perf_counter() - interval_start
                interval = guard.interval()  # the one read of the device per metrics row
                row = {"step": step, "train_loss": interval["loss"],
                       "tokens_per_s": acc["tokens"] / max(elapsed, 1e-9), "lr": acc["lr"],
                       "masked_fraction": acc["chosen"] / max(acc["maskable"], 1),
                       "grad_norm": interval["grad_norm"], "skipped_steps": interval["skipped"]}
                if do_eval:
                    last_eval = evaluate(model, valid, valid_batches, config, ctx)
                    row.update(_valid_cells(last_eval))
                    if best is None or last_eval["valid_loss"] < best["valid_loss"]:
                        best = {"step": step, "valid_loss": last_eval["valid_loss"]}
                        if ctx.is_main:
                            ckpt.save_best(run_dir, model, step, last_eval["valid_loss"])
                rows.append(row)
                acc = _fresh_accumulators()
                if row["train_loss"] is not None:
                    progress.set_postfix(loss=f"{row['train_loss']:.3f}", lr=f"{lr:.2e}", refresh=False)
                if ctx.is_main:
                    write_metrics(run_dir / "metrics.tsv", rows)
            if step % config.checkpoint_every == 0 or final:
                rng = dist_utils.gather_objects(skeleton.rng_state(), ctx)
                if ctx.is_main:
                    state = {"step": step, "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "data": stream_state, "rng": rng,
                             "metrics": rows, "accumulators": acc, "guard": guard.state_dict(),
                             **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {}),
                             "world_size": ctx.world_size, "config": config.to_dict()}
                    skeleton.save(run_dir, step, model, state, config.keep_last, name=NAME, when=f"step {step}")
                dist_utils.barrier(ctx)
            if not acc["chosen"]:  # a row was just written: time the next interval from here
                interval_start = time.perf_counter()
        guard.finish()
    finally:
        steps.close()
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
                          resumed_from=resumed_from, replaced=start.replaced if start else None)


def _fresh_accumulators() -> dict:
    """Host-side sums over the steps since the last metrics row (all global counts)."""
    return {"chosen": 0, "maskable": 0, "tokens": 0, "lr": 0.0}


def _valid_cells(result: dict) -> dict:
    return {k: result[k] for k in ("valid_loss", "masked_accuracy", "perplexity")}


def _broadcast_parameters(model, ctx) -> None:
    """Rank 0's parameters and buffers on every rank (they are equal already; this makes sure)."""
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


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
