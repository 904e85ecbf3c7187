"""Property-based fuzzing of the checkpoint readers: config.json, weights.safetensors, a published
``.pth``, and a fine-tuned folder's task.json and head.safetensors. Any bytes, or a valid file
with a few edits, either load (a model in eval mode) or raise ``InputError`` naming the damaged
file — never another exception, and never a model built from a config the weights do not fit."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import event, given

from fuzzing import FUZZ, check_error, inputs
from rnaret.checkpoint import load_encoder, save_encoder
from rnaret.checkpoint.published import read_pth
from rnaret.io.errors import InputError
from rnaret.model import EncoderConfig, RetNetEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

# the smallest encoder that has every part of the real one (k = 5, as the interaction head wants)
CONFIG = EncoderConfig(vocab_size=4**5 + 6, retnet_embed_dim=8, retnet_value_embed_dim=8, retnet_ffn_embed_dim=16,
                       retnet_layers=2, retnet_retention_heads=2)


def _valid_files() -> dict[str, bytes]:
    """The bytes of valid checkpoint files (an encoder folder, a published-layout .pth, a
    fine-tuned folder of the interaction task), made once when the module is collected."""
    from rnaret.tasks import get_task
    from rnaret.checkpoint.finetuned import save_finetuned
    from rnaret.tasks.finetune import TaskModel

    torch.manual_seed(0)
    encoder = RetNetEncoder(CONFIG).eval()
    task = get_task("interaction")
    folder = Path(tempfile.mkdtemp(prefix="rnaret_fuzz_"))
    try:
        save_encoder(encoder, folder / "encoder")
        torch.save(encoder.state_dict(), folder / "pretrain_5mer.pth")
        save_finetuned(TaskModel(encoder, task.build_head(8)), task, folder / "ft", encoder_kind="retnet", init="x")
        return {"config": (folder / "encoder/config.json").read_bytes(),
                "weights": (folder / "encoder/weights.safetensors").read_bytes(),
                "pth": (folder / "pretrain_5mer.pth").read_bytes(),
                "task": (folder / "ft/task.json").read_bytes(),
                "head": (folder / "ft/head.safetensors").read_bytes()}
    finally:
        shutil.rmtree(folder)


VALID = _valid_files()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Working copies: encoder/ (config.json, weights.safetensors), ft/ (task.json, encoder/,
    head.safetensors) and pretrain_5mer.pth; each case rewrites one file and restores it."""
    root = tmp_path_factory.mktemp("checkpoints")
    for folder in (root / "encoder", root / "ft" / "encoder"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_bytes(VALID["config"])
        (folder / "weights.safetensors").write_bytes(VALID["weights"])
    (root / "ft" / "task.json").write_bytes(VALID["task"])
    (root / "ft" / "head.safetensors").write_bytes(VALID["head"])
    (root / "pretrain_5mer.pth").write_bytes(VALID["pth"])
    return root


def load_or_refuse(target: Path, data: bytes, valid: bytes, load, known_text: bool = False):
    """Write ``data`` to ``target``, ``load()`` -> what it loaded, or None after checking that the
    InputError names the checkpoint; the valid file is put back afterwards."""
    target.write_bytes(data)
    try:
        loaded = load()
    except InputError as exc:
        named = target.parent if target.name in ("config.json", "weights.safetensors") else target
        check_error(exc, named, data if known_text else None)
        event(f"refused: {re.sub(r'[0-9]+', 'N', exc.what)[:50]}")  # --hypothesis-show-statistics
        return None
    finally:
        target.write_bytes(valid)
    event("loaded")
    return loaded


def test_the_valid_files_load(work):
    from rnaret.checkpoint.finetuned import load_finetuned

    assert load_encoder(work / "encoder").config == CONFIG == load_encoder(work / "pretrain_5mer.pth").config
    assert load_finetuned(work / "ft")[0].name == "interaction"


@FUZZ
@given(data=inputs(VALID["config"]))
def test_fuzz_config_json(work, data):
    model = load_or_refuse(work / "encoder/config.json", data, VALID["config"], lambda: load_encoder(work / "encoder"),
                           known_text=True)
    if model is not None:
        # whatever else the edit changed, the model has the shape the weights hold
        assert not model.training and model.config.retnet_embed_dim == 8 and model.config.k == 5


@FUZZ
@given(data=inputs(VALID["weights"], max_size=600))
def test_fuzz_weights_safetensors(work, data):
    model = load_or_refuse(work / "encoder/weights.safetensors", data, VALID["weights"],
                           lambda: load_encoder(work / "encoder"))
    if model is not None:
        assert not model.training and model.config == CONFIG


@FUZZ
@given(data=inputs(VALID["pth"], max_size=600))
def test_fuzz_published_pth(work, data):
    path = work / "pretrain_5mer.pth"
    model = load_or_refuse(path, data, VALID["pth"], lambda: (load_encoder(path), read_pth(path)))
    if model is not None:
        model, state = model
        assert not model.training and set(model.state_dict()) <= set(state) | {"retnet_rel_pos.angle"}


@FUZZ
@given(data=inputs(VALID["task"], max_size=600))
def test_fuzz_task_json(work, data):
    from rnaret.checkpoint.finetuned import load_finetuned

    loaded = load_or_refuse(work / "ft/task.json", data, VALID["task"], lambda: load_finetuned(work / "ft"),
                            known_text=True)
    if loaded is not None:
        task, model, meta = loaded
        assert not model.training and task.name in ("interaction", "coding", "structure")


@FUZZ
@given(data=inputs(VALID["head"], max_size=600))
def test_fuzz_head_safetensors(work, data):
    from rnaret.checkpoint.finetuned import load_finetuned

    loaded = load_or_refuse(work / "ft/head.safetensors", data, VALID["head"], lambda: load_finetuned(work / "ft"))
    if loaded is not None:
        assert not loaded[1].training
