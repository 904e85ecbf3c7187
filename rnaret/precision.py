"""One precision switch for every command and the config: ``fp32 | bf16 | auto``.

- ``fp32``: everything in float32 (the reference-vector tests, exact comparisons);
- ``bf16``: bf16 autocast (the projections and the retention products in bf16; decays, row sums,
  normalisers and scan states formed and accumulated in float32 by the model code);
- ``auto``: ``bf16`` where the device has bf16 matrix units (CUDA GPUs with bf16 support; CPUs
  with AMX-BF16 tiles), else ``fp32``. A CPU with only the AVX512-BF16 dot-product instructions
  (e.g. AMD Zen 4) gets ``fp32``: there bf16 pays mostly for wide layers (2048^2 products ~2.3x,
  the paper-size encoder ~1.7x; at the laptop preset's width 64 one coding fine-tuning epoch
  ~1.25x for the RetNet and nothing for the Transformer, one thread), so it is asked for
  explicitly.

Every caller resolves the switch here (``resolve_precision``) and enters ``autocast``; nothing
else in the package decides the precision. A command calls ``configure_precision`` once where it
starts (never at import): it resolves the switch and, for ``fp32`` on CUDA, lets float32 matmuls
and convolutions use TF32 tensor cores (10-bit mantissa products, float32 accumulation).

The CPU check reads the instruction-set flags torch reports (``torch.cpu``), not a timing probe:
a probe would make ``auto`` depend on the machine's load, and with it the numbers of a run.
One thread, 2048^2 matmul, bf16 against float32: ~2.3x on an AMD EPYC with AVX512-BF16 and no
AMX (``benchmarks/encoder.py`` part c); ~6.5x was reported on a Xeon with AMX-BF16.
"""
from __future__ import annotations

import contextlib
import functools

# torch is imported inside the functions: the settings resolver reads PRECISIONS without it
PRECISIONS = ("auto", "bf16", "fp32")
# fp16: float16 autocast on CUDA with a gradient scaler (torch.amp.GradScaler), fp32 elsewhere:
# what the published pretrain.py does. Pretraining only (TRAINING_PRECISIONS): a run in fp16 needs
# the scaler, which only the pretraining loop keeps.
FP16 = "fp16"
TRAINING_PRECISIONS = PRECISIONS + (FP16,)


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
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for ``precision`` (``auto``/``bf16``/``fp32``/``fp16``;
    None = auto) on ``device``: ``fp16`` is ``fp16`` on CUDA and ``fp32`` elsewhere. Raises
    ``ValueError`` for any other value."""
    precision = "auto" if precision is None else str(precision)
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"precision must be one of {'|'.join(TRAINING_PRECISIONS)}, got {precision!r}")
    if precision == FP16:
        import torch

        return FP16 if torch.device(device).type == "cuda" else "fp32"
    if precision == "auto":
        return "bf16" if bf16_matmul_available(device) else "fp32"
    return precision


def autocast(device, precision: str | None = "auto"):
    """The autocast context of ``precision`` on ``device``: bf16 autocast, fp16 autocast (CUDA),
    or a no-op for fp32."""
    import torch

    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    if resolved == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if resolved == FP16:
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def add_precision_argument(parser, default: str = "auto", choices=PRECISIONS) -> None:
    """The shared ``--precision fp32|bf16|auto`` option of the commands (``choices``:
    ``TRAINING_PRECISIONS`` for the pretraining, which also takes fp16)."""
    fp16 = ", fp16 = float16 autocast and a gradient scaler on CUDA (fp32 elsewhere)" if FP16 in choices else ""
    parser.add_argument("--precision", choices=choices, default=default,
                        help=f"numeric precision: fp32, bf16 autocast, or auto = bf16 where the device "
                             f"has bf16 matrix units{fp16} (default {default})")


def configure_precision(device, precision: str | None = "auto") -> str:
    """Resolve ``precision`` for ``device`` (``resolve_precision``) and set, process-wide, what
    goes with it: for ``fp32`` on CUDA, TF32 for float32 matmuls and cuDNN convolutions
    (``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``,
    ``torch.set_float32_matmul_precision("high")``); nothing on the CPU, where float32 stays
    exact. Call it once where a command starts. Returns ``"fp32"``, ``"bf16"`` or ``"fp16"``."""
    import torch

    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    if device.type == "cuda" and resolved == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    return resolved
