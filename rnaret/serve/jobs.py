"""Jobs of ``rnaret serve``: one request's sequences, run stage by stage in worker processes.

A job is created from checked sequences; each sequence gets the stages the server can run for
it (``structure`` and ``vienna`` up to ``max_structure_length`` nt, ``coding``, ``embed``, and
``retention`` when asked for, up to ``max_structure_length`` nt). The
``JobManager`` keeps at most ``workers`` stages in flight and picks the next one round-robin
over the jobs that have work left, so a short job submitted while a long one runs starts as soon
as a worker is free instead of after all of the long job's stages.

All of this runs on the server's event loop thread (the callbacks of the worker futures are
brought back to it), so no locks are needed; the loop itself only ever waits.

A job's files live in its own ``tempfile.TemporaryDirectory``, removed when the job is deleted
(``DELETE /api/jobs/{id}``), when it expires (``job_ttl_s`` after it was last read, once
finished), when too many finished jobs are held (least recently read first), and at shutdown.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import tempfile
import time
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from rnaret.serve import worker
from rnaret.serve.config import ServeConfig
from rnaret.serve.inputs import SequenceInput

log = logging.getLogger("rnaret.serve")


class TooBusy(RuntimeError):
    """The server already runs ``max_jobs`` jobs (answered with 429)."""


class NoSuchJob(KeyError):
    """No job with that id (never existed, deleted or expired; answered with 404)."""


@dataclass(frozen=True)
class Options:
    """What a request asks for beyond the models' predictions. ``layers`` and ``pool``: the
    embeddings' (checked: ``rnaret.embed_hdf5.embedding_options``; None: the last layer);
    ``retention``: (layer, head), 1-based, of a retention map per sequence, or None."""

    vienna: bool = True
    embeddings: bool = True
    layers: list[int] | None = None
    pool: str = "mean"
    retention: tuple[int, int] | None = None

    def of_stage(self, stage: str) -> dict:
        """The keyword arguments of ``stage`` in the worker (``rnaret.serve.worker.run_stage``)."""
        if stage == "embed":
            return {"layers": self.layers, "pool": self.pool}
        if stage == "retention":
            return {"layer": self.retention[0], "head": self.retention[1]}
        return {}


@dataclass
class StageTask:
    index: int      # the sequence's position in the job
    stage: str


@dataclass
class Job:
    """One request's work and results (``results[i][stage]``: the stage's result dict)."""

    id: str
    sequences: list[SequenceInput]
    options: Options
    stages: list[list[str]]
    notes: list[list[str]]
    tmp: tempfile.TemporaryDirectory
    pending: deque = field(default_factory=deque)
    results: list[dict] = field(default_factory=list)
    in_flight: int = 0
    steps_done: int = 0
    status: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    last_access: float = field(default_factory=time.monotonic)
    deleted: bool = False
    done_event: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def folder(self) -> Path:
        """The job's temporary folder."""
        return Path(self.tmp.name)

    @property
    def steps_total(self) -> int:
        """Stages in the job, all sequences together (the progress bar's 100 %)."""
        return sum(len(s) for s in self.stages)

    def sequence_folder(self, index: int) -> Path:
        """Where the files of sequence ``index`` go (index-named: ids may hold any character)."""
        return self.folder / f"seq-{index}"

    def cleanup(self) -> None:
        """Remove the job's folder and everything in it (idempotent)."""
        self.tmp.cleanup()


class JobManager:
    """Creates jobs, runs their stages in a process pool, expires and deletes them."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.limits = config.limits
        self.jobs: dict[str, Job] = {}
        self.stages: dict[str, dict] = {}          # stage -> what the workers loaded (describe())
        self._executor: ProcessPoolExecutor | None = None
        self._rotation: deque[str] = deque()        # ids of jobs with pending stages, next first
        self._in_flight = 0
        self._janitor: asyncio.Task | None = None
        self.started_workers = 0

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the worker processes, wait until each has loaded its models; RuntimeError
        naming the problem when a checkpoint cannot be loaded."""
        self._executor = self._new_executor()
        loop = asyncio.get_running_loop()
        reports = await asyncio.gather(*(loop.run_in_executor(self._executor, worker.describe)
                                         for _ in range(self.config.workers)))
        errors = sorted({r["error"] for r in reports if r.get("error")})
        if errors:
            raise RuntimeError("the worker processes could not load the models: " + "; ".join(errors))
        self.stages = reports[0]["stages"]
        self.started_workers = len({r["pid"] for r in reports})
        self._janitor = asyncio.create_task(self._expire_loop())

    async def stop(self) -> None:
        """Stop the workers (running stages are abandoned) and remove every job's folder."""
        if self._janitor is not None:
            self._janitor.cancel()
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, _terminate, self._executor)
            self._executor = None
        for job in list(self.jobs.values()):
            self._drop(job, force=True)

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn: workers start from a clean interpreter (no inherited threads or OpenMP state)
        return ProcessPoolExecutor(max_workers=self.config.workers,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=worker.init_worker, initargs=(self.config.worker_spec(),))

    # -- jobs ---------------------------------------------------------------------------------
    def new_folder(self) -> tempfile.TemporaryDirectory:
        """A job's temporary folder, made before the job so that the input is checked inside it."""
        return tempfile.TemporaryDirectory(prefix="rnaret-serve-", dir=self.config.tmp_root,
                                           ignore_cleanup_errors=True)

    def create(self, tmp: tempfile.TemporaryDirectory, sequences: list[SequenceInput],
               options: Options) -> Job:
        """A new job for checked ``sequences`` in ``tmp`` (from ``new_folder``; removed here when
        refused); its stages start as workers become free. TooBusy when ``max_jobs`` jobs are
        queued or running."""
        self.expire()
        active = sum(job.status != "done" for job in self.jobs.values())
        if active >= self.limits.max_jobs:
            tmp.cleanup()
            raise TooBusy(f"the server is busy: {active} jobs are queued or running (its max_jobs); "
                          f"try again when one has finished")
        stages, notes = [], []
        for seq in sequences:
            todo, why = self._stages_of(seq, options)
            stages.append(todo)
            notes.append(why)
        job = Job(uuid.uuid4().hex, sequences, options, stages, notes, tmp,
                  results=[{} for _ in sequences])
        for index, todo in enumerate(stages):
            job.pending.extend(StageTask(index, stage) for stage in todo)
        self.jobs[job.id] = job
        log.info("job %s: %d sequences, %d nt, %d stages", job.id, len(sequences),
                 sum(len(s) for s in sequences), job.steps_total)
        if job.pending:
            self._rotation.append(job.id)
            self._pump()
        else:
            self._finish(job)
        return job

    def _stages_of(self, seq: SequenceInput, options: Options) -> tuple[list[str], list[str]]:
        todo, notes = [], []
        if len(seq) <= self.limits.max_structure_length:
            if "structure" in self.stages:
                todo.append("structure")
            if options.vienna:
                todo.append("vienna")
        else:
            notes.append(f"no structure: {len(seq):,} nt is longer than this server's max_structure_length "
                         f"({self.limits.max_structure_length:,} nt)")
        if "coding" in self.stages:
            todo.append("coding")
        if options.embeddings and "embed" in self.stages:
            todo.append("embed")
        if options.retention is not None and "embed" in self.stages:
            if len(seq) <= self.limits.max_structure_length:  # an (L, L) matrix, as the pair scores
                todo.append("retention")
            else:
                notes.append(f"no retention map: {len(seq):,} nt is longer than this server's "
                             f"max_structure_length ({self.limits.max_structure_length:,} nt)")
        return todo, notes

    def counts(self) -> dict[str, int]:
        """``jobs`` held (queued, running or finished and not yet removed), ``active`` (queued
        or running), ``stages_running`` (in the workers, those of deleted jobs included: their
        folders go when these return)."""
        return {"jobs": len(self.jobs), "active": sum(j.status != "done" for j in self.jobs.values()),
                "stages_running": self._in_flight}

    def get(self, job_id: str) -> Job:
        """The job ``job_id`` (its expiry clock restarts); NoSuchJob otherwise."""
        job = self.jobs.get(job_id)
        if job is None:
            raise NoSuchJob(job_id)
        job.last_access = time.monotonic()
        return job

    def delete(self, job_id: str) -> None:
        """Forget a job: pending stages dropped, its folder removed (after running stages end)."""
        self._drop(self.get(job_id))

    async def wait(self, job: Job) -> Job:
        """Wait until ``job`` is finished (or deleted)."""
        await job.done_event.wait()
        return job

    def expire(self) -> int:
        """Remove finished jobs not read for ``job_ttl_s`` and, beyond ``max_jobs`` finished
        jobs, the least recently read ones. Returns how many were removed."""
        now = time.monotonic()
        finished = sorted((j for j in self.jobs.values() if j.status == "done"), key=lambda j: j.last_access)
        old = [j for j in finished if now - j.last_access > self.config.job_ttl_s]
        surplus = [j for j in finished if j not in old][: max(0, len(finished) - len(old) - self.limits.max_jobs)]
        for job in old + surplus:
            self._drop(job)
        return len(old) + len(surplus)

    async def _expire_loop(self) -> None:
        period = max(0.5, min(30.0, self.config.job_ttl_s / 3))
        while True:
            await asyncio.sleep(period)
            self.expire()

    def _drop(self, job: Job, force: bool = False) -> None:
        self.jobs.pop(job.id, None)
        job.deleted = True
        job.pending.clear()
        job.done_event.set()
        if force or job.in_flight == 0:  # else _on_done removes it when its last stage returns
            job.cleanup()
        log.info("job %s removed", job.id)

    # -- scheduling ---------------------------------------------------------------------------
    def _pump(self) -> None:
        """Start stages, round-robin over jobs, while workers are free."""
        while self._in_flight < self.config.workers and self._rotation:
            job = self.jobs.get(self._rotation.popleft())
            if job is None or not job.pending:
                continue
            task = job.pending.popleft()
            if job.pending:
                self._rotation.append(job.id)
            self._submit(job, task)

    def _submit(self, job: Job, task: StageTask) -> None:
        seq = job.sequences[task.index]
        args = (worker.run_stage, task.stage, str(job.sequence_folder(task.index)), seq.id, seq.sequence,
                job.options.of_stage(task.stage))
        executor = self._executor
        try:
            future = executor.submit(*args)
        except BrokenProcessPool:
            executor = self._replace_executor(executor)
            future = executor.submit(*args)
        if job.status == "queued":
            job.status, job.started = "running", time.time()
        job.in_flight += 1
        self._in_flight += 1
        asyncio.wrap_future(future).add_done_callback(
            lambda done: self._on_done(job, task, executor, done))

    def _replace_executor(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        if self._executor is broken:
            log.warning("a worker process died; starting new workers")
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()
        return self._executor

    def _on_done(self, job: Job, task: StageTask, executor, done: asyncio.Future) -> None:
        self._in_flight -= 1
        job.in_flight -= 1
        try:
            result = done.result()
        except BrokenProcessPool:
            seq_len = len(job.sequences[task.index])
            result = {"ok": False, "stage": task.stage,
                      "error": f"the worker process stopped during the {task.stage} of a {seq_len}-nt sequence "
                               f"(out of memory?)"}
            if self._executor is not None:
                self._replace_executor(executor)
        except BaseException as exc:  # cancelled at shutdown, or a pickling problem: logged, not shown
            log.error("job %s: stage %s failed: %r", job.id, task.stage, exc)
            result = {"ok": False, "stage": task.stage, "error": f"internal error in the {task.stage} stage"}
        if job.deleted:
            if job.in_flight == 0:
                job.cleanup()
        else:
            job.results[task.index][task.stage] = result
            job.steps_done += 1
            if not result.get("ok"):
                log.info("job %s: sequence %d %s: %s", job.id, task.index, task.stage, result.get("error"))
            if job.steps_done == job.steps_total:
                self._finish(job)
        if self._executor is not None:
            self._pump()

    def _finish(self, job: Job) -> None:
        job.status = "done"
        job.finished = time.time()
        job.last_access = time.monotonic()
        job.done_event.set()
        log.info("job %s done in %.2f s", job.id, job.finished - (job.started or job.created))


def _terminate(executor: ProcessPoolExecutor) -> None:
    """Shut ``executor`` down without waiting for running stages: its processes are terminated.

    ``ProcessPoolExecutor.shutdown`` waits for running calls (a long fold could hold shutdown
    for minutes); Python 3.11 has no public way to stop them, hence ``_processes``.
    """
    processes = list(getattr(executor, "_processes", {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + 1.0
    for process in processes:  # idle workers leave by themselves at once
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
    executor.shutdown(wait=True)  # joins the executor's manager thread; its workers are gone
