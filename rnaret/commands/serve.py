"""`rnaret serve`: a local web page and JSON API (structure, coding potential, embeddings).

``--checkpoint`` may be given several times: a fine-tuned checkpoint folder serves the task its
``task.json`` names (structure or coding); any other path is taken as an encoder for the
embeddings. ``--structure-checkpoint`` / ``--coding-checkpoint`` / ``--embed-checkpoint`` say it
explicitly (needed for released fine-tuned ``.pth`` files, which do not name their task).
The server listens on 127.0.0.1 unless ``--host`` says otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys

HELP = "web page and JSON API for structure, coding potential and embeddings (local server)"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rnaret.serve.config import Limits

    defaults = Limits()
    parser.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                        help="fine-tuned structure or coding checkpoint folder (task read from its task.json), "
                             "or an encoder checkpoint for embeddings; repeat for several")
    parser.add_argument("--structure-checkpoint", metavar="PATH",
                        help="fine-tuned structure checkpoint folder or released fine-tuned .pth")
    parser.add_argument("--coding-checkpoint", metavar="PATH",
                        help="fine-tuned coding checkpoint folder or released fine-tuned .pth")
    parser.add_argument("--embed-checkpoint", metavar="PATH",
                        help="encoder for the embeddings download (default: the structure, else the coding "
                             "model's encoder)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--fd", type=int, default=None, metavar="N",
                        help="serve on an already bound, listening socket given as file descriptor N "
                             "(from a process manager or a test) instead of --host/--port")
    # the whole-number options: flag -> (default, help); the help names a default that is not None
    numbers = {
        "--port": (8000, "port"),
        "--workers": (2, "worker processes running the models and ViennaRNA"),
        "--threads-per-worker": (None, "torch threads per worker (default: CPU count / workers)"),
        "--max-request-bytes": (defaults.max_request_bytes, "largest request body in bytes"),
        "--max-sequences": (defaults.max_sequences, "most sequences per request"),
        "--max-total-length": (defaults.max_total_length, "most nucleotides per request"),
        "--max-structure-length": (defaults.max_structure_length, "longest sequence given a structure (model "
                                   "and ViennaRNA); longer ones get coding and embeddings only"),
        "--max-jobs": (defaults.max_jobs, "most jobs queued or running at once"),
    }
    for flag, (default, text) in numbers.items():
        parser.add_argument(flag, type=int, default=default,
                            help=text if default is None else f"{text} (default {default})")
    parser.add_argument("--job-ttl", type=float, default=900.0,
                        help="seconds a finished job's files are kept after it was last read (default 900)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the workers run the models (default cpu)")
    from rnaret.precision import add_precision_argument

    add_precision_argument(parser)
    parser.add_argument("--tmp-dir", default=None,
                        help="folder for the jobs' temporary folders (default: the system's)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="the least severe messages the server logs (default info)")


def resolve_checkpoints(args) -> dict[str, str | None]:
    """``{"structure", "coding", "embed"}`` paths from the arguments; InputError on conflicts,
    missing paths or a checkpoint whose task cannot be served."""
    import json
    from pathlib import Path

    from rnaret.io.errors import InputError
    from rnaret.checkpoint.finetuned import is_finetuned_checkpoint
    from rnaret.tasks.run import is_published_finetuned

    chosen: dict[str, str | None] = {"structure": args.structure_checkpoint, "coding": args.coding_checkpoint,
                                     "embed": args.embed_checkpoint}
    for path in args.checkpoint:
        if not Path(path).exists():
            raise InputError(path, "no such checkpoint file or folder")
        if is_finetuned_checkpoint(path):
            role = json.loads((Path(path) / "task.json").read_text()).get("task")
            if role not in ("structure", "coding"):
                raise InputError(path, f"a fine-tuned {role!r} checkpoint: the server runs structure and coding "
                                       f"models only")
        elif is_published_finetuned(path):
            raise InputError(path, "a released fine-tuned .pth does not say its task: give it as "
                                   "--structure-checkpoint or --coding-checkpoint")
        else:
            role = "embed"
        if chosen[role] is not None:
            raise InputError(path, f"a second {role} checkpoint (already {chosen[role]})")
        chosen[role] = path
    for role, path in chosen.items():
        if path is not None and not Path(path).exists():
            raise InputError(path, f"no such {role} checkpoint")
        if role != "embed" and path is not None and is_finetuned_checkpoint(path):
            task = json.loads((Path(path) / "task.json").read_text()).get("task")
            if task != role:
                raise InputError(path, f"a fine-tuned {task} checkpoint given as the {role} checkpoint")
    if chosen["structure"] is None and chosen["coding"] is None:
        raise InputError(None, "give at least one fine-tuned structure or coding checkpoint (--checkpoint DIR)")
    return chosen


def run(args) -> int:
    import logging

    import uvicorn

    from rnaret.io.errors import InputError
    from rnaret.cli import plural
    from rnaret.serve import Limits, create_app

    checkpoints = resolve_checkpoints(args)
    try:
        limits = Limits(max_request_bytes=args.max_request_bytes, max_sequences=args.max_sequences,
                        max_total_length=args.max_total_length, max_structure_length=args.max_structure_length,
                        max_jobs=args.max_jobs)
        app = create_app(checkpoints["structure"], checkpoints["coding"], checkpoints["embed"], limits,
                         workers=args.workers, threads_per_worker=args.threads_per_worker,
                         tmp_root=args.tmp_dir, job_ttl_s=args.job_ttl, device=args.device,
                         precision=args.precision)
    except ValueError as exc:
        raise InputError(None, str(exc)) from None
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    if args.fd is not None:
        import socket

        with socket.socket(fileno=os.dup(args.fd)) as sock:  # the socket's own address, for the message
            host, port = sock.getsockname()[:2]
        listen = {"fd": args.fd}
    else:
        host, port = args.host, args.port
        listen = {"host": args.host, "port": args.port}
    if host not in LOOPBACK:
        print(f"rnaret serve: warning: listening on {host}: anyone who can reach this address can use "
              f"the server and send it work", file=sys.stderr)
    print(f"rnaret serve: starting {plural(args.workers, 'worker')}; then open http://{_url_host(host)}:{port}/",
          file=sys.stderr)
    # lifespan "on": a checkpoint the workers cannot load stops the server instead of serving errors
    uvicorn.run(app, **listen, log_level=args.log_level, lifespan="on", timeout_graceful_shutdown=5)
    return 0


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
