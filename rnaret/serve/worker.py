"""The worker-process side of ``rnaret serve``: loads the models once, then runs one *stage* of
one sequence per call and writes that stage's files into the sequence's folder.

All model and ViennaRNA work happens here, never in the web server's process: ViennaRNA's
bindings hold the GIL for the whole fold (a 1.5 kb MFE took 6 s in which a Python thread of the
same process ran once), so a fold in a server thread would freeze every other request.

Stages (``STAGES``), each independent of the others so that one sequence's stages spread over
the workers:

- ``structure``: the fine-tuned structure model (``rnaret.fold.predict_structure``, what
  ``rnaret fold`` runs): pairs, dot-bracket,
  the (n, n) pair-score map (``.npy`` and a heat map; per-pair sigmoid scores, not normalised
  pairing probabilities), a drawing, .dbn/.bpseq/.ct;
- ``vienna``: ViennaRNA MFE structure and energy, a drawing, .dbn/.bpseq/.ct;
- ``coding``: the fine-tuned coding model (the path ``rnaret classify`` runs): coding
  probability (best 30-nt window mean), per-position CDS probabilities (a plot and a TSV);
- ``embed``: embeddings: by default the last layer, per sequence (mean) and per nucleotide
  (``rnaret embed``'s safetensors layout); with other ``layers`` or a ``pool`` of cls or none,
  the layers asked for in ``rnaret embed --out X.h5``'s HDF5 layout (``rnaret.embed_hdf5``);
- ``retention``: the (L, L) retention scores of one layer and head of the embed model's encoder
  (``rnaret.embed.retention_map``, what ``rnaret embed --retention`` writes) as ``.npy``.

``embed`` and ``retention`` take the request's options as keyword arguments (``layers`` and
``pool``; ``layer`` and ``head``), checked by the server before the job starts.

Every stage returns a plain dict (it crosses processes): ``{"ok": True, ...}`` or
``{"ok": False, "error": message}``; a message never holds a stack trace (that goes to the
worker's stderr).
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

STAGES = ("structure", "vienna", "coding", "embed", "retention")


def _structure_files(prefix: str, what: str) -> dict[str, tuple[str, str]]:
    """The entries of ``FILES`` for a structure written as .dbn, .bpseq and .ct."""
    return {f"{prefix}.{ext}": ("text/plain", f"{what}, {fmt}")
            for ext, fmt in (("dbn", "dot-bracket"), ("bpseq", "bpseq"), ("ct", "CT"))}


# file names inside a sequence's folder -> (media type, what it is); the download route
# serves only these names
FILES = {
    **_structure_files("model", "model structure"),
    "model_pair_scores.npy": ("application/octet-stream", "model pair scores (n, n) float32: per-pair sigmoid scores"),
    "model_heatmap.png": ("image/png", "model pair-score heat map"),
    "model_drawing.svg": ("image/svg+xml", "model structure drawing"),
    **_structure_files("vienna", "ViennaRNA MFE structure"),
    "vienna_drawing.svg": ("image/svg+xml", "ViennaRNA MFE structure drawing"),
    "coding_track.tsv": ("text/tab-separated-values", "per-position CDS probabilities"),
    "coding_plot.png": ("image/png", "per-position CDS probability plot"),
    "embeddings.safetensors": ("application/octet-stream", "embeddings (rnaret embed layout)"),
    "embeddings.h5": ("application/x-hdf5", "embeddings of the layers asked for (rnaret embed HDF5 layout)"),
    "retention_scores.npy": ("application/octet-stream", "retention scores (L, L) float32 of one layer and head"),
}

# the models of this worker process, loaded once by ``init_worker``
_MODELS: dict = {}


def init_worker(spec: dict) -> None:
    """Load the models named by ``spec`` (``ServeConfig.worker_spec()``) into this process.

    ``structure``/``coding``: fine-tuned checkpoint folder or released ``.pth`` (None: stage
    off); ``embed``: encoder path, or None for the structure (else coding) model's encoder;
    ``threads``: torch intra-op threads; ``device``: as ``rnaret.device.resolve_device`` takes it
    (default "cpu"); ``precision``: fp32 | bf16 | auto (``rnaret.precision``) of the coding stage.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle (it stops us)
    _steady_allocator()
    _MODELS.clear()
    _MODELS["spec"] = dict(spec)
    try:
        _load(spec)
    except Exception as exc:  # kept for describe(): the server then refuses to start, saying why
        from rnaret.device import DeviceError

        clear = isinstance(exc, (ValueError, DeviceError))  # InputError, a missing GPU: the message says it
        if not clear:
            traceback.print_exc(file=sys.stderr)
        _MODELS["load_error"] = str(exc) if clear else f"{type(exc).__name__}: {exc}"


def _load(spec: dict) -> None:
    import torch

    from rnaret.tasks.run import load_for_evaluation

    from rnaret.device import resolve_device

    torch.set_num_threads(int(spec.get("threads") or 1))
    device = resolve_device(spec.get("device") or "cpu")
    for name in ("structure", "coding"):
        if spec.get(name):
            task, model = load_for_evaluation(spec[name], name)
            _MODELS[name] = (task, model.to(device).eval())
    encoder, source = None, None
    if spec.get("embed"):
        from rnaret.checkpoint import load_encoder

        encoder, source = load_encoder(spec["embed"], device=device), spec["embed"]
    else:
        for name in ("structure", "coding"):
            if name in _MODELS and _embeddable(_MODELS[name][1].encoder):
                encoder, source = _MODELS[name][1].encoder, f"{spec[name]} (the {name} model's encoder)"
                break
    if encoder is not None and _embeddable(encoder):
        _MODELS["embed"] = (encoder.eval(), source)


def _embeddable(encoder) -> bool:
    # embed_sequences reads config.k and config.retnet_embed_dim; the one-hot control has neither
    config = getattr(encoder, "config", None)
    return config is not None and hasattr(config, "retnet_embed_dim") and hasattr(config, "k")


def describe() -> dict:
    """What this worker loaded: ``{stage: {checkpoint, k, d, layers, parameters, ...}}`` for the
    stages it can run (``vienna`` always), and its process id; ``{"error": ...}`` when the
    models could not be loaded."""
    if "load_error" in _MODELS:
        return {"pid": os.getpid(), "error": _MODELS["load_error"]}
    out: dict = {"pid": os.getpid(), "stages": {"vienna": {"checkpoint": None, "what": "ViennaRNA MFE"}}}
    for name in ("structure", "coding"):
        if name in _MODELS:
            task, model = _MODELS[name]
            out["stages"][name] = {"checkpoint": _display_name(_MODELS["spec"][name]), "task": task.name,
                                   "k": task.k, **_encoder_facts(model.encoder),
                                   "parameters": sum(p.numel() for p in model.parameters())}
    if "embed" in _MODELS:
        encoder, source = _MODELS["embed"]
        out["stages"]["embed"] = {"checkpoint": _display_name(source), "k": int(encoder.config.k),
                                  **_encoder_facts(encoder),
                                  "parameters": sum(p.numel() for p in encoder.parameters())}
    return out


def _display_name(source: str) -> str:
    """How a checkpoint is named on the page and in downloads: never the server's folders.

    A fine-tuned checkpoint in the pipeline's layout (``.../{task}/{dataset}/{model}/checkpoint``)
    is ``{model} fine-tuned on {dataset}``; anything else is its file or folder name."""
    head, _, tail = source.partition(" (")
    parts = Path(head).parts
    if len(parts) >= 4 and parts[-1] == "checkpoint" and parts[-4] in ("structure", "coding", "interaction"):
        name = f"{parts[-2]} fine-tuned on {parts[-3]}"
    else:
        name = parts[-1] if parts else head
    return name + (f" ({tail}" if tail else "")


def _encoder_facts(encoder) -> dict:
    config = getattr(encoder, "config", None)
    facts = {"encoder": type(encoder).__name__}
    if config is not None and hasattr(config, "retnet_embed_dim"):
        facts.update(d=int(config.retnet_embed_dim), layers=int(config.retnet_layers),
                     heads=int(config.retnet_retention_heads))
    return facts


def run_stage(stage: str, folder: str, seq_id: str, sequence: str, options: dict | None = None) -> dict:
    """Run ``stage`` on one sequence (upper-case, U not T, IUPAC letters) and write its files
    into ``folder`` (created); ``options``: the stage's keyword arguments (module docstring).
    Returns the stage's result dict (see the module docstring) with ``started``/``finished``
    (epoch seconds) and ``pid``."""
    started = time.time()
    try:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        model = "embed" if stage == "retention" else stage  # retention reads the embed model's encoder
        if model != "vienna" and model not in _MODELS:
            raise LookupError(f"this server has no {model} model")
        Path(folder).mkdir(parents=True, exist_ok=True)
        result = {"ok": True, **_RUNNERS[stage](Path(folder), seq_id, sequence, **(options or {}))}
    except (ValueError, LookupError) as exc:  # InputError is a ValueError: a message for the user
        result = {"ok": False, "error": str(exc)}
    except MemoryError:
        result = {"ok": False, "error": f"not enough memory for the {stage} of a {len(sequence)}-nt sequence"}
    except Exception as exc:  # anything else: the trace to the server's log, a plain line to the user
        traceback.print_exc(file=sys.stderr)
        out_of_memory = "memory" in str(exc).lower()
        result = {"ok": False, "error": (f"not enough memory for the {stage} of a {len(sequence)}-nt sequence"
                                         if out_of_memory else f"internal error in the {stage} stage "
                                         f"({type(exc).__name__}); see the server log")}
    result.update(stage=stage, started=started, finished=time.time(), pid=os.getpid())
    _release_free_memory()
    return result


def _libc():
    """glibc through ctypes, or None where the C library is another one."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def _steady_allocator() -> None:
    """A fixed mmap threshold (glibc's M_MMAP_THRESHOLD, 128 KiB): buffers of that size or more
    (pair maps, figure canvases) are mapped and unmapped one by one instead of being carved
    from the heap, where glibc's self-raising threshold would leave them to fragment it."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD


def _release_free_memory() -> None:
    """Give memory freed by the stage back to the system (glibc's ``malloc_trim``): without it
    the allocator keeps the peak of every stage size seen, and a long-running worker's resident
    set creeps up. A no-op where the C library is not glibc."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# -- stages -----------------------------------------------------------------------------------
def _structure(folder: Path, seq_id: str, sequence: str) -> dict:
    import numpy as np

    from rnaret.fold import predict_structure
    from rnaret.io.atomic import atomic_path

    task, model = _MODELS["structure"]
    folded = predict_structure(model, [sequence], task=task)[0]   # the path `rnaret fold` runs
    scores = folded.pair_scores                                    # (n, n) float32, 0 outside the constraint
    pairs = [tuple(map(int, p)) for p in folded.pairs]
    _write_structure_files(folder, "model", seq_id, sequence, pairs, folded.dot_bracket)
    with atomic_path(folder / "model_pair_scores.npy", suffix=".npy") as tmp:
        np.save(tmp, scores.astype(np.float32))
    _heatmap(scores, folder / "model_heatmap.png", seq_id)
    drawn = _draw(sequence, folded.dot_bracket, folder / "model_drawing.svg")
    return {"dot_bracket": folded.dot_bracket, "pairs": [list(p) for p in pairs],
            "threshold": float(task.settings["threshold"]), "drawn_pairs": drawn,
            "max_pair_score": float(scores.max()) if scores.size else 0.0}


def _vienna(folder: Path, seq_id: str, sequence: str) -> dict:
    from rnaret.io.structure import parse_dot_bracket
    from rnaret.vienna import fold_mfe

    dot_bracket, energy = fold_mfe(sequence)
    pairs = parse_dot_bracket(dot_bracket)
    _write_structure_files(folder, "vienna", seq_id, sequence, pairs, dot_bracket)
    _draw(sequence, dot_bracket, folder / "vienna_drawing.svg")
    return {"dot_bracket": dot_bracket, "energy": energy, "pairs": [list(p) for p in pairs]}


def _coding(folder: Path, seq_id: str, sequence: str) -> dict:
    import numpy as np
    import torch

    from rnaret.io.atomic import atomic_open
    from rnaret.io.transcripts import Transcript

    from rnaret.precision import autocast

    task, model = _MODELS["coding"]
    device = next(model.parameters()).device
    # the task's own example: cut and padded as the checkpoint's protocol was (rnaret classify does the same)
    batch = task.collate([task.example(Transcript(seq_id, sequence, None, 1))]).to(device)
    with torch.no_grad(), autocast(device, _MODELS["spec"].get("precision", "auto")):
        output = model(batch.tokens, batch.padding_mask).float()     # (1, n) CDS logits
    track = task.position_probabilities(output, batch)[0]          # (n,) float32
    row = task.predict(output, batch)[0]
    window = int(task.settings.get("window") or 30)
    # the best window's start, as `rnaret classify` reports it
    padded = np.pad(track, (0, max(0, window - len(track))))
    window_start = int(np.argmax(np.convolve(padded, np.ones(window) / window, mode="valid"))) + 1
    prediction = "coding" if row["score"] >= 0.5 else "noncoding"
    with atomic_open(folder / "coding_track.tsv") as handle:
        handle.write("position\tnucleotide\tcds_probability\n")
        for i, (base, p) in enumerate(zip(sequence, track), start=1):
            handle.write(f"{i}\t{base}\t{p:.4f}\n")
    _coding_plot(track, float(row["score"]), prediction, window_start, window, folder / "coding_plot.png")
    return {"probability": float(row["score"]), "prediction": prediction, "window_start": window_start,
            "window": window, "track": [round(float(p), 3) for p in track]}


def _embed(folder: Path, seq_id: str, sequence: str, layers: list[int] | None = None, pool: str = "mean") -> dict:
    """The last layer pooled by mean or max (``layers`` None or the last alone): the safetensors
    file; any other choice: the HDF5 file of ``rnaret embed --layers --pool --out X.h5``."""
    from rnaret.embed import POOLS, embed_sequences, write_embeddings
    from rnaret.embed_hdf5 import embed_fasta_to_hdf5

    encoder, source = _MODELS["embed"]
    last = int(encoder.config.retnet_layers)
    facts = {"dim": int(encoder.config.retnet_embed_dim), "k": int(encoder.config.k), "pool": pool}
    if layers in (None, [last]) and pool in POOLS:
        result = embed_sequences(encoder, [seq_id], [sequence], per_nucleotide=True, pool=pool, progress=False)
        write_embeddings(result, folder / "embeddings.safetensors", {"checkpoint": _display_name(source)})
        return {**facts, "layers": [last], "file": "embeddings.safetensors"}
    fasta = folder / "sequence.fa"
    fasta.write_text(f">{seq_id}\n{sequence}\n")
    embed_fasta_to_hdf5(encoder, fasta, folder / "embeddings.h5", layers=layers, pool=pool, progress=False,
                        metadata={"checkpoint": _display_name(source), "fasta": fasta.name})
    return {**facts, "layers": list(layers), "file": "embeddings.h5"}


def _retention(folder: Path, seq_id: str, sequence: str, layer: int, head: int) -> dict:
    import numpy as np

    from rnaret.embed import retention_map
    from rnaret.io.atomic import atomic_path

    encoder, _ = _MODELS["embed"]
    scores = retention_map(encoder, sequence, layer, head)
    with atomic_path(folder / "retention_scores.npy", suffix=".npy") as tmp:
        np.save(tmp, scores)
    return {"layer": layer, "head": head, "size": int(scores.shape[0])}


_RUNNERS = {"structure": _structure, "vienna": _vienna, "coding": _coding, "embed": _embed,
            "retention": _retention}


# -- files and pictures ------------------------------------------------------------------------
def _write_structure_files(folder: Path, stem: str, seq_id: str, sequence: str, pairs, dot_bracket: str) -> None:
    """``<stem>.dbn`` (``dot_bracket``: may leave out pairs beyond the 30 bracket pages),
    ``<stem>.bpseq`` and ``<stem>.ct`` (every pair) in ``folder``."""
    from rnaret.io.atomic import atomic_open
    from rnaret.io.structure import StructureRecord, format_bpseq, format_ct

    record = StructureRecord(seq_id, sequence, list(pairs))
    texts = {"dbn": f">{seq_id}\n{sequence}\n{dot_bracket}\n",
             "bpseq": format_bpseq(record), "ct": format_ct(record)}
    for suffix, text in texts.items():
        with atomic_open(folder / f"{stem}.{suffix}") as handle:
            handle.write(text)


def _draw(sequence: str, dot_bracket: str, path: Path) -> int:
    """ViennaRNA's SVG drawing of the nested pairs (``()``; pseudoknot pages are not drawn)
    -> the number of pairs drawn. The SVG holds ``<script>``: show it as an image only."""
    import RNA

    nested = "".join(c if c in "()" else "." for c in dot_bracket)
    tmp = path.with_name(f".{path.name}.tmp")
    if not RNA.svg_rna_plot(sequence, nested, str(tmp)):
        raise RuntimeError(f"ViennaRNA could not draw {path.name}")
    os.replace(tmp, path)
    return nested.count("(")


HEATMAP_PIXELS = 400  # a longer map is max-pooled to about this many pixels a side


def _heatmap(scores, path: Path, seq_id: str) -> None:
    """PNG heat map of an (n, n) pair-score map; above ``HEATMAP_PIXELS`` positions each pixel
    shows the highest score of its block (no pair disappears from view, and a 2,000-nt map
    draws in a fraction of a second instead of seconds)."""
    import numpy as np

    from rnaret.figures import pyplot, save_figure

    n = scores.shape[0]
    shown = scores
    if n > HEATMAP_PIXELS:
        block = -(-n // HEATMAP_PIXELS)
        m = -(-n // block)
        padded = np.zeros((m * block, m * block), dtype=np.float32)
        padded[:n, :n] = scores
        shown = padded.reshape(m, block, m, block).max(axis=(1, 3))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=110)
    image = ax.imshow(shown, cmap="magma_r", vmin=0.0, vmax=1.0, origin="upper",
                      extent=(0.5, n + 0.5, n + 0.5, 0.5), interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="pair score")
    ax.set(xlabel="position", ylabel="position", title=f"{seq_id[:40]}: model pair scores")
    ax.title.set_fontsize(9)
    save_figure(fig, path, dpi=110)


def _coding_plot(track, score: float, prediction: str, window_start: int, window: int, path: Path) -> None:
    import numpy as np

    from rnaret.figures import pyplot, save_figure

    plt = pyplot()
    positions = np.arange(1, len(track) + 1)
    fig, ax = plt.subplots(figsize=(8.0, 2.4), dpi=110)
    ax.fill_between(positions, 0, track, step="mid", color="#2b7bba", alpha=0.35, linewidth=0)
    ax.plot(positions, track, drawstyle="steps-mid", color="#2b7bba", linewidth=1.0, label="CDS probability")
    ax.axhline(0.5, color="0.5", linestyle="--", linewidth=0.8)
    ax.axvspan(window_start - 0.5, min(len(track), window_start + window - 1) + 0.5, color="#f4a261",
               alpha=0.35, label=f"best {window}-nt window")
    ax.set(xlim=(0.5, len(track) + 0.5), ylim=(0, 1.02), xlabel="position", ylabel="P(CDS)",
           title=f"coding probability {score:.3f} ({prediction})")
    ax.title.set_fontsize(9)
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    save_figure(fig, path, dpi=110)
