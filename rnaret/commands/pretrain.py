"""`rnaret pretrain`: masked-language-model pretraining of an encoder on token shards.

    rnaret pretrain --shards results/shards/k1 --out results/pretrain/rnaret-k1 --config-preset laptop
    rnaret launch --nproc 4 -- pretrain --shards ... --out ... --config-preset paper --k 5
    rnaret pretrain --shards results/shards/k5 --out results/pretrain/rnaret-k5 \\
        --init-from pretrain_5mer.pth --max-steps 0        # convert + validate released weights

A rerun with the same --out continues from the newest checkpoint in OUT/train when it was
started from the same settings and inputs (OUT/train/fingerprint.json); otherwise that folder is
moved to OUT/train.replaced and a fresh run starts, naming what changed.
"""
from __future__ import annotations

import argparse
import json

HELP = "pretrain an encoder by masked language modelling on token shards (resumable, DDP-ready)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rnaret pretrain`."""
    parser.add_argument("--shards", required=True,
                        help="shard folder with train/ and valid/ splits (written by `rnaret shard`)")
    parser.add_argument("--out", required=True,
                        help="output folder: checkpoint/, metrics.tsv, loss_curve.png, summary.json, train/")
    parser.add_argument("--config-preset", default="laptop",
                        help="laptop (default; small, CPU), paper (published size and hyperparameters) or tiny")
    parser.add_argument("--model", default=None,
                        help="results name rnaret-k{1,3,5} or transformer-k{1,3,5}: sets --architecture and --k")
    parser.add_argument("--architecture", default=None, help="retnet (default) or transformer")
    parser.add_argument("--k", type=int, default=None, help="k-mer size 1, 3 or 5 (default: the shards' k)")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps (overrides the preset)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (overrides the preset)")
    parser.add_argument("--init-from", default=None,
                        help="start from these weights (a released pretrain_{k}mer.pth or our checkpoint "
                        "folder); with --max-steps 0 they are only converted and validated")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set lr=3e-4 --set encoder.retnet_layers=4 "
                        "(repeatable; values read as YAML)")
    parser.add_argument("--overrides", default=None,
                        help="a JSON object of config fields to override (what the pipeline rule passes)")
    from rnaret.device import add_device_argument
    from rnaret.precision import TRAINING_PRECISIONS, add_precision_argument

    add_device_argument(parser)
    # None: the config's precision field (auto unless --set/--overrides say otherwise)
    add_precision_argument(parser, default=None, choices=TRAINING_PRECISIONS)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--restart", action="store_true",
                        help="delete OUT/train and start over instead of resuming (a run folder started "
                        "from other settings or inputs is replaced by a fresh run without it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def resolve_config(args: argparse.Namespace):
    """The ``PretrainConfig`` the arguments describe: preset, then --overrides, --set, flags."""
    from rnaret.train.config import merge_overrides, parse_assignments, parse_model_name, preset

    overrides: dict = {}
    if args.overrides:
        try:
            loaded = json.loads(args.overrides)
        except ValueError as exc:
            raise SystemExit(f"rnaret pretrain: error: --overrides is not JSON: {exc}")
        if not isinstance(loaded, dict):
            raise SystemExit("rnaret pretrain: error: --overrides must be a JSON object")
        overrides = merge_overrides(overrides, loaded)
    overrides = merge_overrides(overrides, parse_assignments(args.set))
    architecture, k = args.architecture, args.k
    if args.model:
        architecture, k = parse_model_name(args.model)
    if k is None:
        k = overrides.pop("k", None) or _shards_k(args.shards)
    overrides.pop("k", None)
    if architecture:
        overrides["architecture"] = architecture
    for key in ("max_steps", "seed", "init_from", "precision"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    return preset(args.config_preset, k, **overrides)


def _shards_k(shards) -> int:
    """k from the shard folder's manifest."""
    from pathlib import Path

    from rnaret.io.errors import InputError

    manifest = Path(shards) / "manifest.json"
    if not manifest.is_file():
        raise InputError(manifest, "no shard manifest: pass --k, or point --shards at a shard folder")
    try:
        return int(json.loads(manifest.read_text())["k"])
    except (ValueError, KeyError) as exc:
        raise InputError(manifest, f"cannot read k from the shard manifest: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train; prints a one-line summary (rank 0)."""
    import os
    import sys

    from rnaret.io.errors import InputError

    try:
        config = resolve_config(args)
    except InputError:
        raise  # the CLI prints it, naming the file
    except ValueError as exc:
        print(f"rnaret pretrain: error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(config.to_json())
        return 0
    from rnaret.train.pretrain import pretrain

    device = None if args.device in (None, "auto") else args.device
    result = pretrain(config, args.shards, args.out, device=device, threads=args.threads,
                      show_progress=not args.no_progress, restart=args.restart)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"rnaret pretrain: {result.step} steps; validation MLM loss {result.valid_loss:.4f} "
              f"(unigram entropy {result.unigram_entropy:.4f}), masked accuracy "
              f"{result.masked_accuracy:.4f}; model in {result.out / 'checkpoint'}", file=sys.stderr)
    return 0
