"""`rnaret scaling`: encoder time and peak memory against length, on tiny lengths."""
from __future__ import annotations

import math

import pytest

from rnaret import scaling
from rnaret.cli import main as rnaret_main
from rnaret.io.errors import InputError


def test_series_at_tiny_lengths_are_measured():
    rows = scaling.measure(["rnaret-chunkwise", "rnaret-parallel"], ["tiny"], [48, 16, 32], repeats=1)
    assert [(r.model, r.length) for r in rows] == [
        ("rnaret-chunkwise", 16), ("rnaret-chunkwise", 32), ("rnaret-chunkwise", 48),
        ("rnaret-parallel", 16), ("rnaret-parallel", 32), ("rnaret-parallel", 48)]
    for r in rows:
        assert r.status == "measured" and r.seconds > 0 and r.peak_mib >= 0
        assert (r.architecture, r.embed_dim, r.layers) == ("retnet", 16, 2)
    # both forms are the same encoder: same parameters
    assert len({r.parameters for r in rows}) == 1
    assert {r.form for r in rows} == {"chunkwise", "parallel"}


def test_lengths_over_the_time_budget_are_skipped_not_invented():
    rows = scaling.measure(["rnaret-chunkwise"], ["tiny"], [16, 32, 64], repeats=1, max_seconds=1e-9)
    assert rows[0].status == "measured"
    for r in rows[1:]:
        assert r.status.startswith("skipped: expected") and "L=16" in r.status and "linear" in r.status
        assert math.isnan(r.seconds) and math.isnan(r.peak_mib)


def test_parallel_form_needs_more_memory_than_chunkwise_at_long_length():
    """The parallel form must hold (heads, L, L) decay and score matrices; the chunkwise one only
    chunk-sized blocks. At L = 2048 (laptop size, 4 heads, fp32) one such matrix is 64 MiB: the
    parallel forward's resident-set rise is at least that (a lower bound from the shapes, not a
    ratio that depends on how the allocator reuses pages), the chunkwise one well below it."""
    rows = scaling.measure(["rnaret-chunkwise", "rnaret-parallel"], ["laptop"], [2048], repeats=1,
                           precision="fp32")
    chunkwise, parallel = (r.peak_mib for r in rows)
    if math.isnan(chunkwise):
        pytest.skip("no /proc peak-memory counters on this platform")
    one_matrix_mib = rows[1].heads * 2048 ** 2 * 4 / 2 ** 20
    assert parallel >= one_matrix_mib
    assert chunkwise < one_matrix_mib / 2


def test_transformer_is_included_when_present_and_refused_when_absent(monkeypatch):
    if scaling.transformer_available():
        assert "transformer" in scaling.default_models()
        rows = scaling.measure(["transformer"], ["tiny"], [16, 32], repeats=1)
        assert [r.architecture for r in rows] == ["transformer", "transformer"]
        assert all(r.status == "measured" and r.seconds > 0 for r in rows)
    monkeypatch.setattr(scaling, "transformer_available", lambda: False)
    assert scaling.default_models() == ["rnaret-chunkwise", "rnaret-parallel"]
    with pytest.raises(InputError, match="transformer"):
        scaling.check_models(["rnaret-chunkwise", "transformer"])
    with pytest.raises(InputError, match="unknown model"):
        scaling.check_models(["retnet"])


def test_command_writes_tsv_markdown_plot_and_html(tmp_path):
    out = {ext: tmp_path / f"length_scaling.{ext}" for ext in ("tsv", "md", "png", "html")}
    code = rnaret_main(["scaling", "--models", "rnaret-chunkwise", "rnaret-parallel", "--presets", "tiny",
                        "--lengths", "16,32", "--repeats", "1", "--output-tsv", str(out["tsv"]),
                        "--output-md", str(out["md"]), "--output-png", str(out["png"]),
                        "--output-html", str(out["html"])])
    assert code == 0
    lines = out["tsv"].read_text().splitlines()
    assert lines[0].split("\t") == list(scaling.COLUMNS)
    assert len(lines) == 1 + 2 * 2
    md = out["md"].read_text()
    assert "| 16 |" in md and "| 32 |" in md and "rnaret-parallel s" in md
    assert out["png"].read_bytes()[:4] == b"\x89PNG"
    assert out["html"].read_text().count("<tr>") == 1 + 4
    assert rnaret_main(["scaling", "--presets", "huge", "--output-tsv", str(out["tsv"])]) == 1
