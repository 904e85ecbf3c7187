"""Encoder forward time and peak memory against sequence length (the long-sequence table).

Series: the RNAret encoder in its chunkwise (O(n)) and parallel (O(n^2)) retention forms, and
the Transformer baseline (``rnaret.model.transformer``, fused ``scaled_dot_product_attention``),
each built at a pretraining preset's size (``rnaret.train.config.preset``) with random weights
(speed and memory do not depend on the values). One sequence (batch 1) of random k-mer ids per
length, eval mode, ``torch.inference_mode``, the final MLM projection skipped where the encoder
allows it (the encoder's cost is measured, not the vocabulary's), in the precision asked for
(``rnaret.precision``: fp32, or bf16 autocast; ``auto`` is resolved once and recorded per row).

Time: the fastest of ``repeats`` forwards (forwards over 1 s are run once) after one warm-up
forward per series. Memory (of the same forwards, the smallest): the rise of the process's
resident set during the forward (Linux ``VmHWM`` after the peak was reset through
``/proc/self/clear_refs`` and freed heap pages were handed back with ``malloc_trim``), i.e.
every byte the forward touched, activations and workspaces included, not the weights. Without
``/proc`` (not Linux) the memory column is NaN.

A series stops growing once the next forward is expected to take longer than ``max_seconds``
(the last time scaled with the form's complexity: linearly for chunkwise retention,
quadratically for parallel retention and attention): the longer lengths are reported with status
``skipped`` and the reason, so the table never pretends to a measurement and the whole run stays
within a few minutes on a laptop CPU.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import inspect
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from rnaret.io.errors import InputError

MODELS = ("rnaret-chunkwise", "rnaret-parallel", "transformer")
# model name -> (architecture, retention form)
_MODEL_SPEC = {"rnaret-chunkwise": ("retnet", "chunkwise"), "rnaret-parallel": ("retnet", "parallel"),
               "transformer": ("transformer", None)}
# how a form's forward time grows with length (for the time budget's extrapolation)
TIME_EXPONENT = {"chunkwise": 1, "parallel": 2, "attention": 2}
COMPLEXITY = {1: "linear", 2: "quadratic"}
# forwards slower than this are not repeated
REPEAT_BELOW_SECONDS = 1.0
COLUMNS = ("preset", "model", "architecture", "form", "embed_dim", "layers", "heads", "parameters",
           "length", "seconds", "peak_mib", "status", "threads", "precision", "device")


@dataclass
class Measurement:
    """One row of the long-sequence table (``seconds``/``peak_mib`` NaN when not measured)."""

    preset: str
    model: str
    architecture: str
    form: str
    embed_dim: int
    layers: int
    heads: int
    parameters: int
    length: int
    seconds: float = math.nan
    peak_mib: float = math.nan
    status: str = "measured"
    threads: int = 1
    precision: str = "fp32"
    device: str = field(default_factory=lambda: cpu_name())

    def as_row(self) -> dict:
        return asdict(self)


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the machine type (e.g. "x86_64")."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def transformer_available() -> bool:
    """True when the Transformer baseline module ``rnaret.model.transformer`` is installed."""
    return importlib.util.find_spec("rnaret.model.transformer") is not None


def default_models() -> list[str]:
    """Every series this installation can run: RNAret's two forms, plus the Transformer if present."""
    return [m for m in MODELS if m != "transformer" or transformer_available()]


def check_models(models: Iterable[str]) -> list[str]:
    """Validate series names; InputError for an unknown one or an absent Transformer module."""
    models = list(models)
    for m in models:
        if m not in _MODEL_SPEC:
            raise InputError(None, f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    if "transformer" in models and not transformer_available():
        raise InputError(None, "model 'transformer' was asked for, but the Transformer baseline "
                               "(rnaret/model/transformer.py) is not in this installation")
    if not models:
        raise InputError(None, "no models to measure")
    return models


# ------------------------------------------------------------------ peak memory (Linux /proc)


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


_LIBC = None


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc), so an earlier forward's pages do not hide
    this one's growth."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def _reset_peak() -> int | None:
    """Reset the process's peak RSS to the current RSS; return the current RSS in KiB (None
    when the platform cannot)."""
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # 5 = reset VmHWM (Linux >= 4.0)
    except OSError:
        return None
    return _proc_status_kib("VmRSS")


def _peak_since(start_kib: int | None) -> float:
    """MiB the peak RSS rose above ``start_kib`` (NaN when unknown)."""
    if start_kib is None:
        return math.nan
    peak = _proc_status_kib("VmHWM")
    return math.nan if peak is None else max(peak - start_kib, 0) / 1024.0


# ------------------------------------------------------------------ the measurements


def build_model(model: str, preset_name: str, k: int = 1):
    """A randomly initialised encoder of series ``model`` at ``preset_name``'s size, in eval mode.

    Returns ``(module, EncoderConfig, form)``; ``form`` is the retention form passed to forward
    (None for the Transformer).
    """
    import torch

    from rnaret.model import build_encoder
    from rnaret.train.config import preset

    architecture, form = _MODEL_SPEC[model]
    config = preset(preset_name, k, architecture=architecture).encoder_config()
    torch.manual_seed(0)
    return build_encoder(config).eval(), config, form


def _forward_fn(module, form):
    """A callable tokens (1, L) -> output, passing ``form`` and skipping the MLM logits where the
    encoder's forward accepts those arguments."""
    params = inspect.signature(module.forward).parameters
    kwargs = {}
    if form is not None:
        if "form" not in params:
            raise ValueError(f"{type(module).__name__}.forward takes no 'form'")
        kwargs["form"] = form
    if "return_logits" in params:
        kwargs["return_logits"] = False
    return lambda tokens: module(tokens, **kwargs)


def measure_series(model: str, preset_name: str, lengths: Sequence[int], *, k: int = 1,
                   repeats: int = 2, threads: int = 1, max_seconds: float = 15.0,
                   precision: str = "fp32", log=None) -> list[Measurement]:
    """Time and peak memory of one series at each length (ascending), as ``Measurement`` rows,
    in ``precision`` (fp32, bf16 or auto: ``rnaret.precision``, on the CPU).

    Once the next forward is expected (extrapolated by ``TIME_EXPONENT``) to exceed ``max_seconds``, that
    length and the longer ones get status ``skipped`` with the reason. ``log`` (a callable
    taking a string) reports progress.
    """
    import torch

    from rnaret.precision import autocast, resolve_precision
    from rnaret.tokenizer import vocab_size

    torch.set_num_threads(threads)
    precision = resolve_precision(precision, "cpu")
    module, config, form = build_model(model, preset_name, k)
    forward = _forward_fn(module, form)
    n_params = sum(p.numel() for p in module.parameters())
    base = dict(preset=preset_name, model=model, architecture=config.architecture,
                form=form or "attention", embed_dim=config.retnet_embed_dim,
                layers=config.retnet_layers, heads=config.retnet_retention_heads,
                parameters=n_params, threads=threads, precision=precision)
    generator = torch.Generator().manual_seed(0)
    vocab = vocab_size(k)

    def tokens_of(length):
        return torch.randint(6, vocab, (1, length), generator=generator)  # k-mer ids, no PAD

    exponent = TIME_EXPONENT.get(form or "attention", 2)
    rows: list[Measurement] = []
    too_slow: str | None = None
    previous: tuple[int, float] | None = None
    with torch.inference_mode(), autocast("cpu", precision):
        forward(tokens_of(min(lengths)))  # warm-up: first-call allocations and kernel selection
        for length in sorted(lengths):
            if previous and not too_slow:
                # extrapolate with the form's complexity: O(n) chunkwise, O(n^2) parallel/attention
                expected = previous[1] * (length / previous[0]) ** exponent
                if expected > max_seconds:
                    too_slow = (f"expected ~{expected:.0f} s from {previous[1]:.1f} s at L={previous[0]} "
                                f"({COMPLEXITY[exponent]} extrapolation) > {max_seconds:g} s budget")
            if too_slow:
                rows.append(Measurement(**base, length=length, status=f"skipped: {too_slow}"))
                continue
            tokens = tokens_of(length)
            best, peak = math.inf, math.nan
            for _ in range(max(1, repeats)):
                start_kib = _reset_peak()
                t0 = time.perf_counter()
                out = forward(tokens)
                seconds = time.perf_counter() - t0
                peak_here = _peak_since(start_kib)
                del out
                best = min(best, seconds)
                peak = peak_here if math.isnan(peak) else min(peak, peak_here)
                if seconds > REPEAT_BELOW_SECONDS:
                    break  # a long forward is timed once: its noise is small against its length
            rows.append(Measurement(**base, length=length, seconds=best, peak_mib=peak))
            if log:
                log(f"{preset_name} {model} L={length}: {best:.3f} s, {peak:.1f} MiB")
            previous = (length, best)
    return rows


def measure(models: Sequence[str], presets: Sequence[str], lengths: Sequence[int], *, k: int = 1,
            repeats: int = 2, threads: int = 1, max_seconds: float = 15.0, precision: str = "fp32",
            log=None) -> list[Measurement]:
    """Every (preset, model) series at every length; see ``measure_series``."""
    models = check_models(models)
    if not lengths or min(lengths) < 1:
        raise InputError(None, f"lengths must be positive integers, got {list(lengths)}")
    rows = []
    for preset_name in presets:
        for model in models:
            rows += measure_series(model, preset_name, lengths, k=k, repeats=repeats, threads=threads,
                                   max_seconds=max_seconds, precision=precision, log=log)
    return rows


# ------------------------------------------------------------------ outputs


def _fmt(value, digits: int) -> str:
    if isinstance(value, float):
        return "NA" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def write_tsv(rows: Sequence[Measurement], path) -> None:
    """The measurements as TSV (``COLUMNS``; seconds to 4 and MiB to 1 decimal, NA when not measured)."""
    from rnaret.io.atomic import atomic_open

    with atomic_open(path) as handle:
        handle.write("\t".join(COLUMNS) + "\n")
        for row in rows:
            d = row.as_row()
            handle.write("\t".join(_fmt(d[c], 4 if c == "seconds" else 1) for c in COLUMNS) + "\n")


def write_markdown(rows: Sequence[Measurement], path) -> None:
    """One Markdown table per preset: a row per length, time (s) and peak memory (MiB) per model."""
    from rnaret.io.atomic import atomic_open

    lines = ["# Encoder forward time and peak memory against sequence length", "",
             "Batch 1, eval mode, random weights at the preset's size; time: fastest of the repeats; "
             "memory: rise of the resident set during the forward (activations and workspaces, "
             "not the weights). `skipped`: a shorter length already exceeded the time budget.", ""]
    for preset_name in dict.fromkeys(r.preset for r in rows):
        sub = [r for r in rows if r.preset == preset_name]
        models = list(dict.fromkeys(r.model for r in sub))
        first = {m: next(r for r in sub if r.model == m) for m in models}
        desc = "; ".join(f"{m}: {first[m].architecture}, d={first[m].embed_dim}, {first[m].layers} layers, "
                         f"{first[m].heads} heads, {first[m].parameters:,} parameters" for m in models)
        lines += [f"## Preset `{preset_name}` ({sub[0].threads} CPU thread(s), {sub[0].precision}, "
                  f"{sub[0].device})", "",
                  desc, ""]
        header = ["length"] + [f"{m} s" for m in models] + [f"{m} MiB" for m in models]
        lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
        by_key = {(r.model, r.length): r for r in sub}
        for length in sorted({r.length for r in sub}):
            cells = [f"{length:,}"]
            for unit in ("seconds", "peak_mib"):
                for m in models:
                    r = by_key.get((m, length))
                    if r is None:
                        cells.append("")
                    elif r.status != "measured":
                        cells.append("skipped")
                    else:
                        cells.append(_fmt(getattr(r, unit), 3 if unit == "seconds" else 1))
            lines.append("| " + " | ".join(cells) + " |")
        notes = sorted({f"{r.model}: {r.status}" for r in sub if r.status != "measured"})
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        lines.append("")
    with atomic_open(path) as handle:
        handle.write("\n".join(lines))


def write_html(rows: Sequence[Measurement], path) -> None:
    """The measurements as a self-contained HTML table (for the report): one row per (preset,
    model, length) with time, memory and status."""
    import html

    from rnaret.io.atomic import atomic_open
    from rnaret.tables import html_page

    head = ["preset", "model", "parameters", "length", "seconds", "peak MiB", "status"]
    body = ["<h2>Encoder forward time and peak memory against sequence length</h2>",
            "<p>Batch 1, eval mode, random weights at the preset's size, CPU; time: fastest of the "
            "repeats; memory: rise of the resident set during the forward (activations and "
            "workspaces, not the weights).</p>", "<table>",
            "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = [r.preset, r.model, f"{r.parameters:,}", f"{r.length:,}", _fmt(r.seconds, 3),
                 _fmt(r.peak_mib, 1), r.status]
        body.append("<tr>" + "".join(f"<td class=\"num\">{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    body.append("</table>")
    with atomic_open(path) as handle:
        handle.write(html_page("Encoder length scaling", "\n".join(body)))


def plot(rows: Sequence[Measurement], path) -> None:
    """Time and peak memory against length, log-log, one line per (preset, model)."""
    from rnaret.figures import pyplot, save_figure

    plt = pyplot()
    fig, (t_ax, m_ax) = plt.subplots(1, 2, figsize=(9.5, 3.8), dpi=120)
    styles = {"laptop": "-", "paper": "--", "tiny": ":"}
    colors = {m: f"C{i}" for i, m in enumerate(MODELS)}
    for key in dict.fromkeys((r.preset, r.model) for r in rows):
        sub = [r for r in rows if (r.preset, r.model) == key and r.status == "measured"]
        if not sub:
            continue
        x = [r.length for r in sub]
        label = f"{key[1]} ({key[0]})"
        style = dict(linestyle=styles.get(key[0], "-."), color=colors.get(key[1]), marker="o", markersize=3)
        t_ax.plot(x, [r.seconds for r in sub], label=label, **style)
        m_ax.plot(x, [r.peak_mib for r in sub], label=label, **style)
    for ax, ylabel in ((t_ax, "forward time (s)"), (m_ax, "peak memory rise (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(xlabel="sequence length (tokens)", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
    t_ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Encoder forward, batch 1, CPU", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
