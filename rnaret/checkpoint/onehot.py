"""The one-hot control model's folder (``rnaret.model.onehot``): its config, its only state.

The fixed random projection is a buffer re-made from the config's seed, so the folder holds one
file, ``onehot.json``: ``{"model_type": "onehot", "k", "project_dim", "seed", "cls_segments"}``.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rnaret.io.atomic import atomic_dir
from rnaret.io.errors import InputError
from rnaret.model.onehot import OneHotConfig, OneHotModel

CONFIG_NAME = "onehot.json"


def save_onehot(model: OneHotModel, path) -> Path:
    """Write the model's config into folder ``path`` atomically -> ``path``."""
    with atomic_dir(path) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps({"model_type": "onehot", **asdict(model.config)}) + "\n")
    return Path(path)


def load_onehot(path) -> OneHotModel:
    """Read a folder written by ``save_onehot`` -> OneHotModel in eval mode; InputError naming
    the folder when it holds no ``onehot.json``."""
    file = Path(path) / CONFIG_NAME
    if not file.is_file():
        raise InputError(path, f"not a onehot model folder (no {CONFIG_NAME})")
    values = json.loads(file.read_text())
    values.pop("model_type", None)
    model = OneHotModel(OneHotConfig(**values))
    model.eval()
    return model
