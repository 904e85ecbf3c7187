"""Our encoder checkpoints (safetensors + JSON) and the checks every weights reader shares.

Formats ``load_encoder`` accepts:

* a directory with ``config.json`` and ``weights.safetensors``: ours (written by
  ``save_encoder``; the config holds every ``EncoderConfig`` field) or published-style (only the
  published config fields, k inferred from vocab_size = 4**k + 6), e.g. the reference
  ``official_vectors/`` folder;
* a ``.safetensors`` file (config from a ``config.json`` beside it, else inferred from shapes);
* a published ``.pth`` (any other file; read by ``rnaret.checkpoint.published``): bare encoder
  keys (``pretrain_{1,3,5}mer.pth``) or ``ret.*`` + ``classifier.*`` (fine-tuned files; the
  encoder comes from ``ret.*``). The config is inferred from the tensor shapes.

Every problem raises ``rnaret.io.errors.InputError`` naming the file: a config.json that is not
a JSON object of the config's fields with values of their types, a truncated or corrupt
safetensors or ``.pth``, weights whose keys, shapes or kinds (float or not) do not fit. The fit
is checked on a model built on the ``meta`` device (no memory) before the real one is built, so
a damaged config asking for a huge model fails at once instead of allocating it
(:func:`build_checked`, also used for fine-tuned task heads).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from rnaret.io.atomic import atomic_dir
from rnaret.io.errors import InputError
from rnaret.io.mapping import read_json_object
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
        state = read_safetensors(weights_path)
        config = read_config(config_path)
        source = weights_path
    elif path.suffix == ".safetensors":
        state = read_safetensors(path)
        sibling = path.with_name(CONFIG_NAME)
        config = read_config(sibling) if sibling.exists() else infer_config(state, path, retention_heads)
        source = path
    else:
        from rnaret.checkpoint.published import load_published_state_dict

        state, _ = load_published_state_dict(path)
        config = infer_config(state, path, retention_heads)
        source = path
    layers = _layer_indices(state)
    if layers and config.retnet_layers > max(layers) + 1:
        # checked before any model is built: a damaged layer count must not build a huge model
        raise InputError(source, f"the config gives {config.retnet_layers} layers, the weights hold "
                                 f"{max(layers) + 1}")
    model = build_checked(lambda: build_encoder(config), state, source, strict=strict, what="encoder")
    return model.to(device).eval()


def _layer_indices(state: dict[str, Tensor]) -> set[int]:
    return {int(m.group(1)) for m in map(_LAYER_KEY.match, state) if m}


def _check_config_values(data: dict, path) -> None:
    """Each known field of a config.json holds a value of its type (ints not bools, dropouts in
    [0, 1], architecture a string), so that building the model cannot fail on them."""
    kinds = {f.name: str(f.type) for f in dataclasses.fields(EncoderConfig)}
    for name, value in data.items():
        kind = kinds.get(name)
        if kind is None:
            continue  # EncoderConfig.from_dict names unknown keys
        if value is None and "None" in kind:
            continue
        if kind.startswith("int"):
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31
        elif kind.startswith("float"):
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and 0.0 <= value <= 1.0)
        else:
            ok = isinstance(value, str)
        if not ok:
            want = {"int": "a whole number >= 0", "float": "a number from 0 to 1"}.get(kind.split(" ")[0], "a string")
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise InputError(path, f"bad encoder config: {name} must be {want}, got {shown}")


def read_config(path) -> EncoderConfig:
    """EncoderConfig from a JSON file (ours or the published field names); InputError naming
    the file when it is not a JSON object, names an unknown key or holds a value of the wrong
    type or an impossible combination (e.g. heads that do not divide the width)."""
    data = read_json_object(path)
    _check_config_values(data, path)
    try:
        return EncoderConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"bad encoder config: {exc}") from exc


def read_safetensors(path) -> dict[str, Tensor]:
    """The tensors of a safetensors file; InputError naming the file when it is missing,
    truncated or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise InputError(path, "no such file" if not os.path.exists(path) else "not a file")
    try:
        return load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as exc:
        # truncated files, damaged headers, dtypes torch lacks: all "not readable"
        raise InputError(path, f"not a readable safetensors file: {exc}") from None


def infer_config(state: dict[str, Tensor], path, retention_heads: int | None = None) -> EncoderConfig:
    """EncoderConfig read off a state dict's shapes: vocab and embed dim (embed_tokens), value and
    FFN dims (layer 0), number of layers, heads (retnet_rel_pos.decay, else ``retention_heads``,
    else 4). Dropouts are the paper's (0.2; they only act in training)."""
    indices = _layer_indices(state)
    if indices and indices != set(range(max(indices) + 1)):
        missing = sorted(set(range(max(indices) + 1)) - indices)
        raise InputError(path, f"cannot infer the encoder shape: layers {missing[:5]} are missing "
                               f"(the file holds layers up to {max(indices)})")
    try:
        vocab, dim = state["embed_tokens.weight"].shape
        layers = 1 + max(indices)
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


def state_problems(expected: dict[str, Tensor], state: dict[str, Tensor], strict: bool = True) -> list[str]:
    """What keeps ``state`` from loading into a module whose state dict is ``expected``: shape
    mismatches, tensors of another kind (floating point or not), and with ``strict`` missing
    and unexpected keys. Empty when it fits."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    kinds = [f"{k}: file {state[k].dtype} vs model {expected[k].dtype}" for k in expected
             if k in state and state[k].is_floating_point() != expected[k].is_floating_point()]
    problems = []
    if mismatched:
        problems.append(f"shape mismatch {_listed(mismatched, 3)}")
    if kinds:
        problems.append(f"dtype mismatch {_listed(kinds, 3)}")
    if strict and missing:
        problems.append(f"missing keys {_listed(missing, 12)}")
    if strict and unexpected:
        problems.append(f"unexpected keys {_listed(unexpected, 12)}")
    return problems


def _listed(items: list[str], limit: int) -> str:
    """The first ``limit`` items as a list, and how many more there are."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{items[:limit]}{more}"


def load_state_checked(model, state: dict[str, Tensor], path, strict: bool = True, what: str = "encoder") -> None:
    """Copy ``state`` into ``model`` after checking keys, shapes and kinds; the InputError names
    the file and every missing, unexpected and mismatched key."""
    problems = state_problems(model.state_dict(), state, strict)
    if problems:
        raise InputError(path, f"checkpoint does not fit the {what}: " + "; ".join(problems))
    expected = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def build_checked(build: Callable[[], torch.nn.Module], state: dict[str, Tensor], path, *, strict: bool = True,
                  what: str = "encoder", settings_path=None) -> torch.nn.Module:
    """``build()`` -> a module holding ``state``, in train mode on CPU.

    The module is first built on the ``meta`` device (no memory) and ``state`` checked against
    it (:func:`state_problems`), so that settings that disagree with the weights fail before a
    possibly huge module is allocated. ``path``: the weights file named in errors;
    ``settings_path``: the file the settings came from, named when ``build`` itself fails.
    """
    def make():
        try:
            return build()
        except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
            raise InputError(settings_path or path, f"the settings build no {what}: {exc}") from None

    with torch.device("meta"):
        skeleton = make()
    problems = state_problems(skeleton.state_dict(), state, strict)
    if problems:
        raise InputError(path, f"checkpoint does not fit the {what}: " + "; ".join(problems))
    module = make()
    load_state_checked(module, state, path, strict=strict, what=what)
    return module
