# Helper functions of workflow/rules/pretrain.smk (kept apart from the rules, as --lint asks).

import json
import re
import shlex

PRETRAIN_MODEL = r"(rnaret|transformer)-k[135]"


def pretrain_settings():
    """The config's pretrain block with defaults filled in."""
    settings = {
        "preset": "laptop",
        "models": ["rnaret-k1", "rnaret-k5"],
        "gpus": 0,
        "threads": 2,
        "mem_mb": 4000,
        "runtime": 120,
        "overrides": {},
        "init_from": {},
    }
    settings.update(config.get("pretrain") or {})
    for name in settings["models"]:
        if not re.fullmatch(PRETRAIN_MODEL, name):
            raise ValueError(
                f"pretrain.models: {name!r} is not rnaret-k{{1,3,5}} or transformer-k{{1,3,5}}"
            )
        k = pretrain_k(name)
        if k not in config["shards"]["k"] and name not in (settings["init_from"] or {}):
            raise ValueError(
                f"pretrain.models: {name} needs shards at k={k}; add {k} to shards.k"
            )
    return settings


def pretrain_k(model):
    """The k of a model name (rnaret-k5 -> 5)."""
    return int(model.rsplit("-k", 1)[1])


def pretrain_init_from(model):
    """The released checkpoint a model starts from (pretrain.init_from), or None."""
    return (pretrain_settings()["init_from"] or {}).get(model)


def pretrain_inputs(wildcards):
    """The shards at the model's k, plus the released checkpoint when init_from names one."""
    inputs = {"shards": shard_dir(pretrain_k(wildcards.model))}
    init_from = pretrain_init_from(wildcards.model)
    if init_from:
        inputs["init_from"] = init_from
    return inputs


def pretrain_out_dir(wildcards, output):
    """The run's folder results/pretrain/{model} (holds train/, the resumable state)."""
    return os.path.dirname(output.metrics)


def pretrain_gpus(wildcards):
    """GPUs of the job: pretrain.gpus, at most one for converting released weights."""
    gpus = int(pretrain_settings()["gpus"])
    return min(gpus, 1) if pretrain_init_from(wildcards.model) else gpus


def pretrain_nproc(wildcards):
    """Worker processes: one per GPU of the job (DDP through torchrun), else one."""
    return max(1, pretrain_gpus(wildcards))


def pretrain_args(wildcards, threads):
    """The `rnaret pretrain` options from the config: preset, overrides, init_from, threads."""
    settings = pretrain_settings()
    args = ["--model", wildcards.model, "--config-preset", settings["preset"]]
    if settings["overrides"]:
        args += ["--overrides", json.dumps(settings["overrides"], sort_keys=True)]
    init_from = pretrain_init_from(wildcards.model)
    if init_from:
        # the released weights instead of training: convert and validate them only
        args += ["--init-from", init_from, "--max-steps", "0"]
    args += ["--threads", str(max(1, threads // pretrain_nproc(wildcards)))]
    return " ".join(shlex.quote(a) for a in args)


def pretrain_targets():
    """checkpoint/, metrics.tsv and loss_curve.png of every configured pretraining model."""
    return [
        f"results/pretrain/{model}/{name}"
        for model in pretrain_settings()["models"]
        for name in ("checkpoint", "metrics.tsv", "loss_curve.png")
    ]
