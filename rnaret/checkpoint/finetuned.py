"""Fine-tuned checkpoint folders: an encoder and a task head, written by ``rnaret finetune``.

A fine-tuned checkpoint is a folder::

    task.json          {"task", "settings", "encoder_kind", "init", "precision", "best": {...}}
    encoder/           the encoder (``rnaret.checkpoint.encoder.save_encoder``, or
                       ``rnaret.checkpoint.onehot.save_onehot`` for the one-hot control)
    head.safetensors   the head's state dict
    train_log.tsv      one row per validation (``rnaret.train.curves.write_history``)

Every reader raises InputError naming the file when the folder is not such a checkpoint or a
part of it is missing, damaged or does not fit the others.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from torch import Tensor

from rnaret.checkpoint.encoder import build_checked, read_safetensors
from rnaret.io.atomic import atomic_dir
from rnaret.io.errors import InputError
from rnaret.io.mapping import read_json_object

TASK_NAME = "task.json"
HEAD_NAME = "head.safetensors"
ENCODER_KINDS = ("retnet", "transformer", "onehot")


def save_finetuned(model, task, path: Path, *, encoder_kind: str, init: str,
                   best: dict | None = None, history: list[dict] | None = None,
                   precision: str | None = None) -> Path:
    """Write a fine-tuned checkpoint folder (see the module docstring) of ``model`` (a
    ``rnaret.tasks.finetune.TaskModel``) trained on ``task`` atomically -> ``path``; ``history``
    (the per-validation records of ``finetune``) goes to ``train_log.tsv`` in it; ``precision``:
    the resolved precision it was trained in (recorded in task.json)."""
    from safetensors.torch import save_file

    from rnaret.checkpoint.encoder import save_encoder
    from rnaret.checkpoint.onehot import save_onehot
    from rnaret.model.onehot import OneHotModel
    from rnaret.train.curves import write_history

    with atomic_dir(path) as tmp:
        if isinstance(model.encoder, OneHotModel):
            save_onehot(model.encoder, tmp / "encoder")
        else:
            save_encoder(model.encoder, tmp / "encoder")
        head_state = {key: value.detach().to("cpu").contiguous() for key, value in model.head.state_dict().items()}
        save_file(head_state, str(tmp / HEAD_NAME))
        meta = {**task.describe(), "encoder_kind": encoder_kind, "init": str(init),
                "precision": precision, "best": _jsonable(best or {})}
        (tmp / TASK_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        if history:
            write_history(history, tmp / "train_log.tsv")
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
    """True when ``path`` is a folder meant as one written by ``save_finetuned`` (it holds a
    ``task.json``; ``load_finetuned`` then names whatever else is missing or damaged)."""
    return (Path(path) / TASK_NAME).is_file()


def load_finetuned(path, *, settings_override: dict | None = None):
    """Load a fine-tuned checkpoint folder -> (task, TaskModel in eval mode on CPU, metadata).

    Raises InputError naming the file when the folder is not a fine-tuned checkpoint or its
    task.json, encoder or head.safetensors is missing, damaged or does not fit the others.
    """
    from rnaret.tasks import get_task
    from rnaret.tasks.finetune import TaskModel, encoder_width

    path = Path(path)
    meta = read_task_meta(path)
    try:
        task = get_task(meta["task"], {**meta.get("settings", {}), **(settings_override or {})})
    except ValueError as exc:
        raise InputError(path / TASK_NAME, str(exc)) from None
    if meta.get("encoder_kind") == "onehot":
        from rnaret.checkpoint.onehot import load_onehot

        encoder = load_onehot(path / "encoder")
    else:
        from rnaret.checkpoint.encoder import load_encoder

        encoder = load_encoder(path / "encoder")
    head = build_checked(lambda: task.build_head(encoder_width(encoder)), read_head_state(path),
                         path / HEAD_NAME, what=f"{task.name} head", settings_path=path / TASK_NAME)
    model = TaskModel(encoder, head)
    model.eval()
    return task, model, meta


def read_task_meta(folder) -> dict:
    """The ``task.json`` of a fine-tuned checkpoint folder -> its mapping, checked: ``task`` a
    non-empty string, ``settings`` a mapping (optional), ``encoder_kind`` one of
    ``ENCODER_KINDS`` (optional, default retnet). InputError naming the file otherwise."""
    path = Path(folder) / TASK_NAME
    if not path.exists():
        raise InputError(folder, f"not a fine-tuned checkpoint folder (no {TASK_NAME})")
    meta = read_json_object(path)
    if not isinstance(meta.get("task"), str) or not meta["task"]:
        raise InputError(path, "'task' must name the task (a string)")
    if not isinstance(meta.get("settings", {}), dict):
        raise InputError(path, "'settings' must be a mapping of setting names to values")
    if meta.get("encoder_kind", "retnet") not in ENCODER_KINDS:
        raise InputError(path, f"'encoder_kind' must be one of {', '.join(ENCODER_KINDS)}, "
                               f"got {str(meta.get('encoder_kind'))[:40]!r}")
    return meta


def read_head_state(folder) -> dict[str, Tensor]:
    """The head weights (``head.safetensors``) of a fine-tuned checkpoint folder; InputError
    naming the file when it is missing, truncated or corrupt."""
    path = Path(folder) / HEAD_NAME
    if not path.exists():
        raise InputError(folder, f"the fine-tuned checkpoint has no {HEAD_NAME}")
    return read_safetensors(path)
