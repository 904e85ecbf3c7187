"""The released ``.pth`` files of the published code: pretrained encoders and fine-tuned models.

A published ``.pth`` is a pickled state dict, read with ``torch.load(..., weights_only=True)`` so
that nothing but tensors is ever unpickled: bare encoder keys (``pretrain_{1,3,5}mer.pth``) or
``ret.*`` + ``classifier.*`` (fine-tuned files: the encoder from ``ret.*``, the task head from
``classifier.*``). ``rnaret.checkpoint.encoder.load_encoder`` reads the encoder part; a whole
fine-tuned file becomes a task model with :func:`load_published_finetuned`.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings

import torch
from torch import Tensor

from rnaret.io.errors import InputError


def read_pth(path) -> dict[str, Tensor]:
    """The flat {name: tensor} dict of a ``.pth`` file, unpickled with ``weights_only=True``.

    A file holding any pickled object other than tensors and plain containers is refused with
    an InputError before anything in it runs. A {"state_dict": {...}} or {"model": {...}}
    wrapper is unwrapped.
    """
    if not os.path.isfile(path):
        raise InputError(path, "no such file" if not os.path.exists(path) else "not a file")
    try:
        with warnings.catch_warnings():
            # a damaged file can look like an old pickle protocol; the error below says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # name what torch's restricted unpickler refused, not its advice to switch it off
        text = str(exc)
        named = re.search(r"unsupported GLOBAL\s+([\w.]+)|Unsupported global: GLOBAL\s+([\w.]+)", text, re.I)
        if named:
            raise InputError(path, "refused: the file holds pickled objects other than tensors (not "
                                   f"unpickled, nothing in it was run): it names {named.group(1) or named.group(2)}"
                             ) from None
        # otherwise the pickle itself is damaged: an opcode or a structure the unpickler rejects
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        detail = detail.group(1).strip() if detail else _first_line(exc)
        raise InputError(path, f"not a readable PyTorch checkpoint: a damaged pickle ({detail[:120]})") from None
    except Exception as exc:  # noqa: BLE001
        # torch.load on damaged bytes raises nearly any type (RuntimeError from the zip reader,
        # EOFError, KeyError, IndexError, UnicodeDecodeError, struct.error ...): the file is
        # untrusted input, so each is the same answer
        raise InputError(path, f"not a readable PyTorch checkpoint: {type(exc).__name__}: "
                               f"{_first_line(exc)}") from None
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model") \
            and isinstance(next(iter(obj.values())), dict):
        obj = next(iter(obj.values()))
    if not isinstance(obj, dict) or not obj:
        raise InputError(path, f"expected a non-empty state dict, found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise InputError(path, f"not a state dict: entries that are not named tensors: {bad[:5]}")
    return dict(obj)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


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


def load_published_finetuned(path, task):
    """A released fine-tuned ``.pth`` (keys ``ret.*`` + ``classifier.*``) of ``task`` (a
    ``rnaret.tasks.base.Task``) -> TaskModel in eval mode; InputError naming the file when it
    holds no head or a head of another task."""
    from rnaret.checkpoint.encoder import load_encoder
    from rnaret.tasks.finetune import TaskModel, encoder_width

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
