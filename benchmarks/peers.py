"""Embedding time and memory against length: our encoder beside the RNA language models users
pick instead, measured in one run on the same machine and threads.

Models (random weights: time and memory do not depend on their values):

* ours: the paper-size RNAret RetNet (k = 1), chunkwise form, fp32 and bf16 autocast
  (``rnaret.precision``), from 256 nt to 100,000 nt;
* published RNAret: the published ``retnet.py`` (``--published-repo``, run as
  ``published_code.py`` runs it), fp32, parallel form, while its (L, L) matrices fit in memory;
* RNA-FM (12 layers, width 640, 99.5 M parameters) and RiNALMo (giga: 33 layers, width 1280,
  651 M parameters), fp32, as the multimolecule package defines them (``RnaFmModel``,
  ``RiNALMoModel`` with their default configurations, which are the published sizes, and
  transformers' default attention), up to their limit of 1,024 positions: 1,022 nt plus the
  two special tokens their tokenizers add. multimolecule and what it imports beyond this
  project's environment are installed with ``pip install --no-deps --target`` into a folder of
  the benchmark's own (``--peers-deps``, default ``benchmarks/out/peers``); ``rnaret`` never
  imports them.

Each case (model, precision, length; one sequence) runs in a fresh process: a forward under
torch's ``FlopCounterMode`` (the FLOPs per nt printed; ours counted at up to 8,192 nt and scaled,
its cost being linear in length beyond one chunk), a plain warm-up forward (up to 8,192 nt),
then the timed forward. Time per nt is wall time and the process's CPU time over the sequence length; memory
is the peak RSS of the process in all, and the extra over its RSS after the model was built
and warmed up (Linux ``VmHWM`` reset before the timed forward). Cases run in increasing length;
a case whose time, extrapolated from the model's previous length, would pass what is left of
``--max-seconds`` is skipped and said so.

Runs can be split (``--models``, ``--lengths``, each with ``--json FILE``) and their rows put
together afterwards: ``--from-json A.json,B.json`` measures nothing, reads the rows of those
files (a case found in two files is taken from the later one; each row keeps the ``run`` line
of the file it came from) and prints, tabulates and draws them as one set.

Usage: python benchmarks/peers.py [--threads 1] [--published-repo PATH] [--max-seconds 1800] [--models ...]
       [--lengths 256,512,1022,...] [--figure docs/performance-peers.png] [--markdown FILE] [--json FILE]
       python benchmarks/peers.py --from-json A.json,B.json [--figure ...] [--markdown ...] [--json ...]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # rnaret from this checkout; the benchmark helpers beside this file

from encoder import proc_memory, reset_peak_rss  # noqa: E402
from published_code import add_published_arguments  # noqa: E402

DEFAULT_PEERS_DIR = HERE / "out" / "peers"
# multimolecule and the packages its import chain needs beyond this project's environment
# (torch, transformers, numpy, pandas, ... are the environment's own), pinned
PEER_PACKAGES = ("multimolecule==0.2.2", "chanfig==0.0.117", "danling==0.4.8", "lazy-imports==1.2.0",
                 "datasets==5.2.0", "pyarrow==26.0.1", "dill==0.4.1", "multiprocess==0.70.19",
                 "xxhash==4.1.0", "torchmetrics==1.9.0", "lightning-utilities==0.15.3",
                 "python-frontmatter==1.3.0", "torchdata==0.11.0")
PEER_LIMIT = 1022  # nt: 1,024 positions with the two special tokens
LENGTHS = [256, 512, 1022, 2048, 4096, 8192, 16384, 32768, 100000]
OURS_FLOP_LENGTH = 8192
MODELS = {  # name -> (precisions, longest length or None)
    "ours": (("fp32", "bf16"), None),
    "published RNAret": (("fp32",), None),
    "RNA-FM": (("fp32",), PEER_LIMIT),
    "RiNALMo": (("fp32",), PEER_LIMIT),
}
GIB = 2 ** 30


def ensure_peers(target: Path) -> bool:
    """Is multimolecule (with its extra imports) in ``target``? Installed there with pip
    --no-deps --target if missing; False (and said why) where that fails, e.g. offline."""
    if not (target / "multimolecule").is_dir():
        print(f"installing multimolecule into {target} (pip --no-deps --target)", file=sys.stderr)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                               str(target), *PEER_PACKAGES], capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            print(f"    RNA-FM and RiNALMo not run: multimolecule could not be installed ({last})")
            return False
    return True


def build(name: str, args):
    """(forward(tokens) -> output, number of parameters, vocabulary range) for ``name``."""
    if name in ("ours", "published RNAret"):
        from rnaret.model import EncoderConfig, RetNetEncoder

        torch.manual_seed(0)
        ours = RetNetEncoder(EncoderConfig.paper(1)).to(args.device).eval()
        params = ours.num_parameters()
        if name == "ours":
            return (lambda tokens: ours(tokens, form="chunkwise").logits), params, (6, 10)
        from published_code import copy_weights, import_published, published_encoder

        theirs = published_encoder(import_published(args.published_repo, args.published_deps), ours.config)
        copy_weights(ours, theirs)
        theirs = theirs.to(args.device).eval()
        return (lambda tokens: theirs(tokens)[0]), params, (6, 10)
    sys.path.insert(0, args.peers_deps)
    if name == "RNA-FM":
        from multimolecule.models.rnafm import RnaFmConfig as Config, RnaFmModel as Model
    else:
        from multimolecule.models.rinalmo import RiNALMoConfig as Config, RiNALMoModel as Model
    torch.manual_seed(0)
    model = Model(Config()).to(args.device).eval()
    params = sum(p.numel() for p in model.parameters())
    # their tokenizers add a start and an end token around the nucleotides
    return (lambda tokens: model(input_ids=tokens).last_hidden_state), params, (6, 10)


def measure(name: str, precision: str, length: int, args) -> dict:
    """One case in this process: FLOPs (counted on the warm-up), time and memory of one forward."""
    from torch.utils.flop_counter import FlopCounterMode

    from rnaret.precision import autocast

    forward, params, (low, high) = build(name, args)
    special = 2 if name in ("RNA-FM", "RiNALMo") else 0
    tokens = torch.randint(low, high, (1, length + special), device=args.device)
    counted = min(length, OURS_FLOP_LENGTH) if name == "ours" else length
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), autocast(args.device, precision):
        with counter:
            forward(tokens[:, :counted + special])
        flops_per_nt = counter.get_total_flops() / counted
        # a plain warm-up besides (kernels first met under the counter's dispatch run slower);
        # beyond 8,192 nt the chunkwise layers meet no new shapes
        forward(tokens[:, :min(length, OURS_FLOP_LENGTH) + special])
        if args.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        reset_peak_rss()
        before = proc_memory("VmRSS")
        wall, cpu = time.perf_counter(), time.process_time()
        forward(tokens)
        if args.device == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = proc_memory("VmHWM")
    result = {"model": name, "precision": precision, "length": length, "params": params,
              "flops_per_nt": flops_per_nt, "wall": wall, "cpu": cpu, "peak_gib": peak, "extra_gib": peak - before}
    if args.device == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated() / GIB
        result["extra_gib"] = result["peak_gib"]
    return result


def run_case(name: str, precision: str, length: int, args, timeout: float) -> dict:
    command = [sys.executable, __file__, "--measure", json.dumps([name, precision, length]),
               "--device", args.device, "--threads", str(args.threads), "--peers-deps", args.peers_deps,
               "--published-deps", args.published_deps]
    if args.published_repo:
        command += ["--published-repo", args.published_repo]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return {"model": name, "precision": precision, "length": length, "error": "over --max-seconds"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"model": name, "precision": precision, "length": length, "error": last}
    return json.loads(done.stdout.strip().splitlines()[-1])


def published_fits(length: int) -> bool:
    """The published (parallel) forward holds about six (4 heads, L, L) fp32 matrices."""
    with open("/proc/meminfo") as handle:
        info = dict(line.split(":", 1) for line in handle)
    free = int(info["MemAvailable"].split()[0]) * 1024
    return 6 * 4 * length ** 2 * 4 < 0.6 * free


def run_all(args, models: list[str]) -> list[dict]:
    if not args.published_repo and "published RNAret" in models:
        models = [m for m in models if m != "published RNAret"]
        print("    (no --published-repo: the published RNAret code is not run)")
    started = time.perf_counter()
    last: dict[tuple[str, str], dict] = {}
    results = []
    header = (f"    {'model':>16} {'prec':>4} {'length':>7} {'params M':>8} {'GFLOP/nt':>8} {'wall s':>8} "
              f"{'ms/nt':>7} {'cpu ms/nt':>9} {'peak GiB':>8} {'extra GiB':>9}")
    print(header, flush=True)
    for length in args.lengths:
        for name in models:
            precisions, limit = MODELS[name]
            if limit is not None and length > limit:
                continue
            if name == "published RNAret" and (length > args.published_max_len or not published_fits(length)):
                continue
            for precision in precisions:
                left = args.max_seconds - (time.perf_counter() - started)
                previous = last.get((name, precision))
                if previous is not None and "error" not in previous:
                    power = 1 if name == "ours" else 2  # quadratic attention / parallel retention
                    # a case also builds and warms up its model: about twice the forward
                    estimate = 2 * previous["wall"] * (length / previous["length"]) ** power
                    if estimate > left:
                        print(f"    {name:>16} {precision:>4} {length:>7}   skipped: ~{estimate:.0f} s expected, "
                              f"{left:.0f} s of --max-seconds left", flush=True)
                        continue
                if left <= 0:
                    print(f"    {name:>16} {precision:>4} {length:>7}   skipped: --max-seconds spent", flush=True)
                    continue
                r = run_case(name, precision, length, args, left)
                results.append(r)
                last[(name, precision)] = r
                if "error" in r:
                    print(f"    {name:>16} {precision:>4} {length:>7}   failed: {r['error']}", flush=True)
                    continue
                print(f"    {name:>16} {precision:>4} {length:>7} {r['params'] / 1e6:8.1f} "
                      f"{r['flops_per_nt'] / 1e9:8.2f} {r['wall']:8.2f} {1e3 * r['wall'] / length:7.3f} "
                      f"{1e3 * r['cpu'] / length:9.3f} {r['peak_gib']:8.2f} {r['extra_gib']:9.3f}", flush=True)
    return [r for r in results if "error" not in r]


def ratios(results: list[dict]) -> None:
    """Per-nt time of each model over ours (same precision fp32, and ours bf16) at each length."""
    table = {(r["model"], r["precision"], r["length"]): r for r in results}
    print("\n    time per nt against ours (fp32 / bf16), CPU time of the process; extra memory against ours fp32:")
    for (name, precision, length), r in sorted(table.items(), key=lambda kv: (kv[0][2], kv[0][0])):
        if name == "ours":
            continue
        mine, mine16 = table.get(("ours", "fp32", length)), table.get(("ours", "bf16", length))
        if not mine:
            continue
        parts = [f"{r['cpu'] / mine['cpu']:.1f}x"]
        if mine16:
            parts.append(f"{r['cpu'] / mine16['cpu']:.1f}x")
        print(f"    {length:>7} {name:>16}: {' / '.join(parts)} slower; "
              f"{r['extra_gib'] / max(mine['extra_gib'], 1e-3):.1f}x the extra memory; "
              f"{r['flops_per_nt'] / mine['flops_per_nt']:.1f}x the FLOPs per nt")


def markdown(results: list[dict]) -> str:
    """The table as Markdown: one row per model and precision, per-nt time and peak memory; with
    rows of several runs (``--from-json``), a column numbering the run and the runs listed below."""
    runs = list(dict.fromkeys(r["run"] for r in results if "run" in r))
    several = len(runs) > 1
    lines = ["| model | precision | parameters | length (nt) | GFLOP per nt | ms per nt (wall) | "
             "ms per nt (CPU) | peak memory GiB (extra) |" + (" run |" if several else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if several else "")]
    for r in sorted(results, key=lambda r: (list(MODELS).index(r["model"]), r["precision"], r["length"])):
        lines.append(f"| {r['model']} | {r['precision']} | {r['params'] / 1e6:.1f} M | {r['length']:,} | "
                     f"{r['flops_per_nt'] / 1e9:.2f} | {1e3 * r['wall'] / r['length']:.3f} | "
                     f"{1e3 * r['cpu'] / r['length']:.3f} | {r['peak_gib']:.2f} ({r['extra_gib']:.3f}) |"
                     + (f" {runs.index(r['run']) + 1} |" if several else ""))
    if several:
        lines += [""] + [f"Run {i + 1}: {run}" + ("" if i == len(runs) - 1 else "  ") for i, run in enumerate(runs)]
    return "\n".join(lines) + "\n"


def figure(results: list[dict], path: Path, title: str) -> None:
    """Two panels against length (log-log): CPU ms per nt and the process's peak memory in all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in MODELS:
        for precision in MODELS[name][0]:
            rows = sorted((r for r in results if r["model"] == name and r["precision"] == precision),
                          key=lambda r: r["length"])
            if not rows:
                continue
            label = f"{name} ({precision}, {rows[0]['params'] / 1e6:.0f} M)"
            xs = [r["length"] for r in rows]
            left.plot(xs, [1e3 * r["cpu"] / r["length"] for r in rows], "o-", label=label)
            right.plot(xs, [r["peak_gib"] for r in rows], "o-", label=label)
    for ax, ylabel in ((left, "ms per nt (CPU time, 1 sequence)"), (right, "peak memory of the process, GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length, nt")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.03 * (title.count("\n") + 1)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_rows(results: list[dict]) -> None:
    """The measured rows, in the order ``run_all`` prints them, with the run each came from."""
    for r in sorted(results, key=lambda r: (r["length"], list(MODELS).index(r["model"]), r["precision"])):
        print(f"    {r['model']:>16} {r['precision']:>4} {r['length']:>7} {r['params'] / 1e6:8.1f} "
              f"{r['flops_per_nt'] / 1e9:8.2f} {r['wall']:8.2f} {1e3 * r['wall'] / r['length']:7.3f} "
              f"{1e3 * r['cpu'] / r['length']:9.3f} {r['peak_gib']:8.2f} {r['extra_gib']:9.3f}   {r.get('run', '')}")


def merge_runs(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """The rows of several ``--json`` files as one set (a case in two files: the later file's
    row), each row tagged ``run`` with its file's title; and the titles, in order."""
    rows: dict[tuple, dict] = {}
    titles = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
            title, results = data["title"], data["results"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"--from-json {path}: not a peers.py --json file ({exc})") from None
        titles.append(title)
        for r in results:
            if "error" in r:
                continue
            rows[(r["model"], r["precision"], r["length"])] = {**r, "run": r.get("run", title)}
    return list(rows.values()), titles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=LENGTHS)
    parser.add_argument("--max-seconds", type=float, default=1800,
                        help="wall-time budget of the whole run; longer cases are skipped (default 1800)")
    parser.add_argument("--published-max-len", type=int, default=8192,
                        help="longest sequence run through the published code (default 8192)")
    parser.add_argument("--peers-deps", default=str(DEFAULT_PEERS_DIR),
                        help=f"where multimolecule is installed for this benchmark (default {DEFAULT_PEERS_DIR})")
    parser.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS),
                        help=f"comma-separated, of: {', '.join(MODELS)} (default all)")
    parser.add_argument("--ours-precisions", type=lambda s: s.split(","), default=["fp32", "bf16"],
                        help="precisions of our encoder (default fp32,bf16; bf16 is slow where the CPU has "
                             "no bf16 matrix instructions)")
    parser.add_argument("--figure", type=Path, default=None, help="write the figure (PNG) here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table (Markdown) here")
    parser.add_argument("--json", type=Path, default=None, help="write every measured case (JSON) here")
    parser.add_argument("--from-json", type=lambda s: [Path(x) for x in s.split(",")], default=None,
                        help="measure nothing: put together the rows of these --json files (comma-separated)")
    add_published_arguments(parser)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch finds no CUDA device here")
    if args.measure:
        name, precision, length = json.loads(args.measure)
        print(json.dumps(measure(name, precision, length, args)))
        return
    if args.from_json:
        results, titles = merge_runs(args.from_json)
        # numbered as the table's run column numbers them: in the order the rows first name them
        runs = list(dict.fromkeys(r["run"] for r in results))
        title = "\n".join(f"run {i + 1}: {t}" for i, t in enumerate(runs))
        print(f"rnaret peers benchmark, rows of {len(titles)} run(s): " + "; ".join(titles))
        print(f"    {'model':>16} {'prec':>4} {'length':>7} {'params M':>8} {'GFLOP/nt':>8} {'wall s':>8} "
              f"{'ms/nt':>7} {'cpu ms/nt':>9} {'peak GiB':>8} {'extra GiB':>9}   run")
        print_rows(results)
        report(results, title, args)
        return
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; known: {', '.join(MODELS)}")
    models = [m for m in MODELS if m in args.models]
    MODELS["ours"] = (tuple(args.ours_precisions), None)
    if {"RNA-FM", "RiNALMo"} & set(models) and not ensure_peers(Path(args.peers_deps)):
        models = [m for m in models if m not in ("RNA-FM", "RiNALMo")]
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    title = (f"one sequence, {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else
                                               f" ({cpu}), {args.threads} thread(s)")
             + f", torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"rnaret peers benchmark: {title}; budget {args.max_seconds:.0f} s")
    results = run_all(args, models)
    report(results, title, args)


def report(results: list[dict], title: str, args) -> None:
    """The ratios printed; the table, the rows and the figure written where asked."""
    ratios(results)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"{title}\n\n{markdown(results)}" if "\n" not in title else markdown(results))
        print(f"table: {args.markdown}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"title": title, "results": results}, indent=1) + "\n")
    if args.figure:
        figure(results, args.figure, title)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
