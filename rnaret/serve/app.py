"""The ``rnaret serve`` web application: a page for people who do not program and the same as a
JSON API (FastAPI; the OpenAPI schema is at ``/api/openapi.json``).

Routes:

- ``GET /``: the page (static HTML + vanilla JS in ``rnaret/serve/static``; nothing external);
- ``GET /api/health``, ``GET /api/info`` (models, limits);
- ``POST /api/jobs`` (JSON: FASTA text or sequences) and ``POST /api/jobs/upload`` (multipart
  FASTA file, plain or gzipped) -> 202 with the job; ``GET /api/jobs/{id}`` -> progress, then
  results; ``DELETE /api/jobs/{id}`` removes its files;
- ``GET /api/jobs/{id}/files/{index}/{name}``: a sequence's drawings, plots and downloads;
- ``POST /api/predict``: the same as ``/api/jobs`` but answers when the work is done.

A request's ``layers``, ``pool`` and ``retention`` are ``rnaret embed``'s ``--layers``, ``--pool``
and ``--retention``, checked by the same functions with the same messages (``_options``).

Errors are JSON ``{"detail": message}``: 413 for a request over a limit, 422 for bad input
(naming the record, the line and what is wrong), 404 for an unknown or expired job, 429 when
busy, 500 without a stack trace (that goes to the server log).
"""
from __future__ import annotations

import difflib
import logging
import re
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from rnaret import __version__
from rnaret.serve import worker
from rnaret.serve.config import Limits, ServeConfig
from rnaret.serve.inputs import BadInput, TooLarge, decode_upload, parse_fasta_text, sequences_to_fasta
from rnaret.serve.jobs import Job, JobManager, NoSuchJob, Options, TooBusy
from rnaret.serve.schemas import (CodingResult, Download, EmbeddingsResult, ErrorResponse, JobRequest,
                                  JobStatus, ModelStructure, Progress, RetentionResult, SequenceResult,
                                  ServerInfo, ViennaStructure)

log = logging.getLogger("rnaret.serve")
STATIC = Path(__file__).resolve().parent / "static"
# what each stage's success makes downloadable (pictures are linked from their own fields)
DOWNLOADS = {
    "structure": ("model.dbn", "model.bpseq", "model.ct", "model_pair_scores.npy"),
    "vienna": ("vienna.dbn", "vienna.bpseq", "vienna.ct"),
    "coding": ("coding_track.tsv",),
    "retention": ("retention_scores.npy",),
}  # embed: the one file its result names (.safetensors or .h5)
# the page and everything it loads come from this server; SVG drawings never run their scripts
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                 b"script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
JSON_EXAMPLE = '{"fasta": ">my_rna\\nGGGAAACCC"}'
ERRORS = {413: {"model": ErrorResponse, "description": "over a limit of this server"},
          422: {"model": ErrorResponse, "description": "bad input (the message says what and where)"},
          429: {"model": ErrorResponse, "description": "too many jobs running"}}


def create_app(structure_checkpoint=None, coding_checkpoint=None, embed_checkpoint=None,
               limits: Limits | None = None, *, workers: int = 2, threads_per_worker: int | None = None,
               tmp_root=None, job_ttl_s: float = 900.0, device: str = "cpu",
               precision: str = "auto") -> FastAPI:
    """The FastAPI application (run it with uvicorn; ``rnaret serve`` does).

    ``structure_checkpoint`` / ``coding_checkpoint``: fine-tuned checkpoint folders or released
    fine-tuned ``.pth`` files (at least one); ``embed_checkpoint``: an encoder for embeddings
    (default: the structure, else the coding checkpoint's encoder); ``limits``: see ``Limits``;
    the rest: see ``ServeConfig``. The worker processes start, and load the models, when the
    application starts (its lifespan); a checkpoint that cannot be loaded stops the start-up
    with a RuntimeError naming it.
    """
    if structure_checkpoint is None and coding_checkpoint is None:
        raise ValueError("give a structure checkpoint, a coding checkpoint or both")
    config = ServeConfig(structure=structure_checkpoint, coding=coding_checkpoint, embed=embed_checkpoint,
                         limits=limits or Limits(), workers=workers, threads_per_worker=threads_per_worker,
                         tmp_root=None if tmp_root is None else str(tmp_root), job_ttl_s=job_ttl_s,
                         device=device, precision=precision)
    manager = JobManager(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await manager.start()
        log.info("rnaret serve: %d workers ready; stages %s", manager.started_workers, sorted(manager.stages))
        try:
            yield
        finally:
            await manager.stop()

    app = FastAPI(title="rnaret serve", version=__version__, lifespan=lifespan,
                  description="RNA secondary structure, coding potential and embeddings with RNAret models. "
                              "Submit sequences to /api/jobs (or /api/predict to wait), poll the job, "
                              "download its files.",
                  docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.manager = manager
    app.state.config = config
    app.add_middleware(BodyLimit, max_bytes=config.limits.max_request_bytes)
    app.add_middleware(SecurityHeaders)  # added last = outermost: the 413s get the headers too
    _error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/health", summary="Liveness check, with what the server holds")
    async def health() -> dict:
        return {"status": "ok", **manager.counts()}

    @app.get("/api/info", summary="Models and limits of this server")
    async def info() -> ServerInfo:
        return ServerInfo(name="rnaret serve", version=__version__, stages=manager.stages,
                          limits=config.limits.as_dict(), workers=config.workers, job_ttl_s=config.job_ttl_s)

    @app.post("/api/jobs", status_code=202, responses=ERRORS, summary="Start a job from FASTA text or sequences")
    async def create_job(body: JobRequest, request: Request) -> JobStatus:
        job = await _start(manager, _request_text(body), "your FASTA" if body.fasta is not None else "your sequences",
                           _options(manager, body.vienna, body.embeddings, body.layers, body.pool, body.retention))
        return job_status(job, request)

    @app.post("/api/jobs/upload", status_code=202, responses=ERRORS,
              summary="Start a job from an uploaded FASTA file (plain or gzipped)")
    async def upload_job(request: Request, file: UploadFile = File(..., description="FASTA file (.fa, .fa.gz)"),
                         vienna: bool = Form(True), embeddings: bool = Form(True), layers: str = Form("last"),
                         pool: str = Form("mean"), retention: str | None = Form(None)) -> JobStatus:
        options = _options(manager, vienna, embeddings, layers, pool, retention or None)
        label = _file_label(file.filename)
        data = await file.read()
        try:
            data = decode_upload(data, config.limits)
        except TooLarge as exc:
            raise HTTPException(413, f"{label}: {exc}") from None
        except BadInput as exc:
            raise HTTPException(422, f"{label}: {exc}") from None
        job = await _start(manager, data, label, options)
        return job_status(job, request)

    @app.post("/api/predict", responses=ERRORS, summary="Analyse sequences and answer when done")
    async def predict(body: JobRequest, request: Request) -> JobStatus:
        job = await _start(manager, _request_text(body), "your FASTA" if body.fasta is not None else "your sequences",
                           _options(manager, body.vienna, body.embeddings, body.layers, body.pool, body.retention))
        await manager.wait(job)
        if job.deleted:
            raise HTTPException(410, "the job was deleted before it finished")
        return job_status(job, request)

    @app.get("/api/jobs/{job_id}", responses={404: {"model": ErrorResponse}}, summary="Progress and results of a job")
    async def get_job(job_id: str, request: Request) -> JobStatus:
        return job_status(_job(manager, job_id), request)

    @app.delete("/api/jobs/{job_id}", status_code=204, responses={404: {"model": ErrorResponse}},
                summary="Delete a job and its files")
    async def delete_job(job_id: str) -> Response:
        try:
            manager.delete(job_id)
        except NoSuchJob:
            raise HTTPException(404, f"no job {job_id!r} (unknown, deleted or expired)") from None
        return Response(status_code=204)

    @app.get("/api/jobs/{job_id}/files/{index}/{name}", responses={404: {"model": ErrorResponse}},
             summary="A file of one sequence of a job (drawings, plots, downloads)", response_class=FileResponse)
    async def job_file(job_id: str, index: int, name: str) -> FileResponse:
        job = _job(manager, job_id)
        if name not in worker.FILES or not 0 <= index < len(job.sequences):
            raise HTTPException(404, f"no file {name!r} for sequence {index} of this job")
        path = job.sequence_folder(index) / name
        if not path.is_file():
            raise HTTPException(404, f"{name} does not exist for sequence {index} (not computed, or failed)")
        media_type, _ = worker.FILES[name]
        inline = media_type.startswith("image/")
        return FileResponse(path, media_type=media_type, filename=f"{_safe(job.sequences[index].id)}.{name}",
                            content_disposition_type="inline" if inline else "attachment",
                            headers={"cache-control": "no-store"})

    return app


# -- jobs -> JSON --------------------------------------------------------------------------------
def _request_text(body: JobRequest) -> str:
    if body.fasta is not None:
        return body.fasta
    return sequences_to_fasta((s.id, s.sequence) for s in body.sequences or [])


def _options(manager: JobManager, vienna: bool, embeddings: bool, layers, pool: str, retention) -> Options:
    """A request's options, its embedding choices checked against the embed model's encoder by
    ``rnaret embed``'s own functions (``embedding_options``, ``parse_retention``: the same
    messages); HTTPException 422 for a bad choice, or for one this server has no embed model for."""
    from rnaret.embed import parse_retention
    from rnaret.embed_hdf5 import embedding_options
    from rnaret.io.errors import InputError

    encoder = manager.stages.get("embed")
    if encoder is None:
        if (layers, pool) != ("last", "mean") or retention is not None:
            raise HTTPException(422, "this server has no embed model: layers, pool and retention need one")
        return Options(vienna=vienna, embeddings=embeddings)
    try:
        layers, pool = embedding_options(layers, pool, encoder["layers"])
        if retention is not None:
            retention = parse_retention(retention, encoder["layers"], encoder["heads"])
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    return Options(vienna=vienna, embeddings=embeddings, layers=layers, pool=pool, retention=retention)


async def _start(manager: JobManager, data, label: str, options: Options) -> Job:
    """Check the input inside a new job folder (in a thread: the loop stays free), then start
    the job; the folder is removed when the input is refused."""
    tmp = manager.new_folder()
    try:
        sequences = await run_in_threadpool(parse_fasta_text, data, tmp.name, manager.limits, label)
    except BaseException as exc:
        tmp.cleanup()
        if isinstance(exc, TooLarge):
            raise HTTPException(413, str(exc)) from None
        if isinstance(exc, BadInput):
            raise HTTPException(422, str(exc)) from None
        raise
    try:
        return manager.create(tmp, sequences, options)
    except TooBusy as exc:
        raise HTTPException(429, str(exc)) from None


def _job(manager: JobManager, job_id: str) -> Job:
    try:
        return manager.get(job_id)
    except NoSuchJob:
        raise HTTPException(404, f"no job {job_id!r} (unknown, deleted or expired)") from None


def job_status(job: Job, request: Request) -> JobStatus:
    """The JSON view of ``job`` (results once done); URLs are relative to the server root."""
    base = f"{request.scope.get('root_path', '')}/api/jobs/{job.id}"
    total = job.steps_total
    progress = Progress(done=job.steps_done, total=total, fraction=job.steps_done / total if total else 1.0)
    results = None
    if job.status == "done":
        results = [sequence_result(job, i, f"{base}/files/{i}/") for i in range(len(job.sequences))]
    return JobStatus(id=job.id, status=job.status, progress=progress, n_sequences=len(job.sequences),
                     created=job.created, started=job.started, finished=job.finished, url=base, results=results)


def sequence_result(job: Job, index: int, files: str) -> SequenceResult:
    """One sequence's results from its stages' result dicts; ``files`` = the URL prefix of its files."""
    seq = job.sequences[index]
    done = job.results[index]
    ok = {stage: r for stage, r in done.items() if r.get("ok")}
    out = SequenceResult(index=index, id=seq.id, length=len(seq), sequence=seq.sequence,
                         notes=list(job.notes[index]) + [f"{stage}: {r.get('error', 'failed')}"
                                                         for stage, r in done.items() if not r.get("ok")],
                         seconds={stage: round(r["finished"] - r["started"], 3) for stage, r in done.items()
                                  if "started" in r})
    if "structure" in ok:
        r = ok["structure"]
        out.structure = ModelStructure(dot_bracket=r["dot_bracket"], pairs=r["pairs"], n_pairs=len(r["pairs"]),
                                       threshold=r["threshold"], max_pair_score=r["max_pair_score"],
                                       drawn_pairs=r["drawn_pairs"], drawing_url=files + "model_drawing.svg",
                                       heatmap_url=files + "model_heatmap.png",
                                       pair_scores_url=files + "model_pair_scores.npy")
    if "vienna" in ok:
        r = ok["vienna"]
        out.vienna = ViennaStructure(dot_bracket=r["dot_bracket"], energy=r["energy"], pairs=r["pairs"],
                                     n_pairs=len(r["pairs"]), drawing_url=files + "vienna_drawing.svg")
    if "coding" in ok:
        r = ok["coding"]
        out.coding = CodingResult(probability=r["probability"], prediction=r["prediction"],
                                  window_start=r["window_start"], window=r["window"], track=r["track"],
                                  plot_url=files + "coding_plot.png")
    if "embed" in ok:
        r = ok["embed"]
        out.embeddings = EmbeddingsResult(url=files + r["file"], dim=r["dim"], k=r["k"], layers=r["layers"],
                                          pool=r["pool"])
    if "retention" in ok:
        r = ok["retention"]
        out.retention = RetentionResult(layer=r["layer"], head=r["head"], size=r["size"],
                                        url=files + "retention_scores.npy")
    out.downloads = [Download(name=name, url=files + name, description=worker.FILES[name][1])
                     for stage in worker.STAGES if stage in ok
                     for name in ((ok[stage]["file"],) if stage == "embed" else DOWNLOADS[stage])]
    return out


def _file_label(filename: str | None) -> str:
    name = Path(filename or "").name
    return f"{name[:80]!r}" if name else "the uploaded file"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:100].lstrip(".") or "sequence"


# -- errors ---------------------------------------------------------------------------------------
def _known_fields(loc: tuple) -> list[str]:
    """The fields a JSON request may hold where ``loc`` (a pydantic error location) stands."""
    from rnaret.serve.schemas import JobRequest, SequenceIn

    model = SequenceIn if "sequences" in loc else JobRequest
    return sorted(model.model_fields)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if request.url.path in ("/api/jobs", "/api/predict") and "json" not in content_type:
            detail = (f"send the body as JSON with the header 'Content-Type: application/json' "
                      f"(this request says {content_type or 'nothing'!r})")
            return JSONResponse({"detail": detail}, status_code=422)
        problems = []
        for error in exc.errors():
            loc, kind = tuple(error.get("loc", ())), error.get("type")
            where = ".".join(str(p) for p in loc if p != "body")
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            if kind == "json_invalid":
                where, message = "", "the request body is not valid JSON"
            elif loc == ("body",) and kind == "missing":
                message = f"the request has no body; send JSON such as {JSON_EXAMPLE}"
            elif loc == ("body",) and kind in ("model_attributes_type", "dict_type"):
                message = f"the JSON body must be an object such as {JSON_EXAMPLE}"
            elif loc == ("body", "file"):  # the upload's multipart field
                message = (("missing" if kind == "missing" else "not a file") +
                           ": send the FASTA file as the multipart form field 'file' (curl -F file=@my.fa)")
            elif kind == "extra_forbidden":
                known = _known_fields(loc)
                guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
                message = "unknown field" + (f"; did you mean {guess[0]!r}?" if guess else
                                             f" (known: {', '.join(known)})" if known else "")
            problems.append(f"{where}: {message}" if where else message)
        body = getattr(exc, "body", None)
        if (request.url.path in ("/api/jobs", "/api/predict") and isinstance(body, dict)
                and "fasta" not in body and "sequences" not in body and problems):
            # the model's own check of this runs only once every field is valid: say it now too,
            # so that one answer lists everything to fix
            problems.append("give exactly one of 'fasta' (FASTA text) or 'sequences' (a list)")
        detail = "invalid request: " + "; ".join(problems)
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error (details are in the server log)"}, status_code=500)


class RequestTooLarge(HTTPException):
    """Raised while a body is being read once it passes ``max_request_bytes`` (FastAPI passes
    HTTPExceptions raised while parsing a body through, so the client gets this 413)."""


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length before anything
    is handled, or while reading a body sent without one (chunked).

    Before answering, the rest of the body is read and dropped, up to ``DRAIN_FACTOR`` times
    ``max_bytes`` (a "lingering close"): a server that closes a connection with unread data
    makes the kernel reset it, and the client may then lose the 413 and see only "connection
    reset". A body larger still gets its 413 at once (and the reset, maybe).
    """

    DRAIN_FACTOR = 16

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return (f"the request is larger than {self.max_bytes:,} bytes (this server's max_request_bytes); "
                f"send fewer or shorter sequences per request")

    async def _drain(self, receive, more_body: bool, received: int) -> None:
        while more_body and received <= self.DRAIN_FACTOR * self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            received += len(message.get("body", b""))
            more_body = message.get("more_body", False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= self.DRAIN_FACTOR * self.max_bytes:
                await self._drain(receive, True, 0)
            response = JSONResponse({"detail": self._message()}, status_code=413, headers={"connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    await self._drain(receive, message.get("more_body", False), received)
                    raise RequestTooLarge(413, self._message(), headers={"connection": "close"})
            return message

        await self.app(scope, limited_receive, send)


class SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)
