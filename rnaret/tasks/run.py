"""Fine-tune and evaluate from paths and settings: what ``rnaret finetune``/``evaluate`` and the
workflow scripts call.

``init`` of a fine-tuning run is one of:
- ``onehot``: the one-hot control model (``rnaret.model.onehot``), no pretraining;
- a pretrained encoder: our checkpoint folder or a published ``pretrain_{k}mer.pth``
  (``rnaret.checkpoint.load_encoder``);
- a fine-tuned checkpoint folder of this task (training continues from its encoder and head);
- a released fine-tuned ``.pth`` of this task (``ret.*`` + ``classifier.*``).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from rnaret.io.errors import InputError
from rnaret.io.mapping import read_mapping  # the commands' YAML/JSON reader (also imported from here)
from rnaret.tasks import get_task
from rnaret.tasks.base import Task
from rnaret.checkpoint.finetuned import is_finetuned_checkpoint, load_finetuned, save_finetuned
from rnaret.checkpoint.published import load_published_finetuned
from rnaret.tasks.finetune import TaskModel, encoder_k, encoder_width, evaluate, finetune, pick_device
from rnaret.train.skeleton import seed_everything

ONEHOT = "onehot"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def is_published_finetuned(path) -> bool:
    """True when ``path`` is a ``.pth`` whose keys are ``ret.*`` + ``classifier.*``."""
    from rnaret.checkpoint.published import read_pth

    path = Path(path)
    if not path.is_file() or path.suffix not in (".pth", ".pt"):
        return False
    return any(key.startswith("classifier.") for key in read_pth(path))


def set_dropout(module: nn.Module, p: float) -> None:
    """Set the probability of every ``nn.Dropout`` inside ``module`` to ``p``."""
    for child in module.modules():
        if isinstance(child, nn.Dropout):
            child.p = float(p)


def initial_model(task: Task, init: str) -> tuple[TaskModel, str]:
    """The model a fine-tuning run starts from -> (TaskModel, encoder kind: "onehot" or the
    encoder's architecture). Raises InputError when the encoder's k is not the task's."""
    settings = task.settings
    if str(init) == ONEHOT:
        from rnaret.model.onehot import OneHotConfig, OneHotModel

        encoder = OneHotModel(OneHotConfig(k=task.k, project_dim=settings.get("onehot_dim"),
                                           cls_segments=task.cls_segments))
        head = task.build_head(encoder_width(encoder))
        model, kind = TaskModel(encoder, head), ONEHOT
    elif is_finetuned_checkpoint(init):
        previous, model, meta = load_finetuned(init)
        if previous.name != task.name:
            raise InputError(init, f"a fine-tuned {previous.name} checkpoint cannot start a {task.name} run")
        kind = meta.get("encoder_kind", "retnet")
    elif is_published_finetuned(init):
        model, kind = load_published_finetuned(init, task), "retnet"
    else:
        from rnaret.checkpoint import load_encoder

        encoder = load_encoder(init)
        head = task.build_head(encoder_width(encoder))
        model = TaskModel(encoder, head)
        kind = getattr(encoder, "architecture", "retnet")
    if encoder_k(model.encoder) != task.k:
        raise InputError(init, f"the encoder is k={encoder_k(model.encoder)} but the {task.name} task "
                               f"is set to k={task.k}")
    if settings.get("dropout") is not None and kind != ONEHOT:
        set_dropout(model.encoder, settings["dropout"])
    model.freeze_encoder = bool(settings.get("freeze_encoder"))
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(not model.freeze_encoder)
    return model, kind


def run_dir_for(out) -> Path:
    """The default run folder of a fine-tuning whose checkpoint is ``out``: ``<out>.train``."""
    out = Path(out)
    return out.with_name(out.name + ".train")


def finetune_fingerprint(task: Task, entry: Mapping[str, Any], init: str, precision: str) -> dict:
    """The fingerprint of a fine-tuning run (``rnaret.train.fingerprint``): the task's resolved
    settings and precision, the initial weights' digest, and the digest and row selection of the
    train and valid files."""
    from rnaret.tasks.base import split_source
    from rnaret.train.fingerprint import file_digest

    inputs: dict[str, Any] = {"init": None if str(init) == ONEHOT else file_digest(init)}
    for split in ("train", "valid"):
        if entry.get(split) in (None, ""):
            inputs[split] = None
            continue
        path, select = split_source(entry[split])
        inputs[split] = {"digest": file_digest(path), "select": select}
        labels = entry[split].get("labels") if isinstance(entry[split], Mapping) else None
        if labels:  # a FASTA's side table of labels (the generic tasks)
            inputs[split]["labels"] = file_digest(labels)
    return {"kind": "finetune", "settings": {"task": task.name, **task.settings, "precision": precision},
            "inputs": inputs}


def run_finetune(task_name: str, entry: Mapping[str, Any], init: str, out, *,
                 settings: Mapping[str, Any] | None = None, device: str | None = None,
                 progress: bool = True, precision: str | None = "auto", run_dir=None,
                 restart: bool = False) -> dict:
    """Fine-tune ``task_name`` on a dataset entry from ``init``; write the checkpoint folder ``out``
    (with ``train_log.tsv`` inside). Returns the best point (``{"epoch", "step", "metric",
    "value", "valid_metrics"}``).

    run_dir: the resumable run folder (default ``<out>.train``): a checkpoint after every epoch;
    a rerun continues it when its fingerprint (``finetune_fingerprint``) matches, else moves it
    to ``<run_dir>.replaced`` and starts fresh; restart: delete it first. precision: fp32, bf16
    or auto (``rnaret.precision``); device: auto, cpu or cuda[:N] (``rnaret.device``).
    """
    from rnaret.precision import resolve_precision
    from rnaret.train.skeleton import open_run

    task = get_task(task_name, settings)
    seed_everything(int(task.settings["seed"]))
    started = time.monotonic()
    if entry.get("train") in (None, ""):
        raise InputError(None, f"the {task_name} dataset entry has no train split: it can only be evaluated")
    dev = pick_device(device)
    precision = resolve_precision(precision, dev)
    data = task.load_dataset(entry, splits=("train", "valid"))
    for split, counts in task.read_counts.items():
        if counts:
            _log(f"rnaret finetune: {task_name} {split}: reading left out or changed: "
                 + ", ".join(f"{key} {value}" for key, value in counts.items()))
    _log(f"rnaret finetune: {task_name}: {len(data['train'])} train, {len(data['valid'])} valid examples "
         f"(read in {time.monotonic() - started:.1f} s); init {init}; {dev.type}, {precision}")
    model, kind = initial_model(task, init)
    out = Path(out)
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(out)
    open_run(run_dir, finetune_fingerprint(task, entry, init, precision), restart=restart, name="rnaret finetune")
    result = finetune(task, model, data["train"], data["valid"], device=dev, progress=progress,
                      log_path=run_dir / "train_log.tsv", run_dir=run_dir, precision=precision)
    model.to("cpu")
    save_finetuned(model, task, out, encoder_kind=kind, init=str(init), best=result.best,
                   history=result.history, precision=precision)
    _log(f"rnaret finetune: best valid {result.best.get('metric')} = {result.best.get('value'):.4f} at epoch "
         f"{result.best.get('epoch')} (step {result.best.get('step')}); {time.monotonic() - started:.0f} s")
    return result.best


def load_for_evaluation(checkpoint, task_name: str | None = None,
                        settings: Mapping[str, Any] | None = None) -> tuple[Task, TaskModel]:
    """A fine-tuned checkpoint folder, or a released fine-tuned ``.pth`` (then ``task_name`` is
    required) -> (task, model in eval mode).

    A folder keeps the settings it was trained with, but for those that only change evaluation
    (``_evaluation_overrides``: the protocol among them). A ``.pth`` gives the architecture, k
    (``embed_tokens.weight``) and head shapes; a ``k`` in ``settings`` that is not the file's is
    refused with an InputError naming the file and the key."""
    if is_finetuned_checkpoint(checkpoint):
        task, model, _ = load_finetuned(checkpoint, settings_override=_evaluation_overrides(task_name, settings))
        if task_name is not None and task.name != task_name:
            raise InputError(checkpoint, f"a fine-tuned {task.name} checkpoint, not a {task_name} one")
        return task, model
    if not Path(checkpoint).exists():
        raise InputError(checkpoint, "no such file or folder")
    if task_name is None:
        raise InputError(checkpoint, "not a fine-tuned checkpoint folder; a released .pth needs --task")
    if not is_published_finetuned(checkpoint):
        raise InputError(checkpoint, "neither a fine-tuned checkpoint folder (task.json) nor a released "
                                     "fine-tuned .pth (keys ret.* + classifier.*)")
    from rnaret.checkpoint.published import read_pth
    from rnaret.tokenizer import k_from_vocab_size

    key = "ret.embed_tokens.weight"
    state = read_pth(checkpoint)
    if key not in state or state[key].ndim != 2:
        raise InputError(checkpoint, f"no 2-D {key}: cannot tell the encoder's vocabulary and k")
    try:
        k = k_from_vocab_size(int(state[key].shape[0]))
    except ValueError as exc:
        raise InputError(checkpoint, f"{key}: {exc}") from None
    settings = dict(settings or {})
    if settings.get("k") is not None and int(settings["k"]) != k:
        raise InputError(checkpoint, f"the file is a k={k} model ({key} has {state[key].shape[0]} rows = "
                                     f"4**{k} + 6) but the settings ask for k={settings['k']} (setting 'k')")
    task = get_task(task_name, {**settings, "k": k})
    model = load_published_finetuned(checkpoint, task)
    return task, model


def _evaluation_overrides(task_name: str | None, settings: Mapping[str, Any] | None) -> dict:
    # only settings that change evaluation, never the architecture the checkpoint was trained
    # with; a protocol brings its own evaluation settings (max_len ...) unless given
    from rnaret.tasks.protocol import protocol_settings

    settings = dict(settings or {})
    keep = ("eval_max_tokens", "window", "protocol", "max_len", "min_pair_distance", "threshold")
    out = {key: value for key, value in settings.items() if key in keep}
    if "protocol" in out and task_name is not None:
        layer = protocol_settings(task_name, out["protocol"])
        for key in ("max_len", "min_pair_distance"):
            if out.get(key) is None and key in layer:
                out[key] = layer[key]
    return out


def run_evaluate(checkpoint, entry: Mapping[str, Any], out_dir, *, split: str = "test",
                 task_name: str | None = None, settings: Mapping[str, Any] | None = None,
                 device: str | None = None, progress: bool = True,
                 precision: str | None = None) -> dict:
    """Evaluate a fine-tuned model on one split of a dataset entry; write ``metrics.tsv``,
    ``predictions.tsv`` and the task's figures into ``out_dir``. Returns the metrics, with what
    reading left out or changed (``Task.read_counts``) and the ``protocol`` row.
    precision: fp32, bf16 or auto (``rnaret.precision``); None: bf16 on CUDA, fp32 on CPU."""
    from rnaret.metrics import write_metrics_tsv

    task, model = load_for_evaluation(checkpoint, task_name, settings)
    examples = task.load_dataset(entry, splits=(split,))[split]
    counts = task.read_counts.get(split, {})
    if counts:
        _log(f"rnaret evaluate: {task.name} {split}: reading left out or changed: "
             + ", ".join(f"{key} {value}" for key, value in counts.items()))
    dev = pick_device(device)
    model.to(dev)
    started = time.monotonic()
    rows, metrics = evaluate(task, model, examples, device=dev, progress=progress, desc=f"{task.name} {split}",
                             precision=precision)
    metrics = {**metrics, **counts, "protocol": task.settings["protocol"]}
    out_dir = Path(out_dir)
    task.write_outputs(rows, metrics, out_dir)
    write_metrics_tsv(metrics, out_dir / "metrics.tsv")
    _log(f"rnaret evaluate: {task.name} {split} ({len(rows)} examples, {time.monotonic() - started:.0f} s): "
         + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
    return metrics


def _mapping_argument(value, option: str) -> tuple[dict, str | None]:
    """``--settings``/``--dataset-config`` value -> (mapping, the file it came from or None): a
    JSON object written inline (what the pipeline's rules pass), or a YAML/JSON file."""
    text = str(value)
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(None, f"{option}: not a JSON object ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(None, f"{option}: must be a JSON object")
        return data, None
    return read_mapping(value), str(value)


def _pipeline_plan(data: dict, path):
    """The settings plan of a pipeline config read by a command (its defaults filled)."""
    from rnaret.settings import Plan, validate_config

    return Plan(validate_config(data, path=path))


def dataset_entry(task_name: str, dataset_config=None, dataset: str | None = None,
                  splits: list[str] | tuple[str, ...] = (), labels: list[str] | tuple[str, ...] = ()) -> dict:
    """The dataset entry ``{split: path, ...}`` of a run.

    ``dataset_config``: a YAML/JSON file that is either a pipeline config (its dataset
    ``<task_name>/<dataset>``, resolved exactly as the pipeline resolves it: datasets:, the
    dataset sheet, downloads and archive members) or an entry itself (``{train: ..., test: ...}``,
    or ``{<dataset>: {...}}`` with ``dataset`` given). ``splits``: ``NAME=PATH`` strings that
    add or replace splits (``NAME=PATH#VALUE``: the rows of PATH whose split column is VALUE).
    ``labels``: ``NAME=TABLE`` strings giving split NAME (a FASTA) its side table of labels.
    """
    from rnaret.settings.files import is_pipeline_config

    entry: dict = {}
    if dataset_config is not None:
        data, source = _mapping_argument(dataset_config, "--dataset-config")
        if is_pipeline_config(data):
            plan = _pipeline_plan(data, source)
            by_task = plan.datasets.get(task_name, {})
            if dataset is None or dataset not in by_task:
                raise InputError(dataset_config, f"give --dataset, one of {sorted(by_task)} (datasets.{task_name})")
            entry = by_task[dataset].entry()
        elif dataset is not None:
            if dataset not in data or not isinstance(data[dataset], dict):
                raise InputError(dataset_config, f"no dataset {dataset!r} (keys: {sorted(data)})")
            entry = dict(data[dataset])
        else:
            entry = dict(data)
    for item in splits:
        name, sep, path = str(item).partition("=")
        if not sep or not name or not path:
            raise InputError(None, f"--split must be NAME=PATH or NAME=PATH#VALUE, got {item!r}")
        path, hash_sign, select = path.partition("#")
        entry[name] = {"path": path, "split": select} if hash_sign and select else path
    for item in labels:
        # NAME=TABLE: the side table of labels of the FASTA given as split NAME
        name, sep, table = str(item).partition("=")
        if not sep or not name or not table:
            raise InputError(None, f"--labels must be NAME=TABLE, got {item!r}")
        if name not in entry:
            raise InputError(table, f"--labels {name}=...: no split {name!r} to label (give --split {name}=FASTA)")
        value = entry[name]
        entry[name] = {**value, "labels": table} if isinstance(value, dict) else {"path": value, "labels": table}
    if not entry:
        raise InputError(None, "no dataset: give --dataset-config and/or --split NAME=PATH")
    return entry


def task_settings(task_name: str, settings_file=None, overrides: list[str] | tuple[str, ...] = (),
                  model: str | None = None, protocol: str | None = None) -> dict:
    """Settings of a run: ``settings_file`` (a pipeline config — its ``finetune.preset``,
    ``finetune.<task>.settings`` and ``finetune.<task>.model_settings.<model>``, with the
    schema's defaults, as the pipeline layers them — or a mapping of settings, as a file or as
    inline JSON), then ``KEY=VALUE`` overrides (values read as YAML: ``epochs=2``,
    ``freeze_encoder=true``). ``protocol`` (``--protocol``): switches the settings to that
    protocol before the overrides (``rnaret.tasks.protocol.with_protocol``). Returns the layers;
    ``rnaret.tasks.get_task`` resolves them."""
    import yaml

    from rnaret.settings.files import is_pipeline_config

    settings: dict = {}
    if settings_file is not None:
        data, source = _mapping_argument(settings_file, "--settings")
        if is_pipeline_config(data):
            settings.update(_pipeline_plan(data, source).finetune.layers(task_name, model))
        else:
            settings.update(data)
    if protocol is not None:
        from rnaret.tasks.protocol import with_protocol

        settings = with_protocol(task_name, settings, protocol)
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise InputError(None, f"--set must be KEY=VALUE, got {item!r}")
        settings[key] = _command_line_value(value)
    return settings


def _command_line_value(text: str):
    """A ``--set`` value as YAML reads it, except that a number YAML 1.1 leaves as text (``3e-4``,
    no dot) is a number on the command line, where nobody writes ``3.0e-4``."""
    import yaml

    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity") else value
        except ValueError:
            return value
    return value
