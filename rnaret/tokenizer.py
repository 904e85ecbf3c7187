"""K-mer tokenizer with the published RNAret ids.

Ids: 0 PAD, 1 FILL (the k//2 flanks of a k-mer sequence), 2 UNK, 3 CLS (also the separator of
the interaction task), 4 MASK, 5 unused; k-mers from 6 in ``itertools.product('ATCG', repeat=k)``
order, U read as T. Any k-mer holding a letter outside ACGT/U becomes UNK and keeps its place.
An odd-k sequence of n >= k nt gives n tokens; a shorter one gives 2 * (k // 2) FILL tokens.
Nothing is ever cut or padded here: cropping is the caller's explicit choice (``crop``).
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

PAD, FILL, UNK, CLS, MASK = 0, 1, 2, 3, 4
SEP = CLS
FIRST_KMER_ID = 6
SUPPORTED_K = (1, 3, 5)
_ALPHABET = "ATCG"

# Byte -> base code 0..3 (A, T, C, G) or 4 for anything else. U and lower case are accepted.
_BASE_CODE = np.full(256, 4, dtype=np.int64)
for _i, _letters in enumerate(("Aa", "TtUu", "Cc", "Gg")):
    for _c in _letters:
        _BASE_CODE[ord(_c)] = _i


def vocab_size(k: int) -> int:
    """Number of token ids at k: 4**k k-mers plus the 6 special ids."""
    _check_k(k)
    return 4**k + FIRST_KMER_ID


def k_from_vocab_size(size: int) -> int:
    """Invert ``vocab_size``; raise ValueError when ``size`` is not 4**k + 6 for k in 1, 3, 5."""
    for k in SUPPORTED_K:
        if vocab_size(k) == size:
            return k
    raise ValueError(f"vocab_size {size} is not 4**k + 6 for any k in {SUPPORTED_K}")


def _check_k(k: int) -> None:
    if k not in SUPPORTED_K:
        raise ValueError(f"k must be one of {SUPPORTED_K}, got {k!r}")


@lru_cache(maxsize=None)
def kmer_vocabulary(k: int) -> tuple[str, ...]:
    """The k-mers in id order: ``kmer_vocabulary(k)[i]`` has id ``i + 6``."""
    _check_k(k)
    return tuple("".join(p) for p in itertools.product(_ALPHABET, repeat=k))


def encode(sequence: str, k: int, crop: int | None = None) -> np.ndarray:
    """Token ids (int64 numpy array, no padding) of one nucleotide sequence.

    ``crop``, when given, keeps only the first ``crop`` nucleotides before tokenizing: the
    published pipeline's behaviour, here only on request.
    """
    _check_k(k)
    if crop is not None:
        if crop < 1:
            raise ValueError(f"crop must be >= 1, got {crop}")
        sequence = sequence[:crop]
    raw = sequence.encode("ascii", errors="replace") if isinstance(sequence, str) else bytes(sequence)
    codes = _BASE_CODE[np.frombuffer(raw, dtype=np.uint8)]
    flank = k // 2
    n_kmers = max(0, len(codes) - k + 1)
    ids = np.empty(2 * flank + n_kmers, dtype=np.int64)
    ids[:flank] = FILL
    ids[len(ids) - flank :] = FILL
    if n_kmers:
        window = np.lib.stride_tricks.sliding_window_view(codes, k)  # (n_kmers, k)
        value = np.zeros(n_kmers, dtype=np.int64)
        for j in range(k):  # base-4 number, first letter most significant (product order)
            value = value * 4 + np.minimum(window[:, j], 3)
        unknown = (window == 4).any(axis=1)
        ids[flank : flank + n_kmers] = np.where(unknown, UNK, value + FIRST_KMER_ID)
    return ids


def tokenize(sequence: str, k: int, crop: int | None = None) -> list[int]:
    """Public API: token ids of ``sequence`` at ``k`` as a list; no padding, no cutting."""
    return encode(sequence, k, crop=crop).tolist()


def decode(ids, k: int) -> str:
    """Nucleotides (T alphabet) spelled by token ids; the inverse of ``encode`` for ACGT input.

    UNK tokens give 'N' at the k-mer's centre; FILL and PAD give nothing.
    """
    _check_k(k)
    ids = [int(i) for i in ids if int(i) not in (PAD,)]
    vocab = kmer_vocabulary(k)
    flank = k // 2
    core = [i for i in ids if i != FILL]
    if not core:
        return ""
    out = []
    first = core[0]
    # the first k-mer contributes its left flank, every k-mer its centre, the last its right flank
    if first >= FIRST_KMER_ID:
        out.append(vocab[first - FIRST_KMER_ID][:flank])
    else:
        out.append("N" * flank)
    for i in core:
        out.append(vocab[i - FIRST_KMER_ID][flank] if i >= FIRST_KMER_ID else "N")
    last = core[-1]
    if last >= FIRST_KMER_ID:
        out.append(vocab[last - FIRST_KMER_ID][flank + 1 :])
    else:
        out.append("N" * flank)
    return "".join(out)
