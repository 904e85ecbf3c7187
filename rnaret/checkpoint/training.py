"""The resumable state of a training run (pretraining and fine-tuning): checkpoints written
atomically, the last few kept, the best by validation loss kept.

Layout of a run folder (pretraining's ``<out>/train``, fine-tuning's ``<out>.train``)::

    fingerprint.json           what the run was started from (``rnaret.train.fingerprint``)
    step-000001000/            one checkpoint, renamed into place only once complete
        model/                 config.json + weights.safetensors (``save_encoder``;
                               fine-tuning: weights.safetensors of encoder + head)
        state.pt               optimizer, scheduler, RNG (python, numpy, torch CPU/CUDA per rank),
                               data position, step, metric history (torch.save; read weights_only)
    best/                      model/ + best.json {step, valid_loss}: the lowest validation loss

A process killed while writing leaves only a hidden temporary folder (``.step-…``), which the
next run removes; the folders named ``step-*`` are therefore complete, and one that cannot be
read is reported, naming the file, rather than skipped.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from rnaret.io.atomic import atomic_dir, atomic_open
from rnaret.io.errors import InputError

STEP_DIR = re.compile(r"^step-(\d{9})$")
MODEL_SUBDIR = "model"
STATE_FILE = "state.pt"
WEIGHTS_FILE = "weights.safetensors"
BEST_DIR = "best"
BEST_INFO = "best.json"


def step_dir_name(step: int) -> str:
    """Folder name of the checkpoint after optimizer step ``step``."""
    return f"step-{step:09d}"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``run_dir`` as (step, path), oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        m = STEP_DIR.match(child.name)
        if m and child.is_dir():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir) -> Path | None:
    """The checkpoint with the highest step in ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_partial_writes(run_dir) -> list[Path]:
    """Delete temporary folders a killed run left in ``run_dir``; return what was removed."""
    run_dir = Path(run_dir)
    removed = []
    if run_dir.is_dir():
        for child in run_dir.iterdir():
            if child.name.startswith((".step-", f".{BEST_DIR}.")) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def rng_state() -> dict:
    """This process's random number generator states, in types ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": [int(x) for x in keys], "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore states saved by ``rng_state`` (CUDA ones only where CUDA exists)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_weights(model: torch.nn.Module, folder) -> Path:
    """Write ``model``'s whole state dict to ``folder/weights.safetensors`` (any module, e.g. a
    task model of encoder + head; ``load_model_weights`` reads it back). Returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    # one metadata key: safetensors writes the metadata map in no fixed order, so a
    # second key would make identical weights differ in bytes from one process to the next
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    return folder


def save_checkpoint(run_dir, step: int, model: torch.nn.Module, state: dict, keep_last: int,
                    save_model=None) -> Path:
    """Write checkpoint ``step`` atomically, then delete all but the newest ``keep_last``.

    model: saved into ``model/`` by ``save_model(model, folder)`` (default
    ``rnaret.checkpoint.encoder.save_encoder``, for encoders; ``save_weights`` for any module); state: a
    dict of tensors and plain Python values (optimizer/scheduler state dicts, RNG states,
    positions). Returns the checkpoint folder; it appears under its name only once complete.
    """
    if save_model is None:
        from rnaret.checkpoint.encoder import save_encoder as save_model

    run_dir = Path(run_dir)
    target = run_dir / step_dir_name(step)
    with atomic_dir(target) as tmp:
        save_model(model, tmp / MODEL_SUBDIR)
        torch.save(state, tmp / STATE_FILE)
    for _, old in list_checkpoints(run_dir)[: -max(1, keep_last)]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path, model: torch.nn.Module) -> dict:
    """Load checkpoint folder ``path`` into ``model`` (in place) and return its training state.

    Raises ``InputError`` naming the file when the folder, its weights or its state is missing
    or unreadable, or when the weights do not fit ``model``.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "checkpoint folder does not exist")
    load_model_weights(path / MODEL_SUBDIR / WEIGHTS_FILE, model)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise InputError(state_file, "checkpoint state file is missing (delete the folder to resume from the previous checkpoint)")
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, wrong types: all mean a corrupt file
        raise InputError(state_file, f"checkpoint state cannot be read ({type(exc).__name__}: {exc}); "
                         "delete the folder to resume from the previous checkpoint") from exc
    if not isinstance(state, dict) or "step" not in state:
        raise InputError(state_file, "checkpoint state holds no 'step': not a state written by rnaret")
    return state


def load_model_weights(weights_file, model: torch.nn.Module) -> None:
    """Copy the tensors of a safetensors file into ``model`` (strict); InputError naming the file."""
    from safetensors.torch import load_file

    weights_file = Path(weights_file)
    if not weights_file.is_file():
        raise InputError(weights_file, "checkpoint weights file is missing")
    try:
        tensors = load_file(str(weights_file), device="cpu")
    except Exception as exc:
        raise InputError(weights_file, f"checkpoint weights cannot be read ({type(exc).__name__}: {exc})") from exc
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise InputError(weights_file, f"checkpoint weights do not fit the model: {exc}") from exc


def save_best(run_dir, model: torch.nn.Module, step: int, valid_loss: float) -> Path:
    """Replace ``run_dir/best`` atomically with ``model`` and its step and validation loss."""
    from rnaret.checkpoint.encoder import save_encoder

    target = Path(run_dir) / BEST_DIR
    with atomic_dir(target) as tmp:
        save_encoder(model, tmp / MODEL_SUBDIR)
        with atomic_open(tmp / BEST_INFO) as handle:
            json.dump({"step": step, "valid_loss": valid_loss}, handle)
    return target


def read_best(run_dir) -> dict | None:
    """The {step, valid_loss} of ``run_dir/best``, or None when there is none yet."""
    info = Path(run_dir) / BEST_DIR / BEST_INFO
    if not info.is_file():
        return None
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(info, f"cannot read best-checkpoint record: {exc}") from exc
