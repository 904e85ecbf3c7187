"""The report stage through the real Snakemake on bundled data: ViennaRNA on a few bpRNA test
structures -> tables, F1 distribution, contact maps, length scaling (tiny sizes) -> `snakemake
--report`, a self-contained HTML file with every figure and table and their captions, opened in
Chromium with the network unused.

The whole pipeline (pretraining, fine-tuning) is not rerun here: the fine-tuned models are switched
off in the test config, so the run holds the report stage's own evaluations only."""
from __future__ import annotations

import base64
import os
import re

import pytest
import yaml

from conftest import ROOT
from workflow_copy import make_workdir, snakemake
from rnaret.metrics import read_metrics_tsv
from rnaret.tables import read_table_tsv

TARGETS = ["results/tables/structure.tsv", "results/report/structure/figures.txt",
           "results/tables/length_scaling.tsv"]
N_STRUCTURES = 6


def _snakemake(workdir, *args, timeout=1200):
    return snakemake(workdir, *args, timeout=timeout)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A copy of the workflow run to the report stage's targets on a few bundled structures."""
    workdir = make_workdir(tmp_path_factory.mktemp("workflow"))
    lines = (ROOT / "resources/structure/bprna_test.csv").read_text(encoding="utf-8").splitlines(True)
    (workdir / "bprna_subset.csv").write_text("".join(lines[: N_STRUCTURES + 1]), encoding="utf-8")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["datasets"]["structure"] = {"bprna": {"test": "bprna_subset.csv"}}
    # no fine-tuning in this test (the schema's default models are switched off)
    config["finetune"] = {task: {"models": []} for task in ("interaction", "coding", "structure")}
    config["report"] = {"length_scaling": dict(models=["rnaret-chunkwise", "rnaret-parallel"], presets=["tiny"],
                                               lengths=[32, 64], repeats=1, threads=1)}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    _snakemake(workdir, "--cores", "2", *TARGETS)
    _snakemake(workdir, "--report", "report.html", *TARGETS)
    return workdir


@pytest.mark.slow
def test_run_writes_tables_and_figures(finished_run):
    structure = read_table_tsv(finished_run / "results/tables/structure.tsv")
    vienna = {r["variant"]: r for r in structure if r["model"] == "vienna"}
    metrics = read_metrics_tsv(finished_run / "results/structure/bprna/vienna/metrics.tsv")
    assert float(vienna["MFE"]["f1"]) == metrics["f1"] and float(vienna["MEA"]["f1"]) == metrics["mea_f1"]
    assert int(vienna["MFE"]["n"]) == N_STRUCTURES
    assert vienna["MFE"]["source"] == "results/structure/bprna/vienna/metrics.tsv"
    assert any(r["origin"] == "cited" and r["source"] for r in structure)
    index = (finished_run / "results/report/structure/figures.txt").read_text().split()
    assert index == ["results/report/structure/bprna/vienna/f1_distribution.png",
                     "results/report/structure/bprna/vienna/contact_maps.png"]
    scaling = (finished_run / "results/tables/length_scaling.tsv").read_text().splitlines()
    assert len(scaling) == 1 + 2 * 2


@pytest.mark.slow
def test_report_holds_every_result_with_its_caption(finished_run):
    html = (finished_run / "report.html").read_text(encoding="utf-8")
    for name in ("structure.html", "structure.tsv", "interaction.html", "coding.html", "f1_distribution.png",
                 "contact_maps.png", "length_scaling.png", "length_scaling.html"):
        assert f'"filename": "{name}"' in html, name
    for caption in ("Results table of one task", "Per-sequence base-pair F1 of",
                    "Predicted against true base pairs", "Encoder forward time and peak memory",
                    "Published figures."):
        assert caption in html, caption
    assert "system-message" not in html  # every caption is valid reStructuredText
    # the structure table travels inside the report, with the run's row and a source note
    uri = re.search(r'"data_uri": "data:text/html;charset=utf8;filename=structure\.html;base64,([^"]+)"', html)
    table = base64.b64decode(uri.group(1)).decode("utf-8")
    assert "vienna (MFE)" in table and "Sources:" in table and "not available" in table


@pytest.mark.slow
@pytest.mark.browser
def test_report_opens_offline(finished_run):
    """Chromium renders the report from the file alone: no request leaves the machine."""
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page()
        page.on("request", lambda r: outside.append(r.url)
                if not r.url.startswith(("file:", "data:", "blob:", "about:")) else None)
        page.goto((finished_run / "report.html").as_uri())
        page.get_by_text("Tables").first.click()
        page.get_by_text("structure").first.click()
        text = page.inner_text("body")
        browser.close()
    assert outside == []
    assert "structure" in text and "TSV" in text
