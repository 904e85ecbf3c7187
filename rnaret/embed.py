"""Embeddings of nucleotide sequences with an encoder: per sequence and per nucleotide.

Output file (safetensors, written atomically; open with ``safetensors.numpy.load_file``):

* ``per_sequence``   float32 (N, d): the pooled (``pool``: mean or max over the sequence's
  positions) ``representation`` of each of the N sequences, in FASTA order;
* ``per_nucleotide`` float32 (T, d), T = total nucleotides (only with per-nucleotide output):
  the rows ``offsets[i]:offsets[i+1]`` belong to sequence i, one row per nucleotide;
* ``offsets`` int64 (N + 1,), ``lengths`` int64 (N,) (nucleotides per sequence);
* metadata (``safe_open(path, "np").metadata()``): ``ids`` (JSON list of the FASTA ids, in
  order), ``format``, ``k``, ``pool``, ``representation``, ``precision`` (fp32 or bf16, as
  resolved), ``checkpoint``, ``fasta``.

With odd k a sequence of n >= k nt gives n tokens, token i being the k-mer centred on
nucleotide i, so per-nucleotide rows are token rows. A sequence shorter than k gives only
k - 1 FILL tokens (no sequence information at that k): its rows are the first n of those.
``representation`` is ``last_inner_state`` (before the final norm, what task heads read; the
default) or ``hidden`` (after it).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from rnaret.io.errors import InputError
from rnaret.tokenizer import encode

FORMAT = "rnaret-embeddings/1"
POOLS = ("mean", "max")
REPRESENTATIONS = ("last_inner_state", "hidden")


@dataclass
class Embeddings:
    """Embeddings of N sequences: ``per_sequence`` (N, d), ``per_nucleotide`` (T, d) or None,
    ``offsets`` (N + 1,), ``lengths`` (N,), ``ids`` (N,), ``n_shorter_than_k``, ``metadata``."""
    ids: list[str]
    per_sequence: np.ndarray
    per_nucleotide: np.ndarray | None
    offsets: np.ndarray
    lengths: np.ndarray
    n_shorter_than_k: int = 0
    metadata: dict = field(default_factory=dict)


def length_batches(lengths, batch_tokens: int, max_padding: float = 0.1) -> list[list[int]]:
    """Group indices into batches by length, longest first: each batch's (count x longest) is
    at most ``batch_tokens`` and at most ``max_padding`` of it is padding (a sequence that
    would break either starts a new batch; one longer than the budget is a batch alone)."""
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current, longest, real = [], [], 0, 0
    for i in order:
        n = max(lengths[i], 1)
        if current:
            padded = longest * (len(current) + 1)  # descending: the first is the longest
            if padded > batch_tokens or (padded - real - n) > max_padding * padded:
                batches.append(current)
                current, real = [], 0
        if not current:
            longest = n
        current.append(i)
        real += n
    if current:
        batches.append(current)
    return batches


def _pool(states: np.ndarray, pool: str) -> np.ndarray:
    return states.mean(axis=0) if pool == "mean" else states.max(axis=0)


def padded_batch(token_lists, rows) -> tuple[torch.Tensor, torch.Tensor]:
    """The token arrays ``token_lists[i]`` for ``i`` in ``rows``, right-padded with PAD (0) ->
    tokens (B, L) int64 and padding_mask (B, L) bool, True at real positions (L >= 1)."""
    longest = max(max(len(token_lists[i]) for i in rows), 1)
    tokens = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.bool)
    for row, i in enumerate(rows):
        tokens[row, :len(token_lists[i])] = torch.from_numpy(token_lists[i])
        mask[row, :len(token_lists[i])] = True
    return tokens, mask


@torch.no_grad()
def embed_sequences(model, ids, sequences, *, batch_tokens: int = 16384, device=None,
                    precision: str = "auto", per_nucleotide: bool = True, pool: str = "mean",
                    representation: str = "last_inner_state", progress: bool = True) -> Embeddings:
    """Embed ``sequences`` (strings, ids alongside) with ``model`` (an encoder in eval mode).

    Batches by length (``length_batches``), the form chosen by length inside the encoder;
    ``precision`` fp32, bf16 or auto (``rnaret.precision``: bf16 where the device has bf16
    matrix units). Returns ``Embeddings`` (float32 arrays, FASTA order).
    """
    from rnaret.io.fasta import check_sequence_letters
    from rnaret.precision import autocast, resolve_precision

    ids, sequences = list(ids), list(sequences)
    for rid, sequence in zip(ids, sequences):   # the alphabet policy of every command: no gaps
        check_sequence_letters(sequence, record=str(rid))
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    from tqdm import tqdm

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    k = model.config.k
    d = model.config.retnet_embed_dim
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    per_seq = np.zeros((len(sequences), d), dtype=np.float32)
    per_nt = np.zeros((int(offsets[-1]), d), dtype=np.float32) if per_nucleotide else None
    token_lists = [encode(s, k) for s in sequences]
    precision = resolve_precision(precision, device)
    bar = tqdm(total=int(lengths.sum()), unit="nt", unit_scale=True, file=sys.stderr,
               disable=not progress, desc="embed")
    for batch in length_batches([len(t) for t in token_lists], batch_tokens):
        tokens, mask = padded_batch(token_lists, batch)
        with autocast(device, precision):
            out = model(tokens.to(device), padding_mask=mask.to(device), return_logits=False)
        states = getattr(out, representation).float().cpu().numpy()
        for row, i in enumerate(batch):
            n_tok = len(token_lists[i])
            if n_tok == 0:  # k = 1 and an empty sequence: read_fasta never gives one
                continue
            per_seq[i] = _pool(states[row, :n_tok], pool)
            if per_nt is not None:
                per_nt[offsets[i]:offsets[i + 1]] = states[row, :lengths[i]]
        bar.update(int(sum(lengths[i] for i in batch)))
    bar.close()
    return Embeddings(list(ids), per_seq, per_nt, offsets, lengths,
                      n_shorter_than_k=int((lengths < k).sum()),
                      metadata={"format": FORMAT, "k": str(k), "pool": pool,
                                "representation": representation, "precision": precision})


def embed_layers(model, sequences, layers="all", pool: str = "mean", *, batch_tokens: int = 16384,
                 device=None, precision: str = "fp32") -> dict[int, np.ndarray | list[np.ndarray]]:
    """The states of every layer asked for, for ``sequences`` (strings): what ``rnaret embed
    --layers --pool`` writes to HDF5, in memory.

    ``layers``: "all", "last", "1,3" or a list of ints (0 = the token embeddings, l = the
    output of encoder layer l; the last one is ``last_inner_state``); ``pool``: mean, max, cls
    (the first token's state) or none. Returns {layer: float32 (N, d)} for a pooling, or {layer:
    [one (n_i, d) array per sequence]} for ``pool="none"`` (n_i its nucleotides), in input
    order. InputError (the command line's messages) for a bad ``layers``, ``pool`` or letter.
    """
    from rnaret.embed_hdf5 import embed_chunk, embedding_options
    from rnaret.io.fasta import check_sequence_letters

    sequences = list(sequences)
    for index, sequence in enumerate(sequences):   # the alphabet policy of every command
        check_sequence_letters(sequence, record=f"sequence {index + 1}")
    layers, pool = embedding_options(layers, pool, model.config.retnet_layers)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    states = embed_chunk(model, sequences, layers, pool, batch_tokens=batch_tokens, device=device,
                         precision=precision)
    if pool == "none":
        return states
    d = model.config.retnet_embed_dim
    return {layer: np.stack(rows) if rows else np.zeros((0, d), np.float32) for layer, rows in states.items()}


def parse_retention(value, n_layers: int, n_heads: int) -> tuple[int, int]:
    """(layer, head), 1-based, from ``"LAYER,HEAD"`` (what ``rnaret embed --retention`` and the
    server's ``retention`` field take) or a (layer, head) pair, checked against an encoder of
    ``n_layers`` layers and ``n_heads`` retention heads. InputError with the command line's
    messages otherwise."""
    text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    try:
        layer, head = (int(x) for x in text.split(","))
    except ValueError:
        raise InputError(None, f"--retention must be LAYER,HEAD such as 3,1, got {text!r}") from None
    if not (1 <= layer <= n_layers and 1 <= head <= n_heads):
        raise InputError(None, f"--retention {text}: the encoder has layers 1..{n_layers} and heads 1..{n_heads}")
    return layer, head


def retention_map(encoder, sequence: str, layer: int, head: int) -> np.ndarray:
    """The retention scores of encoder layer ``layer`` and head ``head`` (both 1-based) for one
    sequence: float32 (L, L), L its tokens (n nt give n tokens; fewer than k nt give k - 1),
    row n = how much each position weighs in position n's output (``rnaret.model.scores``, the
    function the retention-map analyses use). InputError for a bad layer or head, a letter that
    is not a nucleotide, or an encoder without retention (the Transformer baseline)."""
    from rnaret.io.fasta import check_sequence_letters
    from rnaret.model.scores import retention_scores

    config = encoder.config
    layer, head = parse_retention((layer, head), config.retnet_layers, config.retnet_retention_heads)
    check_sequence_letters(sequence, record="the sequence")
    device = next(encoder.parameters()).device
    tokens = torch.from_numpy(encode(sequence, config.k)).unsqueeze(0).to(device)
    try:
        scores = retention_scores(encoder, tokens, layer - 1, head - 1)
    except ValueError as exc:  # the Transformer baseline has no retention
        raise InputError(None, str(exc)) from None
    return scores[0].cpu().numpy().astype(np.float32)


def write_embeddings(embeddings: Embeddings, path, extra_metadata: dict | None = None) -> None:
    """Write ``embeddings`` to a safetensors file at ``path``, atomically (layout: module doc)."""
    from safetensors.numpy import save_file

    from rnaret.io.atomic import atomic_path

    tensors = {"per_sequence": embeddings.per_sequence, "offsets": embeddings.offsets,
               "lengths": embeddings.lengths}
    if embeddings.per_nucleotide is not None:
        tensors["per_nucleotide"] = embeddings.per_nucleotide
    metadata = {**embeddings.metadata, **(extra_metadata or {}), "ids": json.dumps(embeddings.ids)}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})


def read_embeddings(path) -> tuple[list[str], dict[str, np.ndarray], dict[str, str]]:
    """(ids, arrays, metadata) of a file written by ``write_embeddings``."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), "np") as handle:
        metadata = handle.metadata() or {}
    return json.loads(metadata.get("ids", "[]")), load_file(str(path)), metadata
