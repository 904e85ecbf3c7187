"""Embeddings of a FASTA of any size, streamed into one HDF5 file: every layer on request,
constant memory, a progress bar, and a run that resumes after a kill without recomputing the
records it had finished.

    from rnaret.embed_hdf5 import embed_fasta_to_hdf5, parse_layers
    embed_fasta_to_hdf5(encoder, "big.fa.gz", "big.h5", layers=parse_layers("all", 3), pool="mean")
    import h5py
    with h5py.File("big.h5") as f:           # read lazily: only the rows sliced are read
        f["layer_3"][1000:1010]              # (10, d) float32, records 1001..1010
        f["ids"][1000:1010].astype(str)

Why HDF5 (h5py): one file of chunked, resizable datasets, appended to as records stream in and
flushed after each chunk of records, so a killed run keeps what it wrote; h5py (and pandas,
xarray, R, MATLAB, Julia) read any slice of it without loading the rest. safetensors is written
in one piece with its header first (no appending: the whole output would sit in memory) and a
Zarr store is a folder of many small files.

Layout (``format`` attribute ``rnaret-embeddings-hdf5/1``):

* ``ids`` (N,) UTF-8 strings and ``lengths`` (N,) int64 (nucleotides), in FASTA order;
* ``layer_<l>`` float32 for each layer asked for (``layers`` attribute, a JSON list). Layer 0 is
  the token embeddings, layer l >= 1 the output of encoder layer l (the last one is
  ``last_inner_state``, before the final norm: what the task heads read);
* with ``pool`` ``mean``, ``max`` or ``cls``: ``layer_<l>`` is (N, d), one row per record
  (``cls``: the state of the first token; RNAret has no CLS token, so this is the token of the
  first nucleotide, which has seen the whole sequence through the bidirectional retention);
* with ``pool`` ``none``: ``layer_<l>`` is (T, d), one row per nucleotide (T the total), and
  ``offsets`` (N + 1,) int64: rows ``offsets[i]:offsets[i+1]`` belong to record i;
* attributes: ``format``, ``k``, ``layers``, ``pool``, ``precision``, ``checkpoint``, ``fasta``,
  ``n_done`` (records complete) and ``complete``.

While running, the file is ``OUT.partial``; it is renamed to ``OUT`` when every record is in. A
rerun with the same settings finds ``OUT.partial``, cuts off anything after its ``n_done``
records (a chunk half written when the run was killed), checks that the FASTA's first ``n_done``
ids are the ones stored, and goes on from there. Ids are not checked for uniqueness (that would
keep every id in memory); the alphabet policy of every command applies (``rnaret.io.fasta``).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from rnaret.io.errors import InputError

FORMAT = "rnaret-embeddings-hdf5/1"
POOLS = ("mean", "max", "cls", "none")
# records per chunk (one flush and one n_done update each); a chunk also ends at CHUNK_NT nucleotides
CHUNK_RECORDS = 2048
CHUNK_NT = 2_000_000


def embedding_options(layers, pool, n_layers: int) -> tuple[list[int], str]:
    """The checked layers and pooling of an embedding request (``rnaret embed --layers --pool``,
    ``rnaret.embed.embed_layers``, the server's ``layers`` and ``pool`` fields): (``parse_layers``'
    list, ``pool``). InputError with the command line's messages otherwise."""
    if pool not in POOLS:
        raise InputError(None, f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
    return parse_layers(layers, n_layers), pool


def parse_layers(text, n_layers: int) -> list[int]:
    """``"all"`` -> [0, 1, ..., n_layers]; ``"last"`` -> [n_layers]; ``"1,3"`` or [1, 3] -> [1, 3]
    (sorted, each once). Layer 0 is the token embeddings, l the output of encoder layer l.
    InputError naming what is wrong otherwise."""
    if isinstance(text, (list, tuple)):
        text = ",".join(str(layer) for layer in text)
    text = str(text).strip().lower()
    if text == "all":
        return list(range(n_layers + 1))
    if text == "last":
        return [n_layers]
    try:
        layers = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InputError(None, f"--layers must be all, last or a list such as 1,3 (0 = the token "
                               f"embeddings, 1..{n_layers} = the layers), got {text!r}") from None
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if not layers or bad:
        raise InputError(None, f"--layers {text!r}: the encoder has layers 0 (the token embeddings) to "
                               f"{n_layers}" + (f"; {bad[0]} is out of range" if bad else ""))
    return layers


def embed_chunk(model, sequences: list[str], layers: list[int], pool: str, *, batch_tokens: int = 16384,
                device=None, precision: str = "fp32") -> dict[int, list[np.ndarray]]:
    """The states of ``layers`` for each of ``sequences``: layer -> one float32 array per
    sequence, (d,) when pooled, (n, d) with ``pool="none"`` (n its nucleotides)."""
    from rnaret.embed import length_batches, padded_batch
    from rnaret.precision import autocast
    from rnaret.tokenizer import encode

    device = torch.device(device) if device is not None else next(model.parameters()).device
    token_lists = [encode(s, model.config.k) for s in sequences]
    out: dict[int, list] = {layer: [None] * len(sequences) for layer in layers}
    for batch in length_batches([len(t) for t in token_lists], batch_tokens):
        tokens, mask = padded_batch(token_lists, batch)
        with torch.no_grad(), autocast(device, precision):
            states = model(tokens.to(device), padding_mask=mask.to(device), return_logits=False,
                           output_hidden_states=True).hidden_states
        for layer in layers:
            rows = states[layer].float().cpu().numpy()
            for row, i in enumerate(batch):
                n_tok, n_nt = len(token_lists[i]), len(sequences[i])
                if pool == "none":
                    out[layer][i] = rows[row, :n_nt]
                elif pool == "mean":
                    out[layer][i] = rows[row, :n_tok].mean(axis=0)
                elif pool == "max":
                    out[layer][i] = rows[row, :n_tok].max(axis=0)
                else:  # cls: the first token
                    out[layer][i] = rows[row, 0]
    return out


def _chunks(records: Iterable, limit_records: int, limit_nt: int) -> Iterator[list]:
    chunk, nt = [], 0
    for record in records:
        chunk.append(record)
        nt += len(record.sequence)
        if len(chunk) >= limit_records or nt >= limit_nt:
            yield chunk
            chunk, nt = [], 0
    if chunk:
        yield chunk


def _create(h5py, path: Path, settings: dict, d: int, layers: list[int], pool: str):
    handle = h5py.File(path, "w")
    handle.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(4096,))
    handle.create_dataset("lengths", shape=(0,), maxshape=(None,), dtype="int64", chunks=(4096,))
    if pool == "none":
        handle.create_dataset("offsets", data=np.zeros(1, dtype=np.int64), maxshape=(None,), chunks=(4096,))
    for layer in layers:
        handle.create_dataset(f"layer_{layer}", shape=(0, d), maxshape=(None, d), dtype="float32",
                              chunks=(max(1, min(1024, 2**20 // (4 * d))), d))
    handle.attrs.update({**settings, "n_done": 0, "complete": False})
    return handle


def _reopen(h5py, partial: Path, settings: dict, layers: list[int], pool: str):
    """The partial file of the same run, cut back to its ``n_done`` records; None when there is
    none (or it cannot be read: a kill in the middle of a metadata write)."""
    if not partial.exists():
        return None
    try:
        handle = h5py.File(partial, "r+")
    except OSError as exc:
        print(f"rnaret embed: warning: {partial} cannot be read ({exc}); starting over", file=sys.stderr)
        return None
    stored = {key: handle.attrs.get(key) for key in settings}
    if any(str(stored[key]) != str(settings[key]) for key in settings):
        handle.close()
        raise InputError(partial, "holds a run with other settings (" + ", ".join(
            f"{key} {stored[key]!r}, now {settings[key]!r}" for key in settings
            if str(stored[key]) != str(settings[key])) + "); delete it to start over")
    n = int(handle.attrs["n_done"])
    handle["ids"].resize((n,))
    handle["lengths"].resize((n,))
    rows = n
    if pool == "none":
        handle["offsets"].resize((n + 1,))
        rows = int(handle["offsets"][n])
    for layer in layers:
        handle[f"layer_{layer}"].resize((rows, handle[f"layer_{layer}"].shape[1]))
    return handle


def embed_fasta_to_hdf5(model, fasta, out, *, layers: list[int], pool: str = "mean", batch_tokens: int = 16384,
                        device=None, precision: str = "auto", progress: bool = True,
                        metadata: dict | None = None) -> dict:
    """Embed every record of ``fasta`` into ``out`` (layout and resume: module doc), streaming.

    ``model``: an encoder (``rnaret.checkpoint.load_encoder``); ``layers``: from ``parse_layers``;
    ``pool``: mean, max, cls or none. Returns ``{"records", "nucleotides", "resumed_from",
    "computed"}``: records in the file, their nucleotides, records found done in a partial file,
    records embedded by this call. InputError for bad input (naming file, record, line, column).
    """
    import h5py

    from rnaret.data.progress import progress as progress_bar
    from rnaret.io.fasta import read_sequences
    from rnaret.precision import resolve_precision

    layers, pool = embedding_options(layers, pool, model.config.retnet_layers)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    precision = resolve_precision(precision, device)
    d = model.config.retnet_embed_dim
    settings = {"format": FORMAT, "k": int(model.config.k), "layers": json.dumps(layers), "pool": pool,
                "precision": precision, "fasta": os.path.abspath(os.fspath(fasta)),
                **{k: str(v) for k, v in (metadata or {}).items()}}
    handle = _reopen(h5py, partial, settings, layers, pool) or _create(h5py, partial, settings, d, layers, pool)
    resumed = int(handle.attrs["n_done"])
    computed = 0
    try:
        records = read_sequences(fasta, duplicate_ids="ignore")
        # the records already in the file: read past them, checking that they are the same
        stored_ids = handle["ids"]
        for index in range(resumed):
            record = next(records, None)
            if record is None or record.id != stored_ids[index].decode():
                raise InputError(fasta, f"is not the FASTA that {partial} was started from (record "
                                        f"{index + 1} differs); delete {partial} to start over")
        nucleotides = int(handle["lengths"][:].sum()) if resumed else 0
        with progress_bar(desc="embed", unit="seq", disable=not progress, initial=resumed) as bar:
            for chunk in _chunks(records, CHUNK_RECORDS, CHUNK_NT):
                states = embed_chunk(model, [r.sequence for r in chunk], layers, pool, batch_tokens=batch_tokens,
                                     device=device, precision=precision)
                n0, n1 = len(handle["ids"]), len(handle["ids"]) + len(chunk)
                lengths = np.array([len(r.sequence) for r in chunk], dtype=np.int64)
                handle["ids"].resize((n1,))
                handle["ids"][n0:n1] = [r.id for r in chunk]
                handle["lengths"].resize((n1,))
                handle["lengths"][n0:n1] = lengths
                if pool == "none":
                    offsets = handle["offsets"]
                    start = int(offsets[n0])
                    offsets.resize((n1 + 1,))
                    offsets[n0 + 1:n1 + 1] = start + np.cumsum(lengths)
                for layer in layers:
                    rows = np.concatenate(states[layer]) if pool == "none" else np.stack(states[layer])
                    data = handle[f"layer_{layer}"]
                    r0 = data.shape[0]
                    data.resize((r0 + len(rows), d))
                    data[r0:] = rows
                # the records count as done only once their rows are in and flushed
                handle.flush()
                handle.attrs["n_done"] = n1
                handle.flush()
                computed += len(chunk)
                nucleotides += int(lengths.sum())
                bar.update(len(chunk))
        handle.attrs["complete"] = True
        n_records = len(handle["ids"])
    except InputError:
        done = int(handle.attrs["n_done"])
        handle.close()
        if done == 0:  # nothing worth resuming: leave nothing behind
            partial.unlink(missing_ok=True)
        raise
    finally:
        if handle.id.valid:
            handle.close()
    if n_records == 0:
        raise InputError(fasta, "no FASTA records")
    os.replace(partial, out)
    return {"records": n_records, "nucleotides": nucleotides, "resumed_from": resumed, "computed": computed}


__all__ = ["embed_fasta_to_hdf5", "embed_chunk", "embedding_options", "parse_layers", "FORMAT", "POOLS"]
