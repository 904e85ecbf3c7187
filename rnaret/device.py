"""Where a command runs: one resolution of ``--device`` for every command and training loop.

``auto`` (or None) is CUDA when torch sees a GPU, else the CPU. An explicit ``cuda`` that finds no
GPU is an error at once, naming the node and ``CUDA_VISIBLE_DEVICES``: a GPU job must never run
on the CPU for days without a word. Laptop runs ask for ``cpu`` or ``auto``.
"""
from __future__ import annotations

import os
import socket

import torch

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """A device was asked for that this process cannot use."""


def no_cuda_message(asked: str) -> str:
    """Why ``asked`` (e.g. 'cuda', 'cuda:1') cannot be used here, with what the node shows."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    built = torch.version.cuda or "no (a CPU build of torch)"
    return (f"--device {asked} was asked for, but torch finds no usable CUDA device on node "
            f"{socket.gethostname()} (CUDA_VISIBLE_DEVICES={'unset' if visible is None else repr(visible)}; "
            f"torch {torch.__version__}, CUDA build: {built}; devices seen: "
            f"{torch.cuda.device_count() if torch.cuda.is_available() else 0}). Install the CUDA build "
            f"of torch in this environment, or run on the CPU with --device cpu")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch.device for ``device``: ``auto``/None -> CUDA when available else CPU; ``cuda[:N]``
    -> that GPU, or ``DeviceError`` when there is none; ``cpu`` -> the CPU."""
    if isinstance(device, torch.device):
        device = str(device)
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(no_cuda_message(str(device)))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: node {socket.gethostname()} shows only "
                              f"{torch.cuda.device_count()} CUDA device(s) "
                              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    return dev


def add_device_argument(parser, default: str = "auto") -> None:
    """The shared ``--device auto|cpu|cuda[:N]`` option of the commands."""
    parser.add_argument("--device", default=default,
                        help="auto (CUDA when available, else CPU), cpu, or cuda[:N] (an error, not a "
                             f"CPU fallback, when no GPU is found; default {default})")
