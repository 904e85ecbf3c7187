"""One precision switch for every command and the config: ``fp32 | bf16 | auto``.

- ``fp32``: everything in float32 (the reference-vector tests, exact comparisons);
- ``bf16``: bf16 autocast (the projections and the retention products in bf16; decays, row sums,
  normalisers and scan states formed and accumulated in float32 by the model code);
- ``auto``: ``bf16`` where the device has bf16 matrix units (CUDA GPUs with bf16 support; CPUs
  with AMX-BF16 tiles), else ``fp32``. A CPU with only the AVX512-BF16 dot-product instructions
  (e.g. AMD Zen 4) gets ``fp32``: there bf16 pays only for wide layers (about 2x on 2048-wide
  products, nothing at the laptop preset's width 64), so it is asked for explicitly.

Every caller resolves the switch here (``resolve_precision``) and enters ``autocast``; nothing
else in the package decides the precision.
"""
from __future__ import annotations

import contextlib
import functools

# torch is imported inside the functions: the settings resolver reads PRECISIONS without it
PRECISIONS = ("auto", "bf16", "fp32")


@functools.lru_cache(maxsize=None)
def cpu_has_bf16_matmul() -> bool:
    """True when this CPU has bf16 matrix units (AMX tiles) that oneDNN uses for bf16 products."""
    import torch

    check = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    try:
        return bool(check is not None and check())
    except Exception:  # a torch build without the probe: assume no
        return False


def bf16_matmul_available(device) -> bool:
    """Whether ``device`` (a torch.device or its name) multiplies bf16 matrices natively."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_bf16_matmul()
    return False


def resolve_precision(precision: str | None, device) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` (``auto``/``bf16``/``fp32``; None = auto) on
    ``device``. Raises ``ValueError`` for any other value."""
    precision = "auto" if precision is None else str(precision)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {'|'.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_matmul_available(device) else "fp32"
    return precision


def autocast(device, precision: str | None = "auto"):
    """The autocast context of ``precision`` on ``device``: bf16 autocast, or a no-op for fp32."""
    import torch

    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def add_precision_argument(parser, default: str = "auto") -> None:
    """The shared ``--precision fp32|bf16|auto`` option of the commands."""
    parser.add_argument("--precision", choices=PRECISIONS, default=default,
                        help=f"numeric precision: fp32, bf16 autocast, or auto = bf16 where the device "
                             f"has bf16 matrix units (default {default})")
