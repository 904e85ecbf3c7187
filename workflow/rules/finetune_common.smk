# Helper functions of workflow/rules/finetune.smk (kept apart from the rules, as --lint asks).
#
# Models (the {model} wildcard of results/{task}/{dataset}/{model}/):
#   rnaret-k{k}, transformer-k{k}: fine-tuned from results/pretrain/{model}/checkpoint;
#   onehot: the one-hot control (no pretraining), same head and budget;
#   published-k{k}: a released fine-tuned .pth (finetune.{task}.published.k{k}), evaluation only.
# A dataset with only `test` and `finetuned_on: other` is evaluated with the checkpoints
# fine-tuned on `other`.

import json
import re
import shlex

FINETUNE_TASKS = ("interaction", "coding", "structure")
TRAINED_MODEL = r"(rnaret|transformer)-k[135]|onehot"
PUBLISHED_MODEL = r"published-k[135]"


def finetune_settings(task=None):
    """The config's finetune block (or one task's block) with defaults filled in."""
    settings = {
        "preset": "laptop",
        "threads": 2,
        "mem_mb": 6000,
        "runtime": 120,
        "gpus": 0,
    }
    settings.update(
        {
            k: v
            for k, v in (config.get("finetune") or {}).items()
            if k not in FINETUNE_TASKS
        }
    )
    if task is None:
        return settings
    block = {"models": [], "published": {}, "settings": {}, "model_settings": {}}
    block.update((config.get("finetune") or {}).get(task) or {})
    return {**settings, **block}


def model_k(model):
    """The k of a model name (rnaret-k5 -> 5); None for onehot."""
    return int(model.rsplit("-k", 1)[1]) if "-k" in model else None


def run_settings(task, model):
    """Task settings of one run: finetune.preset, finetune.{task}.settings, then
    finetune.{task}.model_settings.{model}."""
    block = finetune_settings(task)
    settings = {"preset": block["preset"], **(block["settings"] or {})}
    settings.update((block["model_settings"] or {}).get(model) or {})
    return settings


def finetune_inputs(wildcards):
    """The pretrained checkpoint (none for onehot) and the local train/valid files."""
    inputs = {}
    if wildcards.model != "onehot":
        inputs["init"] = f"results/pretrain/{wildcards.model}/checkpoint"
    for split in ("train", "valid"):
        if split in dataset_entry(wildcards.task, wildcards.dataset):
            inputs[split] = dataset_path(wildcards.task, wildcards.dataset, split)
    if "train" not in inputs:
        raise ValueError(
            f"datasets.{wildcards.task}.{wildcards.dataset} has no train split to fine-tune on"
        )
    return inputs


def split_args(task, dataset, splits):
    """`--split NAME=PATH[#VALUE]` options of a dataset's splits (local paths)."""
    args = []
    for split in splits:
        if split in dataset_entry(task, dataset):
            value = dataset_path(task, dataset, split)
            row = dataset_row_split(task, dataset, split)
            args += [
                "--split",
                f"{split}={value}" + (f"#{row}" if row is not None else ""),
            ]
    return args


def settings_args(task, model):
    """`--set KEY=VALUE` options (values as JSON, read back as YAML) of one run's settings."""
    args = []
    for key, value in sorted(run_settings(task, model).items()):
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def finetune_args(wildcards, input, threads):
    """The `rnaret finetune` options: init, splits, settings, threads."""
    init = "onehot" if wildcards.model == "onehot" else input.init
    args = ["--init", init] + split_args(
        wildcards.task, wildcards.dataset, ("train", "valid")
    )
    args += settings_args(wildcards.task, wildcards.model) + ["--threads", str(threads)]
    return " ".join(shlex.quote(a) for a in args)


def source_dataset(task, dataset):
    """The dataset whose fine-tuned models evaluate ``dataset`` (its finetuned_on, else itself)."""
    source = dataset_entry(task, dataset).get("finetuned_on") or dataset
    if source not in datasets_of(task):
        raise ValueError(
            f"datasets.{task}.{dataset}.finetuned_on: no dataset {source!r} in datasets.{task}"
        )
    return source


def published_checkpoint(task, model):
    """The released fine-tuned .pth of published-k{k} (finetune.{task}.published.k{k})."""
    published = finetune_settings(task)["published"] or {}
    key = f"k{model_k(model)}"
    if not published.get(key):
        raise ValueError(
            f"{model}: set finetune.{task}.published.{key} to a released fine-tuned .pth"
        )
    return published[key]


def evaluate_inputs(wildcards):
    """The model to evaluate (fine-tuned checkpoint folder or released .pth) and the test file."""
    task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
    if re.fullmatch(PUBLISHED_MODEL, model):
        model_file = published_checkpoint(task, model)
    else:
        model_file = (
            f"results/{task}/{source_dataset(task, dataset)}/{model}/checkpoint"
        )
    return {"checkpoint": model_file, "test": dataset_path(task, dataset, "test")}


def evaluate_args(wildcards, input, threads):
    """The `rnaret evaluate` options: task, test split, evaluation settings, threads."""
    args = ["--task", wildcards.task] + split_args(
        wildcards.task, wildcards.dataset, ("test",)
    )
    if re.fullmatch(PUBLISHED_MODEL, wildcards.model):
        args += settings_args(wildcards.task, wildcards.model)
    args += ["--threads", str(threads)]
    return " ".join(shlex.quote(a) for a in args)


def evaluation_dir(wildcards, output):
    """results/{task}/{dataset}/{model}, the folder of the evaluation's outputs."""
    return os.path.dirname(output.metrics)


def finetune_targets(tasks=("interaction", "coding")):
    """metrics.tsv of every configured (task, dataset, model) evaluation of ``tasks``.

    A dataset counts when it has train (fine-tuned on itself) or finetuned_on a dataset that
    has; published-k{k} models count for every dataset with a test split.
    """
    targets = []
    for task in tasks:
        block = finetune_settings(task)
        for model in block["models"]:
            if not re.fullmatch(f"{TRAINED_MODEL}|{PUBLISHED_MODEL}", model):
                raise ValueError(
                    f"finetune.{task}.models: {model!r} is not rnaret-k{{1,3,5}}, "
                    "transformer-k{1,3,5}, onehot or published-k{1,3,5}"
                )
            for dataset in datasets_of(task):
                entry = dataset_entry(task, dataset)
                source = source_dataset(task, dataset)
                trained = "train" in dataset_entry(task, source)
                if "test" in entry and (
                    trained or re.fullmatch(PUBLISHED_MODEL, model)
                ):
                    targets.append(f"results/{task}/{dataset}/{model}/metrics.tsv")
    return targets
