"""What a server is started with: the checkpoints, the limits on what one request may ask for,
and how work is run (worker processes, temporary folders, how long results are kept)."""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """Caps on one request (each answered with a 413 JSON error naming the cap when exceeded).

    ``max_request_bytes``: request body size (a gzipped upload: also its decompressed size);
    ``max_sequences``: sequences per request; ``max_total_length``: nucleotides per request;
    ``max_structure_length``: longer sequences get no structure (model or ViennaRNA; both cost
    O(n^2) memory or more) but still the coding track and embeddings, with a note saying so;
    ``max_jobs``: jobs held at once (queued, running or finished and not yet expired), beyond
    which new requests are refused with 429 until one finishes or expires.
    """

    max_request_bytes: int = 1_000_000
    max_sequences: int = 50
    max_total_length: int = 100_000
    max_structure_length: int = 2_000
    max_jobs: int = 20

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"limit {name} must be a positive integer, got {value!r}")

    def as_dict(self) -> dict[str, int]:
        """The limits as ``{name: value}`` (what ``GET /api/info`` shows)."""
        return asdict(self)


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``create_app`` needs.

    Checkpoints (each optional, at least one of structure/coding given): ``structure`` and
    ``coding`` are fine-tuned checkpoint folders (``rnaret finetune``'s layout) or released
    fine-tuned ``.pth`` files; ``embed`` an encoder for the embeddings download (any
    ``rnaret.load_encoder`` format; default: the structure checkpoint's encoder, else the coding
    one's). ``workers`` worker processes run all model and ViennaRNA work (the web server's own
    process only parses input and answers requests); ``threads_per_worker`` torch threads each
    (default: the CPU count divided by ``workers``). Each job's files live in a
    ``tempfile.TemporaryDirectory`` under ``tmp_root`` (default: the system's), removed when
    the job is deleted, ``job_ttl_s`` seconds after it was last read, or at shutdown.
    ``device``: where the workers run the models (``rnaret.device.resolve_device``: "auto", "cpu",
    "cuda" or "cuda:N", every worker on that GPU; a GPU that is not there stops the start-up with
    the reason); ``precision``: ``rnaret.precision``'s fp32 | bf16 | auto for the model stages.
    """

    structure: str | None = None
    coding: str | None = None
    embed: str | None = None
    limits: Limits = field(default_factory=Limits)
    workers: int = 2
    threads_per_worker: int | None = None
    tmp_root: str | None = None
    job_ttl_s: float = 900.0
    device: str = "cpu"
    precision: str = "auto"

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {self.threads_per_worker}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")
        if self.job_ttl_s <= 0:
            raise ValueError(f"job_ttl_s must be positive, got {self.job_ttl_s}")

    @property
    def torch_threads(self) -> int:
        """Torch threads per worker process."""
        return self.threads_per_worker or max(1, (os.cpu_count() or 1) // self.workers)

    def worker_spec(self) -> dict:
        """What a worker process needs to load its models (plain data: it crosses processes)."""
        return {"structure": _path(self.structure), "coding": _path(self.coding),
                "embed": _path(self.embed), "threads": self.torch_threads, "device": self.device,
                "precision": self.precision}


def _path(value) -> str | None:
    return None if value is None else str(Path(value).resolve())
