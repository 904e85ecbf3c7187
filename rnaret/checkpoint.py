"""Checkpoint I/O: our safetensors + JSON checkpoints, and the published ``.pth`` files.

Formats ``load_encoder`` accepts:

* a directory with ``config.json`` and ``weights.safetensors``: ours (written by
  ``save_encoder``; the config holds every ``EncoderConfig`` field) or published-style (only the
  published config fields, k inferred from vocab_size = 4**k + 6), e.g. the reference
  ``official_vectors/`` folder;
* a ``.safetensors`` file (config from a ``config.json`` beside it, else inferred from shapes);
* a published ``.pth`` (any other file): a pickled state dict read with
  ``torch.load(..., weights_only=True)``, so that nothing but tensors is ever unpickled. Bare
  encoder keys (``pretrain_{1,3,5}mer.pth``) or ``ret.*`` + ``classifier.*`` (fine-tuned files;
  the encoder comes from ``ret.*``, the head weights from ``load_published_state_dict``).
  The config is inferred from the tensor shapes.

Every problem raises ``rnaret.io.errors.InputError`` naming the file.
"""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch
from torch import Tensor

from rnaret.io.atomic import atomic_dir
from rnaret.io.errors import InputError
from rnaret.model import EncoderConfig, build_encoder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
DEFAULT_HEADS = 4
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")


def save_encoder(model, directory) -> Path:
    """Write ``model`` (RetNetEncoder or TransformerEncoder) to ``directory`` atomically:
    ``config.json`` (every EncoderConfig field) and ``weights.safetensors`` (the state dict,
    buffers included, float tensors as they are). Returns the directory.

    An existing directory is replaced only when it holds nothing but those two files.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    if directory.exists():
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in (CONFIG_NAME, WEIGHTS_NAME))
        if foreign:
            raise ValueError(f"{directory}: refusing to replace a directory that holds other files: {foreign[:5]}")
    state = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    with atomic_dir(directory) as tmp:
        (tmp / CONFIG_NAME).write_text(model.config.to_json() + "\n")
        # one metadata key: safetensors writes the metadata map in no fixed order, so a
        # second key would make identical weights differ in bytes from one process to the next
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory


def load_encoder(path, device="cpu", strict: bool = True, retention_heads: int | None = None):
    """Load an encoder in eval mode from a checkpoint directory, a ``.safetensors`` file or a
    published ``.pth`` (see the module docstring) onto ``device``.

    ``strict``: every key of the model must be in the file with the same shape, and no other
    key may be there (else InputError listing missing / unexpected / mismatched keys);
    with ``strict=False`` missing and unexpected keys are tolerated, shape mismatches are not.
    ``retention_heads``: head count when it cannot be read from the file (no config and no
    ``retnet_rel_pos.decay`` buffer); default 4, the paper's.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such checkpoint file or directory")
    if path.is_dir():
        config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
        if not weights_path.exists():
            raise InputError(path, f"checkpoint directory has no {WEIGHTS_NAME}")
        if not config_path.exists():
            raise InputError(path, f"checkpoint directory has no {CONFIG_NAME}")
        state = _read_safetensors(weights_path)
        config = read_config(config_path)
        source = weights_path
    elif path.suffix == ".safetensors":
        state = _read_safetensors(path)
        sibling = path.with_name(CONFIG_NAME)
        config = read_config(sibling) if sibling.exists() else infer_config(state, path, retention_heads)
        source = path
    else:
        state, _ = load_published_state_dict(path)
        config = infer_config(state, path, retention_heads)
        source = path
    model = build_encoder(config)
    load_state_checked(model, state, source, strict=strict)
    return model.to(device).eval()


def read_config(path) -> EncoderConfig:
    """EncoderConfig from a JSON file (ours or the published field names); InputError if bad."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot read the config as JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(path, "the config must be a JSON object")
    try:
        return EncoderConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"bad encoder config: {exc}") from exc


def _read_safetensors(path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(path, f"not a readable safetensors file: {exc}") from exc


def read_pth(path) -> dict[str, Tensor]:
    """The flat {name: tensor} dict of a ``.pth`` file, unpickled with ``weights_only=True``.

    A file holding any pickled object other than tensors and plain containers is refused with
    an InputError before anything in it runs. A {"state_dict": {...}} or {"model": {...}}
    wrapper is unwrapped.
    """
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # name what torch's restricted unpickler refused, not its advice to switch it off
        detail = [ln.strip() for ln in str(exc).splitlines()
                  if re.match(r"(Trying to load unsupported|Unsupported)", ln.strip())]
        raise InputError(path, "refused: the file holds pickled objects other than tensors "
                               "(not unpickled, nothing in it was run)"
                               + (f": {detail[0]}" if detail else "")) from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        raise InputError(path, f"not a readable PyTorch checkpoint: {exc}") from exc
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model") \
            and isinstance(next(iter(obj.values())), dict):
        obj = next(iter(obj.values()))
    if not isinstance(obj, dict) or not obj:
        raise InputError(path, f"expected a non-empty state dict, found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise InputError(path, f"not a state dict: entries that are not named tensors: {bad[:5]}")
    return dict(obj)


def load_published_state_dict(path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(encoder_state, head_state) of a published ``.pth``.

    Bare keys (pretraining files): (state, {}). Fine-tuned files: ``ret.X`` -> encoder ``X``,
    ``classifier.Y`` -> head ``Y`` (load it into the matching task head). Any other prefix in
    a fine-tuned file is an InputError naming the keys.
    """
    state = read_pth(path)
    if not any(k.startswith("ret.") for k in state):
        return state, {}
    encoder = {k[len("ret."):]: v for k, v in state.items() if k.startswith("ret.")}
    head = {k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")}
    other = sorted(k for k in state if not k.startswith(("ret.", "classifier.")))
    if other:
        raise InputError(path, f"fine-tuned checkpoint with keys outside ret.* and classifier.*: {other[:8]}")
    return encoder, head


def infer_config(state: dict[str, Tensor], path, retention_heads: int | None = None) -> EncoderConfig:
    """EncoderConfig read off a state dict's shapes: vocab and embed dim (embed_tokens), value and
    FFN dims (layer 0), number of layers, heads (retnet_rel_pos.decay, else ``retention_heads``,
    else 4). Dropouts are the paper's (0.2; they only act in training)."""
    try:
        vocab, dim = state["embed_tokens.weight"].shape
        layers = 1 + max(int(m.group(1)) for m in map(_LAYER_KEY.match, state) if m)
        if "layers.0.retention.v_proj.weight" in state:
            architecture = "retnet"
            value_dim = state["layers.0.retention.v_proj.weight"].shape[0]
        else:
            architecture = "transformer"
            value_dim = state["layers.0.attention.v_proj.weight"].shape[0]
        ffn_dim = state["layers.0.ffn.fc1.weight"].shape[0]
    except (KeyError, ValueError) as exc:
        raise InputError(path, f"cannot infer the encoder shape: missing or odd key ({exc})") from exc
    heads = retention_heads
    if "retnet_rel_pos.decay" in state:
        heads = state["retnet_rel_pos.decay"].shape[0]
        if retention_heads is not None and retention_heads != heads:
            raise InputError(path, f"retention_heads={retention_heads} but the file's decay buffer has {heads}")
    try:
        return EncoderConfig(vocab_size=int(vocab), retnet_embed_dim=int(dim),
                             retnet_value_embed_dim=int(value_dim), retnet_ffn_embed_dim=int(ffn_dim),
                             retnet_layers=layers, retnet_retention_heads=int(heads or DEFAULT_HEADS),
                             architecture=architecture)
    except ValueError as exc:
        raise InputError(path, f"the tensor shapes give no valid encoder config: {exc}") from exc


def load_state_checked(model, state: dict[str, Tensor], path, strict: bool = True) -> None:
    """Copy ``state`` into ``model`` after checking keys and shapes; the InputError names the
    file and every missing, unexpected and mismatched key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if mismatched:
        problems.append(f"shape mismatch {mismatched}")
    if strict and missing:
        problems.append(f"missing keys {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if problems:
        raise InputError(path, "checkpoint does not fit the encoder: " + "; ".join(problems))
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
