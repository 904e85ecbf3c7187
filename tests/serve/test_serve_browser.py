"""`rnaret serve` in a real browser: the command serves on a loopback socket bound by the test,
headless Chromium (Debian's, driven by Playwright) pastes a bundled sequence, sees the drawings
and the coding plot, downloads a bpseq, and sees the message for bad input; stopping the server
removes its folders.

The server runs small untrained demo checkpoints unless RNARET_SERVE_CHECKPOINTS names real
ones (fine-tuned checkpoint folders separated by ':', e.g. the default run's
results/structure/bprna/rnaret-k1/checkpoint:results/coding/mouse/rnaret-k5/checkpoint). Set
RNARET_SERVE_SCREENSHOT=PATH to keep the screenshot of the result page (docs/serve.png).
"""
from __future__ import annotations

import os
import shutil
import signal
import urllib.request
from pathlib import Path

import pytest

from rnaret.io.structure import parse_dot_bracket, read_bpseq, read_structures
from serve_server import REQUEST_TIMEOUT_S, start_command, wait_until_up

CHROMIUM = "/usr/bin/chromium"
# flags that work on this kind of machine (MACHINE_FACTS.md, "Web and browser tests")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def served_checkpoints(tmp_path_factory) -> list[str]:
    """``--checkpoint`` arguments: RNARET_SERVE_CHECKPOINTS's folders, else demo checkpoints."""
    given = [p for p in os.environ.get("RNARET_SERVE_CHECKPOINTS", "").split(os.pathsep) if p]
    if given:
        missing = [p for p in given if not Path(p).is_dir()]
        if missing:
            pytest.fail(f"RNARET_SERVE_CHECKPOINTS: no such checkpoint folder: {', '.join(missing)}")
        return [arg for p in given for arg in ("--checkpoint", str(Path(p).resolve()))]
    from serve_checkpoints import tiny_checkpoints

    checkpoints = tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    return ["--checkpoint", str(checkpoints["structure"]), "--checkpoint", str(checkpoints["coding"]),
            "--embed-checkpoint", str(checkpoints["embed"])]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m rnaret serve` on a socket the test bound on 127.0.0.1; yields (base URL,
    process, jobs folder)."""
    jobs = tmp_path_factory.mktemp("jobs")
    log = open(tmp_path_factory.mktemp("log") / "serve.log", "w+")
    process, base = start_command([*served_checkpoints(tmp_path_factory), "--workers", "2",
                                   "--threads-per-worker", "1", "--tmp-dir", str(jobs), "--log-level", "warning"],
                                  stdout=log)
    try:
        wait_until_up(base)
    except Exception:
        process.kill()
        process.wait()
        log.seek(0)
        pytest.fail(f"rnaret serve did not start:\n{log.read()[-3000:]}")
    yield base, process, jobs
    if process.poll() is None:
        process.kill()
        process.wait(REQUEST_TIMEOUT_S)
    log.close()


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    """A fresh headless Chromium profile (its own user-data-dir) and one page in it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, accept_downloads=True, viewport={"width": 1200, "height": 900})
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.fixture(scope="module")
def bundled(resources):
    """The first bpRNA test record (bundled in resources/structure)."""
    return next(iter(read_structures(resources / "structure" / "bprna_test.csv")))


def limits_shown(page) -> None:
    """Wait for the page to show the server's limits (fetched after load). A locator assertion
    rather than a string expression: the page's CSP (script-src 'self') forbids eval, and
    Playwright polls a string expression with eval once the first check fails."""
    from playwright.sync_api import expect

    expect(page.locator("#limits")).to_contain_text("sequences", timeout=30_000)


def images_loaded(page, selector: str) -> None:
    page.wait_for_function(
        "s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector, timeout=60_000)


def test_paste_predict_see_drawings_and_download_bpseq(server, browser_page, bundled, tmp_path):
    base, _, _ = server
    page = browser_page
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(f"{base}/")
    limits_shown(page)
    page.fill("#sequence-input", f">{bundled.id}\n{bundled.sequence}\n")
    page.click("#submit-button")
    page.wait_for_selector("article.result", timeout=120_000)
    for selector in ("img.model-drawing", "img.vienna-drawing", "img.heatmap", "img.coding-plot"):
        images_loaded(page, selector)
    assert page.locator("#progress").evaluate("p => p.value") == 1
    assert page.locator("#error").is_hidden()
    card = page.locator("article.result")
    assert card.get_attribute("data-id") == bundled.id
    alignment = card.locator("pre.alignment").inner_text().splitlines()
    sequence = bundled.sequence.upper().replace("T", "U")
    assert alignment[0].split()[-1] == sequence
    model_dot_bracket = alignment[1].split()[1]
    assert len(model_dot_bracket) == len(sequence)
    assert "coding probability" in card.locator(".coding-summary").inner_text()

    with page.expect_download() as download_info:
        card.locator("a.download[data-name='model.bpseq']").click()
    download = download_info.value
    assert download.suggested_filename == f"{bundled.id}.model.bpseq"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    record = read_bpseq(saved)
    assert record.sequence == sequence
    assert record.pairs == parse_dot_bracket(model_dot_bracket)

    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("RNARET_SERVE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["RNARET_SERVE_SCREENSHOT"])
    assert failed == []  # nothing the page asked for failed to load (nothing external either)
    # the footer names the models, never a folder of the server (no temporary paths on the page)
    footer = page.locator("footer").inner_text()
    assert "structure model:" in footer and "coding model:" in footer
    assert "/" not in footer.split("JSON API")[0], footer


def test_every_layer_and_a_retention_map_from_the_page(server, browser_page):
    """The page's layers / pooling / retention choices reach the server: a bad one is shown with
    the command line's message, good ones give the HDF5 and .npy downloads."""
    base, _, _ = server
    page = browser_page
    page.goto(f"{base}/")
    limits_shown(page)
    page.fill("#sequence-input", ">hairpin\nGGGAAAUCCCAGCUUCGGCUGGGAUUUCCC\n")
    page.fill("#opt-layers", "9")
    page.click("#submit-button")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "--layers '9': the encoder has layers 0 (the token embeddings) to" in page.locator("#error").inner_text()
    page.fill("#opt-layers", "all")
    page.select_option("#opt-pool", "none")
    page.fill("#opt-retention", "1,1")
    page.click("#submit-button")
    page.wait_for_selector("article.result a.download[data-name='retention_scores.npy']", timeout=120_000)
    assert page.locator("#error").is_hidden()
    card = page.locator("article.result")
    assert card.locator("a.download[data-name='embeddings.h5']").count() == 1
    assert card.locator("a.download[data-name='embeddings.safetensors']").count() == 0


def test_bad_input_shows_the_message_on_the_page(server, browser_page):
    base, _, _ = server
    page = browser_page
    page.goto(f"{base}/")
    page.fill("#sequence-input", ">my_rna\nGGGAAAUCCJCCC\n")
    page.click("#submit-button")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    message = page.locator("#error").inner_text()
    assert "record 'my_rna'" in message and "'J' at position 10" in message
    assert page.locator("article.result").count() == 0
    assert "Traceback" not in page.content()


def test_stopping_the_server_removes_its_temporary_folders(server):
    base, process, jobs = server
    request = urllib.request.Request(f"{base}/api/jobs", data=b'{"fasta": ">kept\\nGGGGAAAUCCCC"}',
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
        assert answer.status == 202
    assert any(jobs.iterdir())  # the job's folder exists while the server runs
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught: exit status -SIGTERM
    assert process.wait(REQUEST_TIMEOUT_S) in (0, -signal.SIGTERM)
    assert list(jobs.iterdir()) == []
