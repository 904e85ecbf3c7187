"""`rnaret serve` JSON API through a real uvicorn on 127.0.0.1: the real app, real worker
processes, small real checkpoints, bundled data.

One server (two worker processes) serves the whole module on a socket bound before it starts
(`serve_server.ThreadServer`); its jobs' folders go to a temporary folder the tests watch. Waits
are on observable states (a job's status, the server's counts in /api/health), never on the
clock; request loops are bounded and stop by themselves.
"""
from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from rnaret.io.fasta import read_fasta  # noqa: E402
from rnaret.io.structure import parse_dot_bracket, read_bpseq, read_ct, read_dbn, read_structures  # noqa: E402
from rnaret.serve import Limits, create_app  # noqa: E402
from serve_checkpoints import tiny_checkpoints  # noqa: E402
from serve_server import ThreadServer  # noqa: E402

LIMITS = Limits(max_request_bytes=20_000, max_sequences=4, max_total_length=6_000, max_structure_length=1_600,
                max_jobs=5)
# hang guards of the bounded waits below (a job's status is polled; these are never reached
# unless the server is broken)
POLLS = 6000
POLL_S = 0.1


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def jobs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def server(checkpoints, jobs_root):
    # fp32: the answers are compared with rnaret fold / classify / embed run here in float32
    app = create_app(checkpoints["structure"], checkpoints["coding"], checkpoints["embed"], LIMITS,
                     workers=2, threads_per_worker=1, tmp_root=jobs_root, job_ttl_s=60, precision="fp32")
    with ThreadServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with server.client() as http:
        yield http


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


def poll(what, until, message):
    """Call ``what()`` until ``until(value)`` holds (at most POLLS times) -> the values seen."""
    import time

    seen = [what()]
    for _ in range(POLLS):
        if until(seen[-1]):
            return seen
        time.sleep(POLL_S)
        seen.append(what())
    raise AssertionError(f"{message}: {seen[-1]}")


def wait_done(client, job):
    """Poll a job until it is done -> (job, progress fractions seen)."""
    seen = poll(lambda: client.get(job["url"]).json(), lambda j: j["status"] == "done", "job not done")
    return seen[-1], [j["progress"]["fraction"] for j in seen]


def wait_idle(client):
    """Until the server holds no job and runs no stage (so every job folder is gone) -> counts."""
    return poll(lambda: client.get("/api/health").json(),
                lambda h: h["jobs"] == 0 and h["stages_running"] == 0, "server not idle")[-1]


# -- what the server knows ---------------------------------------------------------------------
def test_info_names_models_and_limits(client, checkpoints):
    info = client.get("/api/info").json()
    assert set(info["stages"]) == {"structure", "vienna", "coding", "embed"}
    assert info["stages"]["structure"]["k"] == 1 and info["stages"]["coding"]["k"] == 5
    assert info["limits"] == LIMITS.as_dict()
    # checkpoints are named, not located: the page never shows the server's folders
    assert {s: info["stages"][s]["checkpoint"] for s in ("structure", "coding", "embed")} == {
        "structure": "untrained-demo-structure", "coding": "untrained-demo-coding", "embed": "untrained-demo-encoder"}
    assert str(checkpoints["structure"].parent) not in client.get("/api/info").text
    assert client.get("/api/health").json() == {"status": "ok", "jobs": 0, "active": 0, "stages_running": 0}


def test_display_names_of_pipeline_and_other_checkpoints():
    from rnaret.serve.worker import _display_name

    assert _display_name("/srv/run/results/structure/bprna/rnaret-k1/checkpoint") == "rnaret-k1 fine-tuned on bprna"
    assert _display_name("/tmp/x/results/coding/mouse/onehot/checkpoint (the coding model's encoder)") == \
        "onehot fine-tuned on mouse (the coding model's encoder)"
    assert _display_name("/home/me/models/RNAStrAlign_1mer.pth") == "RNAStrAlign_1mer.pth"


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
    probabilities = np.load(io.BytesIO(client.get(structure["pair_scores_url"]).content))
    assert probabilities.shape == (len(seq), len(seq))
    np.testing.assert_allclose(probabilities, direct.pair_scores, atol=1e-5)

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


def test_finished_jobs_expire(server, client, jobs_root):
    manager = server.app.state.manager
    job, _ = wait_done(client, client.post("/api/jobs", json={"fasta": "GGGGAAAUCCCC", "vienna": False}).json())
    assert job["results"][0]["id"] == "sequence_1"  # a bare sequence is one record
    held = manager.jobs[job["id"]]

    def age_and_expire():  # on the server's event loop, where the manager lives
        held.last_access -= manager.config.job_ttl_s + 1
        return manager.expire()

    assert server.call(age_and_expire) == 1
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


def test_embeddings_of_every_layer_and_a_retention_map(client, checkpoints, trna_like, tmp_path):
    """layers/pool/retention give what the Python API (and so `rnaret embed`) gives for the
    same encoder: the HDF5 layout of `rnaret embed --out X.h5` and the (L, L) .npy of --retention."""
    import h5py

    from rnaret.checkpoint import load_encoder
    from rnaret.embed import embed_layers, retention_map

    seq = trna_like.sequence.upper().replace("T", "U")
    encoder = load_encoder(checkpoints["embed"])
    job = client.post("/api/predict", json={"fasta": f">{trna_like.id}\n{seq}\n", "vienna": False,
                                            "layers": "all", "pool": "none", "retention": "1,2"}).json()
    (result,) = job["results"]
    assert result["notes"] == [] and job["progress"]["total"] == 4  # structure, coding, embed, retention
    embeddings = result["embeddings"]
    assert embeddings["layers"] == [0, 1] and embeddings["pool"] == "none" and embeddings["url"].endswith(".h5")
    (tmp_path / "e.h5").write_bytes(client.get(embeddings["url"]).content)
    expected = embed_layers(encoder, [seq], "all", "none")
    with h5py.File(tmp_path / "e.h5") as f:
        assert [i.decode() for i in f["ids"][:]] == [trna_like.id] and list(f["offsets"][:]) == [0, len(seq)]
        assert f.attrs["complete"] and f.attrs["fasta"] == "sequence.fa"  # no server folder named
        for layer in (0, 1):
            assert f[f"layer_{layer}"].shape == (len(seq), encoder.config.retnet_embed_dim)
            np.testing.assert_allclose(f[f"layer_{layer}"][:], expected[layer][0], atol=1e-5)
    retention = result["retention"]
    assert (retention["layer"], retention["head"], retention["size"]) == (1, 2, len(seq))
    scores = np.load(io.BytesIO(client.get(retention["url"]).content))
    assert scores.dtype == np.float32 and scores.shape == (len(seq), len(seq))
    np.testing.assert_allclose(scores, retention_map(encoder, seq, 1, 2), atol=1e-6)
    assert np.abs(scores).sum() > 0  # not an empty answer
    names = [d["name"] for d in result["downloads"]]
    assert "embeddings.h5" in names and "retention_scores.npy" in names and "embeddings.safetensors" not in names
    client.delete(job["url"])

    # the last layer pooled by max stays a .safetensors file, as `rnaret embed` writes it
    job = client.post("/api/predict", json={"fasta": f">a\n{seq}\n", "vienna": False, "pool": "max"}).json()
    embeddings = job["results"][0]["embeddings"]
    assert embeddings["url"].endswith(".safetensors") and embeddings["layers"] == [1]
    client.delete(job["url"])


def test_upload_takes_the_embedding_choices(client, checkpoints, trna_like, tmp_path):
    import h5py

    from rnaret.checkpoint import load_encoder
    from rnaret.embed import embed_layers

    seq = trna_like.sequence.upper().replace("T", "U")
    created = client.post("/api/jobs/upload", files={"file": ("x.fa", f">u\n{seq}\n".encode(), "text/plain")},
                          data={"vienna": "false", "layers": "0", "pool": "cls"})
    assert created.status_code == 202, created.text
    job, _ = wait_done(client, created.json())
    (result,) = job["results"]
    assert result["retention"] is None and result["embeddings"]["layers"] == [0]
    (tmp_path / "u.h5").write_bytes(client.get(result["embeddings"]["url"]).content)
    with h5py.File(tmp_path / "u.h5") as f:
        np.testing.assert_allclose(f["layer_0"][:], embed_layers(load_encoder(checkpoints["embed"]), [seq], [0],
                                                                 "cls")[0], atol=1e-5)
    client.delete(job["url"])


@pytest.mark.parametrize("fields", [
    {"layers": "first"}, {"layers": "0,5"}, {"layers": []}, {"pool": "avg"}, {"retention": "1"},
    {"retention": "2,1"}, {"retention": "1,3"},
])
def test_bad_embedding_choices_get_the_command_lines_messages(client, checkpoints, jobs_root, fields):
    from rnaret.checkpoint import load_encoder
    from rnaret.embed import parse_retention
    from rnaret.embed_hdf5 import embedding_options
    from rnaret.io.errors import InputError

    config = load_encoder(checkpoints["embed"]).config
    with pytest.raises(InputError) as cli:  # what `rnaret embed` says for the same choice
        embedding_options(fields.get("layers", "last"), fields.get("pool", "mean"), config.retnet_layers)
        parse_retention(fields["retention"], config.retnet_layers, config.retnet_retention_heads)
    before = folders(jobs_root)
    response = client.post("/api/jobs", json={"fasta": ">a\nGGGAAACCC", **fields})
    assert response.status_code == 422 and response.json()["detail"] == str(cli.value)
    form = {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in fields.items()}
    if form.get("layers") == "":
        return  # an empty form field is the default, not a choice
    upload = client.post("/api/jobs/upload", files={"file": ("x.fa", b">a\nGGGAAACCC\n", "text/plain")}, data=form)
    assert upload.status_code == 422 and upload.json()["detail"] == str(cli.value)
    assert folders(jobs_root) == before


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


@pytest.mark.parametrize("body, detail", [
    (b'{"fasta": ">a\\nGGG"', "invalid request: the request body is not valid JSON"),
    (b"\xff\xfe{}", "invalid request: the request body is not valid JSON"),
    (b"", 'invalid request: the request has no body; send JSON such as {"fasta": ">my_rna\\nGGGAAACCC"}'),
    (b"[1, 2]", 'invalid request: the JSON body must be an object such as {"fasta": ">my_rna\\nGGGAAACCC"}'),
    (b'"GGGAAACCC"', 'invalid request: the JSON body must be an object such as {"fasta": ">my_rna\\nGGGAAACCC"}'),
    (b"null", 'invalid request: the JSON body must be an object such as {"fasta": ">my_rna\\nGGGAAACCC"}'),
    (b'{"fasta": 5}', "invalid request: fasta: Input should be a valid string"),
    (b'{"fasta": [">a", "GGG"]}', "invalid request: fasta: Input should be a valid string"),
    (b'{"sequences": "GGG"}', "invalid request: sequences: Input should be a valid list"),
    (b'{"sequences": [{"id": 1, "sequence": "GGG"}]}', "invalid request: sequences.0.id: Input should be a valid string"),
    (b'{"sequences": [{"id": "a"}]}', "invalid request: sequences.0.sequence: Field required"),
    (b'{"fasta": ">a\\nGGG", "vienna": "perhaps"}',
     "invalid request: vienna: Input should be a valid boolean, unable to interpret input"),
    (b'{"fasta": ">a\\nGGG", "embeddings": 2}',
     "invalid request: embeddings: Input should be a valid boolean, unable to interpret input"),
    (b'{"fasta": ">a\\nGGG", "colour": "red"}',
     "invalid request: colour: unknown field (known: embeddings, fasta, layers, pool, retention, sequences, "
     "vienna)"),
    # every bad field at once, the missing input too
    (b'{"fastaa": ">a\\nGGG", "vienn": true, "embeddings": 2}',
     "invalid request: embeddings: Input should be a valid boolean, unable to interpret input; fastaa: unknown "
     "field; did you mean 'fasta'?; vienn: unknown field; did you mean 'vienna'?; give exactly one of 'fasta' "
     "(FASTA text) or 'sequences' (a list)"),
])
def test_malformed_json_and_wrong_types_are_422(client, jobs_root, body, detail):
    before = folders(jobs_root)
    for route in ("/api/jobs", "/api/predict"):
        response = client.post(route, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422 and response.json()["detail"] == detail
    assert folders(jobs_root) == before


def test_a_json_body_without_the_json_content_type_says_so(client):
    form = client.post("/api/jobs", content=b'{"fasta": ">a\\nGGG"}',
                       headers={"content-type": "application/x-www-form-urlencoded"})  # curl -d without -H
    assert form.status_code == 422 and "Content-Type: application/json" in form.json()["detail"]


FILE_FIELD = "file: {}: send the FASTA file as the multipart form field 'file' (curl -F file=@my.fa)"


@pytest.mark.parametrize("request_kwargs, status, detail", [
    ({"files": {"fasta": ("a.fa", b">a\nGGGAAACCC\n")}}, 422, "invalid request: " + FILE_FIELD.format("missing")),
    ({"data": {"vienna": "false"}, "files": {"other": ("a.txt", b"x")}}, 422,
     "invalid request: " + FILE_FIELD.format("missing")),
    ({"data": {"file": ">a\nGGGAAACCC"}, "files": {"other": ("a.txt", b"x")}}, 422,
     "invalid request: " + FILE_FIELD.format("not a file")),
    ({"json": {"fasta": ">a\nGGG"}}, 422, "invalid request: " + FILE_FIELD.format("missing")),
    ({"files": {"file": ("a.fa", b">a\nGGG\n")}, "data": {"vienna": "perhaps"}}, 422,
     "invalid request: vienna: Input should be a valid boolean, unable to interpret input"),
    ({"content": b"", "headers": {"content-type": "multipart/form-data"}}, 400, "Missing boundary in multipart."),
])
def test_multipart_without_a_file_is_refused(client, jobs_root, request_kwargs, status, detail):
    before = folders(jobs_root)
    response = client.post("/api/jobs/upload", **request_kwargs)
    assert response.status_code == status and response.json()["detail"] == detail
    assert folders(jobs_root) == before


def test_unknown_job_and_file_are_404(client, trna_like):
    unknown = client.get("/api/jobs/0123456789abcdef")
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no job '0123456789abcdef' (unknown, deleted or expired)"
    assert client.delete("/api/jobs/0123456789abcdef").status_code == 404
    job = client.post("/api/predict", json={"fasta": f">a\n{trna_like.sequence}\n", "embeddings": False}).json()
    for bad in ("../../etc/passwd", "input.fa", "embeddings.safetensors"):
        assert client.get(f"{job['url']}/files/0/{bad}").status_code == 404
    assert client.get(f"{job['url']}/files/7/model.bpseq").status_code == 404
    client.delete(job["url"])


# -- limits ----------------------------------------------------------------------------------------
TOO_LARGE = (f"the request is larger than {LIMITS.max_request_bytes:,} bytes (this server's max_request_bytes); "
             f"send fewer or shorter sequences per request")


def test_a_declared_oversized_body_is_413(client, jobs_root):
    before = folders(jobs_root)
    big = ">big\n" + "ACGU" * 6_000  # 24 kB > max_request_bytes, with its Content-Length
    for route in ("/api/jobs", "/api/predict"):
        declared = client.post(route, json={"fasta": big})
        assert declared.status_code == 413 and declared.json()["detail"] == TOO_LARGE
    assert folders(jobs_root) == before


def test_a_chunked_body_without_content_length_is_413_while_it_arrives(client, jobs_root):
    before = folders(jobs_root)

    def json_chunks():  # Transfer-Encoding: chunked, no Content-Length
        yield b'{"fasta": ">big\\n'
        for _ in range(30):
            yield b"ACGU" * 250
        yield b'"}'

    def multipart_chunks():
        yield b'--bound\r\nContent-Disposition: form-data; name="file"; filename="big.fa"\r\n\r\n>big\n'
        for _ in range(30):
            yield b"ACGU" * 250
        yield b"\r\n--bound--\r\n"

    for route, chunks, content_type in (("/api/jobs", json_chunks, "application/json"),
                                        ("/api/jobs/upload", multipart_chunks, "multipart/form-data; boundary=bound")):
        streamed = client.post(route, content=chunks(), headers={"content-type": content_type})
        assert "content-length" not in streamed.request.headers
        assert streamed.request.headers["transfer-encoding"] == "chunked"
        assert streamed.status_code == 413 and streamed.json()["detail"] == TOO_LARGE
    assert folders(jobs_root) == before


def test_too_many_or_too_long_sequences_are_413(client, jobs_root):
    before = folders(jobs_root)
    many = "".join(f">s{i}\nGGGAAACCC\n" for i in range(LIMITS.max_sequences + 1))
    too_many = client.post("/api/jobs", json={"fasta": many})
    assert too_many.status_code == 413 and "max_sequences" in too_many.json()["detail"]

    long = "".join(f">s{i}\n{'ACGU' * 500}\n" for i in range(4))  # 8,000 nt > max_total_length
    too_long = client.post("/api/predict", json={"fasta": long})
    assert too_long.status_code == 413 and "max_total_length" in too_long.json()["detail"]
    assert folders(jobs_root) == before


def test_a_gzip_bomb_is_413(client, jobs_root):
    before = folders(jobs_root)
    bomb = gzip.compress(b">z\n" + b"A" * 5_000_000)  # 5 kB compressed, 5 MB inside
    assert len(bomb) < LIMITS.max_request_bytes
    exploded = client.post("/api/jobs/upload", files={"file": ("z.fa.gz", bomb, "application/gzip")})
    assert exploded.status_code == 413
    assert exploded.json()["detail"] == (f"'z.fa.gz': the gzip upload decompresses to more than "
                                         f"{LIMITS.max_request_bytes:,} bytes (this server's max_request_bytes)")
    assert folders(jobs_root) == before


# -- concurrency -----------------------------------------------------------------------------------
def test_a_short_request_is_answered_while_a_long_job_runs(client, transcripts, trna_like):
    """Round-robin scheduling: a long job of four 1.3-1.5 kb sequences (four ViennaRNA folds of
    seconds each, at least two folds' time on two workers) is running when a 120-nt request
    arrives; the short request is answered while the long job is still running (its stages take
    turns with the long job's, instead of waiting behind all of them)."""
    mid, _ = transcripts
    long_fasta = "".join(f">long{i}\n{mid.sequence}\n" for i in range(LIMITS.max_sequences))
    created = client.post("/api/jobs", json={"fasta": long_fasta, "embeddings": False})
    assert created.status_code == 202
    long_job = created.json()
    try:
        assert client.get(long_job["url"]).json()["status"] == "running"
        short = client.post("/api/predict", json={"fasta": f">short\n{trna_like.sequence}\n", "embeddings": False})
        assert short.status_code == 200 and short.json()["status"] == "done"
        # the observable state when the short answer came back: the long job is not finished
        now = client.get(long_job["url"]).json()
        assert now["status"] == "running" and now["progress"]["done"] < now["progress"]["total"]
        client.delete(short.json()["url"])
    finally:
        client.delete(long_job["url"])
    wait_idle(client)


def test_busy_server_answers_429(client, transcripts, jobs_root):
    """Jobs are sent one after the other until the server refuses one with 429 (a bounded loop:
    at most 4 x max_jobs requests). Each job is an 800-nt structure, fold and coding track, so
    they pile up faster than they finish; the refusal names the limit and the count."""
    mid, _ = transcripts
    before = folders(jobs_root)
    accepted, refused = [], None
    try:
        for attempt in range(4 * LIMITS.max_jobs):
            answer = client.post("/api/jobs", json={"fasta": f">j{attempt}\n{mid.sequence[:800]}\n",
                                                    "embeddings": False})
            if answer.status_code == 429:
                refused = answer
                break
            assert answer.status_code == 202, answer.text
            accepted.append(answer.json()["url"])
        assert refused is not None, f"no 429 after {len(accepted)} jobs"
        assert len(accepted) >= LIMITS.max_jobs
        assert refused.json()["detail"] == (f"the server is busy: {LIMITS.max_jobs} jobs are queued or running "
                                            f"(its max_jobs); try again when one has finished")
    finally:
        for url in accepted:
            client.delete(url)
    assert all(client.get(url).status_code == 404 for url in accepted)
    # the jobs' folders go as soon as their running stages return
    assert wait_idle(client)["active"] == 0
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


def test_a_gpu_that_is_not_there_stops_the_start_up_with_the_reason(checkpoints):
    import asyncio

    import torch

    from rnaret.serve.config import ServeConfig
    from rnaret.serve.jobs import JobManager

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    manager = JobManager(ServeConfig(structure=str(checkpoints["structure"]), workers=1, device="cuda"))

    async def start():
        try:
            await manager.start()
        finally:
            await manager.stop()

    with pytest.raises(RuntimeError, match="could not load the models: --device cuda was asked for, but torch "
                                           "finds no usable CUDA device"):
        asyncio.run(start())
    with pytest.raises(ValueError, match="device must be"):
        ServeConfig(structure="x", device="gpu")
    with pytest.raises(ValueError, match="precision must be"):
        ServeConfig(structure="x", precision="fp16")
