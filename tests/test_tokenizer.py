"""The tokenizer reproduces the published ids (tokenizer.json) and never cuts silently."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import rnaret
from rnaret import tokenizer as tok
from rnaret.io.fasta import read_fasta

KS = (1, 3, 5)


@pytest.fixture(scope="module")
def published(reference):
    return json.loads((reference / "official_vectors" / "tokenizer.json").read_text())


@pytest.fixture(scope="module")
def real_sequences(resources):
    """The first 40 RNAcentral records of the bundled sample (real sequences, some with IUPAC)."""
    records = []
    for record in read_fasta(resources / "rnacentral" / "rnacentral_sample.fa.gz"):
        records.append(record.sequence)
        if len(records) == 40:
            break
    return records


@pytest.mark.parametrize("k", KS)
def test_reproduces_published_tokenizer(published, k):
    rows = published["tokens"][f"k{k}"]
    assert len(rows) == len(published["sequences"]) == 4
    for sequence, row in zip(published["sequences"], rows):
        ids = rnaret.tokenize(sequence, k)
        # the published tokenizer right-pads with PAD to max_len; ours never pads
        assert ids == row[:len(ids)]
        assert all(i == tok.PAD for i in row[len(ids):])
        assert tok.PAD not in ids


def test_special_ids_and_vocabulary_order():
    assert (tok.PAD, tok.FILL, tok.UNK, tok.CLS, tok.MASK, tok.FIRST_KMER_ID) == (0, 1, 2, 3, 4, 6)
    assert tok.tokenize("ATCG", 1) == [6, 7, 8, 9]
    for k in KS:
        assert tok.vocab_size(k) == 4**k + 6
        assert tok.k_from_vocab_size(4**k + 6) == k
        assert list(tok.kmer_vocabulary(k)) == ["".join(p) for p in itertools.product("ATCG", repeat=k)]
    # k-mer id = 6 + its index in product order, e.g. k=3 'TCG' = (1*16 + 2*4 + 3) + 6
    assert tok.tokenize("TCG", 3) == [tok.FILL, 6 + 27, tok.FILL]
    assert tok.tokenize("ATCGA", 3)[1:4] == [6 + 0 * 16 + 1 * 4 + 2, 6 + 1 * 16 + 2 * 4 + 3, 6 + 2 * 16 + 3 * 4 + 0]
    with pytest.raises(ValueError, match="vocab_size 11"):
        tok.k_from_vocab_size(11)
    for bad_k in (0, 2, 4, 6):
        with pytest.raises(ValueError, match="k must be one of"):
            tok.tokenize("ACGU", bad_k)


@pytest.mark.parametrize("k", KS)
def test_lower_case_and_u_are_accepted(real_sequences, k):
    for sequence in real_sequences[:10]:
        upper_t = sequence.upper().replace("U", "T")
        assert tok.tokenize(sequence.lower(), k) == tok.tokenize(upper_t, k)
        assert tok.tokenize(upper_t.replace("T", "U"), k) == tok.tokenize(upper_t, k)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("letter", list("NRYSWKMBDHV-.nrx?") + ["é"])
def test_any_kmer_with_a_non_acgt_letter_is_unk_in_place(k, letter):
    left, right = "ACGUACGUAC", "GGAUCCAUGA"
    ids = tok.tokenize(left + letter + right, k)
    flank = k // 2
    assert len(ids) == len(left) + 1 + len(right)  # positions kept, odd k: n tokens for n nt
    centre = len(left)
    unk = [i for i, t in enumerate(ids) if t == tok.UNK]
    # exactly the k k-mers that hold the letter, centred on centre-flank .. centre+flank
    assert unk == list(range(centre - flank, centre + flank + 1))
    clean = tok.tokenize(left + "A" + right, k)
    assert [t for i, t in enumerate(ids) if i not in unk] == [t for i, t in enumerate(clean) if i not in unk]


@pytest.mark.parametrize("k", KS)
def test_lengths_and_fill_flanks(k):
    flank = k // 2
    for n in range(0, 13):
        ids = tok.tokenize(("ACGU" * 4)[:n], k)
        if n >= k:
            assert len(ids) == n
            assert ids[:flank] == [tok.FILL] * flank and ids[len(ids) - flank:] == [tok.FILL] * flank
            assert all(i >= tok.FIRST_KMER_ID for i in ids[flank:len(ids) - flank])
        else:  # shorter than k: only the FILL flanks, as published
            assert ids == [tok.FILL] * (2 * flank)


@pytest.mark.parametrize("k", KS)
def test_never_cuts_unless_crop_is_given(real_sequences, k):
    long_sequence = "".join(real_sequences)
    assert len(long_sequence) > 5000
    assert len(tok.tokenize(long_sequence, k)) == len(long_sequence)
    for crop in (1, 7, 2000):
        assert tok.tokenize(long_sequence, k, crop=crop) == tok.tokenize(long_sequence[:crop], k)
    assert tok.tokenize("ACG", k, crop=10) == tok.tokenize("ACG", k)
    with pytest.raises(ValueError, match="crop must be >= 1"):
        tok.tokenize(long_sequence, k, crop=0)


@pytest.mark.parametrize("k", KS)
def test_decode_round_trip_on_real_sequences(real_sequences, k):
    n_checked = 0
    for sequence in real_sequences:
        dna = sequence.upper().replace("U", "T")
        ids = tok.encode(sequence, k)
        assert ids.dtype == np.int64
        if set(dna) <= set("ACGT") and len(dna) >= k:
            assert tok.decode(ids, k) == dna
            n_checked += 1
        else:  # unknown letters come back as N, known ones away from them unchanged
            decoded = tok.decode(ids, k)
            assert len(decoded) == len(dna) or len(dna) < k
    assert n_checked >= 20
    # padding is ignored by decode
    assert tok.decode(list(tok.encode("ACGTTGCA", k)) + [tok.PAD] * 5, k) == "ACGTTGCA"


def test_bytes_input_matches_str():
    assert tok.encode(b"acgun", 3).tolist() == tok.tokenize("ACGTN", 3)
