"""The length policy: minimum length, long sequences kept, split into windows, dropped or cut."""
from __future__ import annotations

import math

import pytest

from rnaret.data.lengths import LengthPolicy, apply_length_policy, windows
from rnaret.io.fasta import read_fasta


# (length, window, overlap) -> the windows, worked out by hand: steps of window - overlap while a
# whole window fits before the end, then one window ending exactly at the end
WINDOWS = {
    (2000, 2000, 200): [(0, 2000)],
    (2001, 2000, 200): [(0, 2000), (1, 2001)],
    (3800, 2000, 200): [(0, 2000), (1800, 3800)],
    (10449, 2000, 200): [(0, 2000), (1800, 3800), (3600, 5600), (5400, 7400), (7200, 9200), (8449, 10449)],
    (57, 10, 3): [(0, 10), (7, 17), (14, 24), (21, 31), (28, 38), (35, 45), (42, 52), (47, 57)],
    (11, 10, 0): [(0, 10), (1, 11)],
    (9, 10, 3): [(0, 9)],
}


@pytest.mark.parametrize("length, window, overlap", list(WINDOWS))
def test_windows_are_the_hand_computed_ones(length, window, overlap):
    assert windows(length, window, overlap) == WINDOWS[(length, window, overlap)]


def window_count(length: int, window: int, overlap: int) -> int:
    """How many windows cover ``length`` nt: 1 when it fits, else ceil((n - w) / (w - o)) + 1."""
    return 1 if length <= window else math.ceil((length - window) / (window - overlap)) + 1


@pytest.mark.parametrize("length, window, overlap", [
    (2000, 2000, 200), (2001, 2000, 200), (3800, 2000, 200), (10449, 2000, 200), (57, 10, 3), (11, 10, 0)])
def test_windows_cover_every_position_with_full_windows(length, window, overlap):
    spans = windows(length, window, overlap)
    assert len(spans) == window_count(length, window, overlap)
    covered = [0] * length
    for a, b in spans:
        assert b - a == min(window, length)
        for i in range(a, b):
            covered[i] += 1
    assert min(covered) >= 1 and spans[0][0] == 0 and spans[-1][1] == length
    for (a1, b1), (a2, b2) in zip(spans, spans[1:]):
        assert a1 < a2 and b1 - a2 >= overlap  # neighbours share at least `overlap` nt


def write(path, records):
    path.write_text("".join(f">{h}\n{s}\n" for h, s in records))
    return path


def test_split_policy_writes_windows_with_coordinates(tmp_path):
    seq = "".join("ACGU"[i % 4] for i in range(25))
    source = write(tmp_path / "in.fa", [("short desc", "ACG"), ("ok", "ACGUACGU"), ("long extra words", seq)])
    policy = LengthPolicy(min_length=5, max_length=10, long="split", window=10, overlap=4)
    counts = apply_length_policy(source, tmp_path / "out.fa", policy, show_progress=False)
    out = list(read_fasta(tmp_path / "out.fa"))
    assert [r.description for r in out] == ["ok", "long/1-10 extra words", "long/7-16 extra words",
                                             "long/13-22 extra words", "long/16-25 extra words"]
    for r in out[1:]:
        a, b = map(int, r.id.split("/")[1].split("-"))
        assert r.sequence == seq[a - 1:b]
    assert counts["too_short"] == 1 and counts["long"] == 1 and counts["windows_written"] == 4
    assert counts["records_in"] == 3 and counts["records_out"] == 5
    assert counts["nucleotides_out"] == 8 + 40


@pytest.mark.parametrize("long, ids", [("keep", ["ok", "long"]), ("drop", ["ok"])])
def test_keep_and_drop_policies_never_cut(tmp_path, long, ids):
    source = write(tmp_path / "in.fa", [("ok", "ACGUACGU"), ("long", "A" * 30)])
    policy = LengthPolicy(min_length=5, max_length=10, long=long, overlap=2)
    counts = apply_length_policy(source, tmp_path / "out.fa", policy, show_progress=False)
    out = list(read_fasta(tmp_path / "out.fa"))
    assert [r.id for r in out] == ids
    if long == "keep":
        assert out[1].sequence == "A" * 30 and counts["long_kept"] == 1
    else:
        assert counts["long_dropped"] == 1


@pytest.mark.parametrize("kwargs, key", [
    (dict(long="trim"), "long"), (dict(min_length=0), "min_length"), (dict(window=5000), "window"),
    (dict(overlap=2000), "overlap")])
def test_bad_policies_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        LengthPolicy(**kwargs)


def test_sample_counts_match_an_independent_count(tmp_path, resources):
    source = resources / "rnacentral" / "rnacentral_sample.fa.gz"
    counts = apply_length_policy(source, tmp_path / "out.fa.gz", LengthPolicy(), show_progress=False)
    lengths = [len(r.sequence) for r in read_fasta(source)]
    assert counts["long"] == sum(n > 2000 for n in lengths) == 1359  # SOURCE.md
    expected = sum(window_count(n, 2000, 200) for n in lengths if n >= 10)
    # 17,861 records from the whole sample (the default run filters what the leakage stage left: docs/results.md)
    assert counts["records_out"] == expected == 17_861
    assert counts["windows_written"] == sum(window_count(n, 2000, 200) for n in lengths if n > 2000) == 3_019
    assert max(len(r.sequence) for r in read_fasta(tmp_path / "out.fa.gz")) == 2000


def test_cut_policy_keeps_every_record_cut_to_its_first_max_length_nt(tmp_path, resources):
    """The published corpus (pretrain.py: ``str(record.seq)[:max_len]``): every record of the
    bundled sample, in order, under its own header, each its first 2,000 nt; what was cut off is
    counted."""
    source = resources / "rnacentral" / "rnacentral_sample.fa.gz"
    policy = LengthPolicy(min_length=1, max_length=2000, long="cut", overlap=0)
    counts = apply_length_policy(source, tmp_path / "out.fa.gz", policy, show_progress=False)
    original = list(read_fasta(source))
    out = list(read_fasta(tmp_path / "out.fa.gz"))
    assert [r.description for r in out] == [r.description for r in original]
    assert [r.sequence for r in out] == [r.sequence[:2000] for r in original]
    long = [len(r.sequence) for r in original if len(r.sequence) > 2000]
    assert counts["long"] == counts["long_cut"] == len(long) == 1359  # SOURCE.md
    assert counts["nucleotides_cut"] == sum(n - 2000 for n in long) > 0
    assert counts["too_short"] == 0 and counts["windows_written"] == 0
    assert counts["records_out"] == counts["records_in"] == len(original)
    assert counts["nucleotides_out"] == counts["nucleotides_in"] - counts["nucleotides_cut"]
