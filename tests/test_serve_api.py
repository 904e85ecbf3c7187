"""`rnaret serve` JSON API: the real app, real worker processes, small real checkpoints, bundled data.

One app (two worker processes) serves the whole module; its jobs' folders go to a temporary
folder the tests watch.
"""
from __future__ import annotations

import gzip
import io
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from rnaret.io.fasta import read_fasta  # noqa: E402
from rnaret.io.structure import parse_dot_bracket, read_bpseq, read_ct, read_dbn, read_structures  # noqa: E402
from rnaret.serve import Limits, create_app  # noqa: E402
from rnaret.serve.demo import tiny_checkpoints  # noqa: E402

LIMITS = Limits(max_request_bytes=20_000, max_sequences=4, max_total_length=6_000, max_structure_length=1_600,
                max_jobs=5)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def jobs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def client(checkpoints, jobs_root):
    app = create_app(checkpoints["structure"], checkpoints["coding"], checkpoints["embed"], LIMITS,
                     workers=2, threads_per_worker=1, tmp_root=jobs_root, job_ttl_s=60)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def trna_like(resources):
    """The first bpRNA test record (120 nt) with its true structure."""
    return next(iter(read_structures(resources / "structure" / "bprna_test.csv")))


@pytest.fixture(scope="module")
def transcripts(resources):
    """Real mouse transcripts: one of 1.3-1.5 kb (a fold of seconds), one longer than the
    structure limit."""
    mid = long = None
    for record in read_fasta(resources / "mrna_lncrna" / "mouse_test.fa.gz"):
        n = len(record.sequence)
        if mid is None and 1300 <= n <= 1500:
            mid = record
        if long is None and LIMITS.max_structure_length < n <= 2000:
            long = record
        if mid and long:
            return mid, long
    raise AssertionError("the bundled mouse test set has no transcripts of the needed lengths")


def folders(root):
    return sorted(p.name for p in root.iterdir())


def wait_done(client, job, timeout=120):
    deadline = time.monotonic() + timeout
    seen = [job["progress"]["fraction"]]
    while job["status"] != "done":
        assert time.monotonic() < deadline, f"job not done after {timeout} s: {job['progress']}"
        time.sleep(0.1)
        job = client.get(job["url"]).json()
        seen.append(job["progress"]["fraction"])
    return job, seen


# -- what the server knows ---------------------------------------------------------------------
def test_info_names_models_and_limits(client):
    info = client.get("/api/info").json()
    assert set(info["stages"]) == {"structure", "vienna", "coding", "embed"}
    assert info["stages"]["structure"]["k"] == 1 and info["stages"]["coding"]["k"] == 5
    assert info["limits"] == LIMITS.as_dict()


def test_openapi_documents_the_routes_and_shapes(client):
    schema = client.get("/api/openapi.json").json()
    assert {"/api/predict", "/api/jobs", "/api/jobs/upload", "/api/jobs/{job_id}",
            "/api/jobs/{job_id}/files/{index}/{name}", "/api/info"} <= set(schema["paths"])
    components = schema["components"]["schemas"]
    assert {"JobRequest", "JobStatus", "SequenceResult", "ModelStructure", "CodingResult"} <= set(components)
    assert "413" in schema["paths"]["/api/predict"]["post"]["responses"]


def test_page_and_assets_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="/static/app.js"' in page.text and "://" not in page.text  # nothing from elsewhere
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


# -- valid input -----------------------------------------------------------------------------------
def test_predict_returns_the_models_and_viennas_answers(client, checkpoints, trna_like, tmp_path):
    from rnaret.cli import main
    from rnaret.embed import embed_sequences, read_embeddings
    from rnaret.checkpoint import load_encoder
    from rnaret.fold import load_structure_model, predict_structure
    from rnaret.vienna import fold_mfe

    seq = trna_like.sequence.upper().replace("T", "U")
    response = client.post("/api/predict", json={"fasta": f">{trna_like.id} from bpRNA\n{trna_like.sequence}\n"})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "done" and job["progress"]["fraction"] == 1.0
    (result,) = job["results"]
    assert result["id"] == trna_like.id and result["length"] == len(seq) and result["notes"] == []

    # model structure: the same as rnaret.fold on the same checkpoint, and self-consistent
    task, model = load_structure_model(checkpoints["structure"], device="cpu")
    (direct,) = predict_structure(model, [seq], task=task)
    structure = result["structure"]
    assert [tuple(p) for p in structure["pairs"]] == direct.pairs
    assert structure["dot_bracket"] == direct.dot_bracket
    assert parse_dot_bracket(structure["dot_bracket"]) == direct.pairs
    probabilities = np.load(io.BytesIO(client.get(structure["probabilities_url"]).content))
    assert probabilities.shape == (len(seq), len(seq))
    np.testing.assert_allclose(probabilities, direct.probabilities, atol=1e-5)

    # ViennaRNA: exactly rnaret.vienna's MFE
    assert (result["vienna"]["dot_bracket"], result["vienna"]["energy"]) == fold_mfe(seq)

    # coding: what `rnaret classify` says for the same transcript
    fasta = tmp_path / "one.fa"
    fasta.write_text(f">{trna_like.id}\n{seq}\n")
    assert main(["classify", str(fasta), "--checkpoint", str(checkpoints["coding"]), "--output",
                 str(tmp_path / "c.tsv"), "--positions", str(tmp_path / "p.tsv"), "--quiet"]) == 0
    score = float((tmp_path / "c.tsv").read_text().splitlines()[1].split("\t")[2])
    track = [float(x) for x in (tmp_path / "p.tsv").read_text().splitlines()[1].split("\t")[1].split(",")]
    coding = result["coding"]
    assert coding["probability"] == pytest.approx(score, abs=1e-5)
    assert coding["prediction"] == ("coding" if score >= 0.5 else "noncoding")
    np.testing.assert_allclose(coding["track"], track, atol=1.5e-3)

    # downloads: bpseq, CT and dbn hold the model's pairs; embeddings are the encoder's
    files = {d["name"]: d["url"] for d in result["downloads"]}
    for name, reader in (("model.bpseq", read_bpseq), ("model.ct", lambda p: next(iter(read_ct(p)))),
                         ("model.dbn", lambda p: next(iter(read_dbn(p))))):
        answer = client.get(files[name])
        assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
        path = tmp_path / name
        path.write_bytes(answer.content)
        record = reader(path)
        assert record.sequence == seq and record.pairs == direct.pairs
    vienna_bpseq = tmp_path / "vienna.bpseq"
    vienna_bpseq.write_bytes(client.get(files["vienna.bpseq"]).content)
    assert read_bpseq(vienna_bpseq).pairs == parse_dot_bracket(fold_mfe(seq)[0])
    embedded = tmp_path / "e.safetensors"
    embedded.write_bytes(client.get(result["embeddings"]["url"]).content)
    ids, arrays, _ = read_embeddings(embedded)
    expected = embed_sequences(load_encoder(checkpoints["embed"]), [trna_like.id], [seq], progress=False)
    assert ids == [trna_like.id]
    np.testing.assert_allclose(arrays["per_nucleotide"], expected.per_nucleotide, atol=1e-5)

    # pictures: SVG drawings (served as images), PNG heat map and coding plot
    for url in (structure["drawing_url"], result["vienna"]["drawing_url"]):
        svg = client.get(url)
        assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    for url in (structure["heatmap_url"], coding["plot_url"]):
        assert client.get(url).content.startswith(b"\x89PNG")


def test_job_reports_progress_and_delete_removes_its_folder(client, jobs_root, trna_like):
    before = folders(jobs_root)
    created = client.post("/api/jobs", json={"sequences": [{"id": "a", "sequence": trna_like.sequence},
                                                            {"id": "b", "sequence": trna_like.sequence[:60]}],
                                             "embeddings": False})
    assert created.status_code == 202
    job, fractions = wait_done(client, created.json())
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert job["progress"]["total"] == 2 * 3  # structure, vienna, coding per sequence
    assert all(r["embeddings"] is None for r in job["results"])
    assert len(folders(jobs_root)) == len(before) + 1
    assert client.delete(job["url"]).status_code == 204
    assert folders(jobs_root) == before
    gone = client.get(job["url"])
    assert gone.status_code == 404 and "unknown, deleted or expired" in gone.json()["detail"]


def test_finished_jobs_expire(client, jobs_root):
    manager = client.app.state.manager
    job, _ = wait_done(client, client.post("/api/jobs", json={"fasta": "GGGGAAAUCCCC", "vienna": False}).json())
    assert job["results"][0]["id"] == "sequence_1"  # a bare sequence is one record
    held = manager.jobs[job["id"]]
    held.last_access -= manager.config.job_ttl_s + 1
    assert manager.expire() == 1
    assert not held.folder.exists() and client.get(job["url"]).status_code == 404


def test_upload_of_a_gzipped_fasta(client, trna_like):
    data = gzip.compress(f">{trna_like.id}\n{trna_like.sequence}\n".encode())
    created = client.post("/api/jobs/upload", files={"file": ("x.fa.gz", data, "application/gzip")},
                          data={"vienna": "false", "embeddings": "false"})
    assert created.status_code == 202, created.text
    job, _ = wait_done(client, created.json())
    assert job["results"][0]["vienna"] is None and job["results"][0]["structure"] is not None
    client.delete(job["url"])


def test_a_sequence_over_the_structure_limit_still_gets_coding(client, transcripts):
    _, long = transcripts
    job = client.post("/api/predict", json={"fasta": f">long\n{long.sequence}\n"}).json()
    (result,) = job["results"]
    assert result["structure"] is None and result["vienna"] is None
    assert "max_structure_length" in result["notes"][0]
    assert len(result["coding"]["track"]) == len(long.sequence) and result["embeddings"] is not None
    client.delete(job["url"])


# -- invalid input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("body, words", [
    ({"fasta": "this is not a FASTA file\nat all\n"}, "not FASTA"),
    ({"fasta": "<html><body>GGG</body></html>"}, "not FASTA"),
    ({"fasta": ">ok\nGGGAAACCC\n>bad\nGGGJAAACCC\n"}, "'J' at position 4 is not an IUPAC nucleotide letter"),
    ({"fasta": ">x\nGGG AAA\n>y\nAUG*\n"}, "'*' at position 4"),
    ({"fasta": ""}, "empty"),
    ({"fasta": "  \n\n "}, "empty"),
    ({"fasta": ">header_only\n"}, "no sequence"),
    ({"fasta": ">x\nGG-GAAACCC\n"}, "alignment gap"),
    ({"fasta": ">x\nGGG\n>x\nCCC\n"}, "duplicate id"),
    ({"sequences": [{"id": "a", "sequence": "GGGZ"}]}, "'Z' at position 4"),
    ({"sequences": [{"id": "has space", "sequence": "GGG"}]}, "sequences.0.id"),
    ({"sequences": []}, "empty"),
    ({}, "exactly one of 'fasta'"),
    ({"fasta": ">a\nGGG\n", "sequences": [{"id": "b", "sequence": "CCC"}]}, "exactly one of 'fasta'"),
])
def test_bad_input_is_a_422_with_a_clear_message(client, jobs_root, body, words):
    before = folders(jobs_root)
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail
    assert "Traceback" not in response.text and str(jobs_root) not in detail
    assert folders(jobs_root) == before  # the refused input's folder is gone


def test_bad_input_names_record_and_line(client):
    detail = client.post("/api/jobs", json={"fasta": ">a\nGGGA\n>b\nCCXC\n"}).json()["detail"]
    assert detail == "your FASTA: record 'b': line 4, column 3: 'X' at position 3 is not an IUPAC nucleotide letter"


@pytest.mark.parametrize("name, data, words", [
    ("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe", "not a text FASTA file"),
    ("cut.fa.gz", None, "truncated or corrupt"),
    ("empty.fa", b"", "empty"),
])
def test_bad_uploads_are_422(client, resources, name, data, words):
    if data is None:  # the bundled gzipped FASTA, cut short
        data = (resources / "mrna_lncrna" / "mouse_test.fa.gz").read_bytes()[:3000]
    response = client.post("/api/jobs/upload", files={"file": (name, data, "application/octet-stream")})
    assert response.status_code == 422 and words in response.json()["detail"]


def test_malformed_json_is_422(client):
    response = client.post("/api/jobs", content=b'{"fasta": ">a\\nGGG"', headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"] == "invalid request: the request body is not valid JSON"
    form = client.post("/api/jobs", content=b'{"fasta": ">a\\nGGG"}',
                       headers={"content-type": "application/x-www-form-urlencoded"})  # curl -d without -H
    assert form.status_code == 422 and "Content-Type: application/json" in form.json()["detail"]


def test_unknown_job_and_file_are_404(client, trna_like):
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404
    job = client.post("/api/predict", json={"fasta": f">a\n{trna_like.sequence}\n", "embeddings": False}).json()
    for bad in ("../../etc/passwd", "input.fa", "embeddings.safetensors"):
        assert client.get(f"{job['url']}/files/0/{bad}").status_code == 404
    assert client.get(f"{job['url']}/files/7/model.bpseq").status_code == 404
    client.delete(job["url"])


# -- limits ----------------------------------------------------------------------------------------
def test_oversized_requests_are_413(client, jobs_root):
    before = folders(jobs_root)
    big = ">big\n" + "ACGU" * 6_000  # 24 kB > max_request_bytes
    declared = client.post("/api/jobs", json={"fasta": big})
    assert declared.status_code == 413 and "max_request_bytes" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while the body arrives
        yield b'{"fasta": ">big\\n'
        for _ in range(30):
            yield b"ACGU" * 250
        yield b'"}'

    streamed = client.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "max_request_bytes" in streamed.json()["detail"]

    many = "".join(f">s{i}\nGGGAAACCC\n" for i in range(LIMITS.max_sequences + 1))
    too_many = client.post("/api/jobs", json={"fasta": many})
    assert too_many.status_code == 413 and "max_sequences" in too_many.json()["detail"]

    long = "".join(f">s{i}\n{'ACGU' * 500}\n" for i in range(4))  # 8,000 nt > max_total_length
    too_long = client.post("/api/predict", json={"fasta": long})
    assert too_long.status_code == 413 and "max_total_length" in too_long.json()["detail"]

    bomb = gzip.compress(b">z\n" + b"A" * 5_000_000)  # 5 kB compressed, 5 MB inside
    exploded = client.post("/api/jobs/upload", files={"file": ("z.fa.gz", bomb, "application/gzip")})
    assert exploded.status_code == 413 and "decompresses" in exploded.json()["detail"]
    assert folders(jobs_root) == before


# -- concurrency -----------------------------------------------------------------------------------
def test_a_long_fold_does_not_block_a_second_request(client, transcripts, trna_like):
    """A 1.3-1.5 kb fold (seconds of ViennaRNA) and a short request sent right after it: the
    short one is answered first, the server stays responsive, and the two jobs' work overlaps."""
    mid, _ = transcripts
    answers: dict = {}

    def send(name, fasta):
        started = time.monotonic()
        response = client.post("/api/predict", json={"fasta": fasta, "embeddings": False})
        answers[name] = (started, time.monotonic(), response)

    long_request = threading.Thread(target=send, args=("long", f">long\n{mid.sequence}\n"))
    long_request.start()
    time.sleep(0.3)
    short_request = threading.Thread(target=send, args=("short", f">short\n{trna_like.sequence}\n"))
    short_request.start()
    health_started = time.monotonic()
    assert client.get("/api/health").json() == {"status": "ok"}
    health_seconds = time.monotonic() - health_started
    long_request.join(120)
    short_request.join(120)

    (long_start, long_end, long_response), (short_start, short_end, short_response) = answers["long"], answers["short"]
    long_job, short_job = long_response.json(), short_response.json()
    assert long_response.status_code == short_response.status_code == 200
    # the pair overlapped: the total wall time is less than the two latencies added
    wall = max(long_end, short_end) - min(long_start, short_start)
    assert wall < (long_end - long_start) + (short_end - short_start)
    # and the server worked on both at once: the short job ran inside the long one's time
    assert long_job["started"] < short_job["finished"] < long_job["finished"]
    assert short_end < long_end
    vienna_seconds = long_job["results"][0]["seconds"]["vienna"]
    assert health_seconds < max(1.0, vienna_seconds / 2), (health_seconds, vienna_seconds)
    for job in (long_job, short_job):
        client.delete(job["url"])


def test_busy_server_answers_429(client, transcripts, jobs_root):
    """max_jobs jobs are still running when one more arrives: no job can finish before every
    job's first stage (an 800-nt structure and heat map) and one ViennaRNA fold have run, since
    stages are taken round-robin over the jobs."""
    mid, _ = transcripts
    before = folders(jobs_root)
    created = [client.post("/api/jobs", json={"fasta": f">j{i}\n{mid.sequence[:800]}\n", "embeddings": False})
               for i in range(LIMITS.max_jobs)]
    try:
        assert [r.status_code for r in created] == [202] * LIMITS.max_jobs
        refused = client.post("/api/jobs", json={"fasta": ">late\nGGGAAACCC\n"})
        assert refused.status_code == 429 and "max_jobs" in refused.json()["detail"]
    finally:
        for r in created:
            client.delete(r.json()["url"])
    assert not any(r.json()["id"] in client.app.state.manager.jobs for r in created)
    # the jobs' folders go as soon as their running stages return
    deadline = time.monotonic() + 60
    while folders(jobs_root) != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert folders(jobs_root) == before


# -- the command line ------------------------------------------------------------------------------
def test_serve_command_sorts_checkpoints_by_task(checkpoints, tmp_path):
    import argparse

    from rnaret.commands.serve import add_arguments, resolve_checkpoints
    from rnaret.io.errors import InputError

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--checkpoint", str(checkpoints["coding"]), "--checkpoint", str(checkpoints["structure"]),
                              "--checkpoint", str(checkpoints["embed"])])
    assert resolve_checkpoints(args) == {"structure": str(checkpoints["structure"]),
                                         "coding": str(checkpoints["coding"]), "embed": str(checkpoints["embed"])}
    assert args.host == "127.0.0.1"
    for argv, words in ((["--checkpoint", str(tmp_path / "missing")], "no such checkpoint"),
                        (["--checkpoint", str(checkpoints["structure"]), "--structure-checkpoint",
                          str(checkpoints["structure"])], "a second structure checkpoint"),
                        (["--structure-checkpoint", str(checkpoints["coding"])], "a fine-tuned coding checkpoint"),
                        (["--checkpoint", str(checkpoints["embed"])], "at least one")):
        with pytest.raises(InputError, match=words):
            resolve_checkpoints(parser.parse_args(argv))
