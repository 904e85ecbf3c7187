"""The fine-tuning and evaluation stage (``workflow/rules/finetune.smk``): each model of
``finetune.<task>.models`` fine-tuned on each dataset with a train split, then evaluated on every
test split it is for; released fine-tuned files (``finetune.<task>.released``) evaluated on the
datasets of their entry. Every job runs under a protocol: the run's writes :data:`EVALUATION_DIR`,
each of ``compare_protocols`` the same jobs under :data:`PROTOCOL_EVALUATION_DIR`."""
from __future__ import annotations

import re

from rnaret.settings.dataset_sources import Dataset
from rnaret.settings.errors import SettingsError, key_path
from rnaret.settings.sources import FileRef, resolve_file
from rnaret.settings.stages.base import PRIORITY, Stage, compact_json, join, labels_option
from rnaret.settings.stages.pretrain import PRETRAINED_MODEL, model_k, pretrain_checkpoint
from rnaret.tasks.settings import GENERIC_TASKS  # the generic tasks' names (torch-free)

FINETUNE_TASKS = ("interaction", "coding", "structure") + GENERIC_TASKS  # the order of the finetune targets
PAPER_TASKS = ("structure", "interaction", "coding")  # a table each, evaluated or not
ONEHOT = "onehot"
TRAINED_MODEL = rf"{PRETRAINED_MODEL}|{ONEHOT}"
# a released fine-tuned file, evaluated as released-NAME (NAME: its finetune.<task>.released key)
RELEASED_MODEL = r"released-[A-Za-z0-9_.]+"
# One evaluation (and its fine-tuned checkpoint/) under the run's protocol: the contract path.
EVALUATION_DIR = "results/{task}/{dataset}/{model}"
# The same evaluation under another protocol of compare_protocols: its own tree, so that the
# contract path always means one evaluation under the run's protocol.
PROTOCOL_EVALUATION_DIR = "results/protocols/{protocol}/{task}/{dataset}/{model}"
# the logs of those jobs, in the same layout
EVALUATION_LOG_DIR = "logs/{task}/{dataset}/{model}"
PROTOCOL_EVALUATION_LOG_DIR = "logs/protocols/{protocol}/{task}/{dataset}/{model}"
FINETUNE_PRIORITY = {"coding": 2}  # the longest fine-tunes first (base.PRIORITY)
_PUBLISHED_REPLACED = (
    "the form `published: {{k1: FILE}}` evaluated a released file on every test split of the task; "
    "write each released file as an entry with the datasets it was trained for instead: "
    "finetune.{task}.released: {{NAME: {{file: FILE, datasets: [DATASET, ...]}}}} (evaluated as the "
    "model released-NAME; docs/protocol-pipeline.md), and remove published-k* from finetune.{task}.models")


def evaluation_dir(task: str, dataset: str, model: str) -> str:
    """results/{task}/{dataset}/{model}: one evaluation under the run's protocol (the results
    layout: README.md; :data:`EVALUATION_DIR`)."""
    return EVALUATION_DIR.format(task=task, dataset=dataset, model=model)


def released_model(name: str) -> str:
    """The model name of the released file of ``finetune.<task>.released.NAME``."""
    return f"released-{name}"


class Finetune(Stage):
    """The fine-tuning and evaluation jobs (``evaluations``: (task, dataset, model) of each, in
    the targets' order; checked when the stage is built)."""

    EVALUATION_DIR = EVALUATION_DIR
    PROTOCOL_EVALUATION_DIR = PROTOCOL_EVALUATION_DIR
    EVALUATION_LOG_DIR = EVALUATION_LOG_DIR
    PROTOCOL_EVALUATION_LOG_DIR = PROTOCOL_EVALUATION_LOG_DIR
    TRAINED_MODEL = TRAINED_MODEL
    EVALUATED_MODEL = f"{TRAINED_MODEL}|{RELEASED_MODEL}"

    def __init__(self, plan):
        super().__init__(plan)
        self.evaluations: list[tuple[str, str, str]] = self._plan_evaluations()

    def job_protocol(self, wildcards) -> str:
        """The protocol of a fine-tuning or evaluation job: its ``protocol`` wildcard (the rules of
        :data:`PROTOCOL_EVALUATION_DIR`), else the run's."""
        return getattr(wildcards, "protocol", None) or self.plan.protocol

    @staticmethod
    def priority(wildcards) -> int:
        """The scheduling priority of a fine-tune job: :data:`FINETUNE_PRIORITY` of its task, else
        the stage's."""
        return FINETUNE_PRIORITY.get(wildcards.task, PRIORITY["finetune"])

    def evaluation_dir(self, task: str, dataset: str, model: str, protocol: str | None = None) -> str:
        """The folder of one evaluation (and of its fine-tuned checkpoint/) under ``protocol``:
        :data:`EVALUATION_DIR` for the run's protocol (None), :data:`PROTOCOL_EVALUATION_DIR` for
        another."""
        if protocol is None or protocol == self.plan.protocol:
            return evaluation_dir(task, dataset, model)
        return PROTOCOL_EVALUATION_DIR.format(protocol=protocol, task=task, dataset=dataset, model=model)

    def evaluation_out(self, wildcards, output) -> str:
        """``--out`` of an evaluation: the folder of its metrics.tsv (the job's evaluation_dir)."""
        return self.evaluation_dir(wildcards.task, wildcards.dataset, wildcards.model, self.job_protocol(wildcards))

    def protocol_precision(self, protocol: str) -> str:
        """``--precision`` of a fine-tuning or evaluation under ``protocol``: fp32 under
        ``published`` (the published scripts fine-tune and evaluate in float32), else the
        top-level ``precision``."""
        return "fp32" if protocol == "published" else self.plan.precision

    # ------------------------------------------------------------------ fine-tuning

    def layers(self, task: str, model: str | None) -> dict:
        """The settings layers of a (task, model) run: ``{"preset": finetune.preset}``, then
        ``finetune.<task>.settings``, then ``finetune.<task>.model_settings.<model>``."""
        block = self.config["finetune"][task]
        layers = {"preset": self.config["finetune"]["preset"], **(block.get("settings") or {})}
        if model is not None:
            layers.update((block.get("model_settings") or {}).get(model) or {})
        return layers

    def settings(self, task: str, model: str | None, protocol: str | None = None) -> dict:
        """Every task setting of a (task, model) run, as the run uses them; under ``protocol``
        resolved with
        that protocol's settings under the config's own, the k kept at the config's (the model's
        k: a protocol changes what is computed, not which model runs)."""
        from rnaret.tasks.settings import resolve_task_settings

        def named(exc: ValueError, *where) -> SettingsError:
            # a bound's error names the setting itself: finetune.coding.settings.epochs
            if isinstance(exc, SettingsError) and exc.key:
                return SettingsError(key_path(*where, exc.key), exc.bare)
            return SettingsError(key_path(*where), str(exc))

        try:
            resolved = resolve_task_settings(task, self.layers(task, None))
        except ValueError as exc:
            raise named(exc, "finetune", task, "settings") from None
        if model is not None:
            try:
                resolved = resolve_task_settings(task, self.layers(task, model))
            except ValueError as exc:
                raise named(exc, "finetune", task, "model_settings", model) from None
        if protocol is None:
            return resolved
        layers = {**self.layers(task, model), "protocol": protocol, "k": resolved["k"]}
        try:
            return resolve_task_settings(task, layers)
        except ValueError as exc:
            where = ("settings",) if model is None else ("model_settings", model)
            raise named(exc, "finetune", task, *where) from None

    def init(self, model: str) -> FileRef | None:
        """What a fine-tuning starts from: the model's pretraining checkpoint, or its released
        weights (``pretrain.init_from``); None for the one-hot control."""
        if model == ONEHOT:
            return None
        released = self.plan.pretrain.init_from(model)
        if released is not None:
            return released
        checkpoint = pretrain_checkpoint(model)
        return FileRef(path=checkpoint, depends=checkpoint)

    def _dataset(self, wildcards) -> Dataset:
        dataset = self.plan.dataset(wildcards.task, wildcards.dataset)
        if not dataset.trained:
            raise SettingsError(key_path("datasets", wildcards.task, wildcards.dataset),
                                "has no train split to fine-tune on")
        return dataset

    def inputs(self, wildcards) -> dict:
        """The starting weights (none for onehot) and the train/valid files."""
        dataset = self._dataset(wildcards)
        inputs = {split: dataset.splits[split].input for split in ("train", "valid") if split in dataset.splits}
        inputs.update({f"{split}_labels": dataset.splits[split].labels.depends for split in ("train", "valid")
                       if split in dataset.splits and dataset.splits[split].labels is not None})
        init = self.init(wildcards.model)
        if init is not None:
            inputs["init"] = init.depends
        return inputs

    def args(self, wildcards) -> str:
        """`rnaret finetune` options: task, init, splits, every resolved setting, the job's
        protocol, device, precision."""
        task, model = wildcards.task, wildcards.model
        dataset = self._dataset(wildcards)
        init = self.init(model)
        args = ["--task", task, "--init", ONEHOT if init is None else init.path]
        for split in ("train", "valid"):
            if split in dataset.splits:
                args += ["--split", dataset.splits[split].argument()] + labels_option(dataset.splits[split])
        protocol = self.job_protocol(wildcards)
        args += ["--settings", compact_json(self.settings(task, model, protocol)), "--protocol", protocol,
                 "--device", self.plan.device("finetune"), "--precision", self.protocol_precision(protocol)]
        return join(args)

    # ------------------------------------------------------------------ evaluation

    def released(self, task: str) -> dict[str, dict]:
        """The released fine-tuned files of a task (``finetune.<task>.released``): model name
        (``released-NAME``) -> ``{"key", "file": FileRef, "datasets", "settings"}``. Raises
        ``SettingsError`` for the former ``published:`` form and for a dataset that is not one
        of the task's test sets, naming the key."""
        block = self.config["finetune"][task]
        if block.get("published") is not None:
            raise SettingsError(key_path("finetune", task, "published"), _PUBLISHED_REPLACED.format(task=task))
        datasets = self.plan.datasets.get(task, {})
        out = {}
        for name, entry in (block.get("released") or {}).items():
            key = key_path("finetune", task, "released", name)
            for i, dataset in enumerate(entry["datasets"]):
                if dataset not in datasets or not datasets[dataset].has("test"):
                    known = ", ".join(n for n, d in datasets.items() if d.has("test")) or "none"
                    raise SettingsError(key_path("finetune", task, "released", name, "datasets", i),
                                        f"no {task} dataset {dataset!r} with a test split (known: {known})")
            out[released_model(name)] = {"key": key,
                                         "file": resolve_file(entry["file"], f"{key}.file", self.plan.archive_entries),
                                         "datasets": list(entry["datasets"]),
                                         "settings": dict(entry.get("settings") or {})}
        return out

    def checkpoint(self, task: str, dataset: str, model: str, protocol: str | None = None) -> FileRef:
        """The model an evaluation under ``protocol`` (None: the run's) scores: the checkpoint
        fine-tuned under that protocol on the dataset (or on its ``finetuned_on``), or a released
        fine-tuned file (``released-NAME``)."""
        if re.fullmatch(RELEASED_MODEL, model):
            return self.released(task)[model]["file"]
        source = self.plan.dataset(task, dataset).source
        checkpoint = f"{self.evaluation_dir(task, source, model, protocol)}/checkpoint"
        return FileRef(path=checkpoint, depends=checkpoint)

    def evaluate_inputs(self, wildcards) -> dict:
        """The model to evaluate and the test file."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        test = self.plan.split(task, dataset, "test")
        return {"checkpoint": self.checkpoint(task, dataset, model, self.job_protocol(wildcards)).depends,
                "test": test.input, **({"test_labels": test.labels.depends} if test.labels is not None else {})}

    def evaluate_args(self, wildcards) -> str:
        """`rnaret evaluate` options: checkpoint, task, test split, protocol, device, precision;
        for a released file (a .pth, not a checkpoint folder) the task's resolved settings with
        the entry's own over them, without k (the command reads the k from the file)."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        protocol = self.job_protocol(wildcards)
        test = self.plan.split(task, dataset, "test")
        args = ["--checkpoint", self.checkpoint(task, dataset, model, protocol).path, "--task", task,
                "--split", test.argument(), *labels_option(test)]
        if re.fullmatch(RELEASED_MODEL, model):
            entry = self.released(task)[model]
            settings = self.settings(task, None, protocol)
            if "k" not in entry["settings"]:
                settings.pop("k", None)
            args += ["--settings", compact_json({**settings, **entry["settings"]})]
        args += ["--protocol", protocol, "--device", self.plan.device("finetune"),
                 "--precision", self.protocol_precision(protocol)]
        return join(args)

    def _plan_evaluations(self) -> list[tuple[str, str, str]]:
        """(task, dataset, model) of every evaluation: each model of ``finetune.<task>.models`` on
        each dataset with a test split whose own (or ``finetuned_on``) dataset has a train split,
        then each released file on the datasets of its entry. Model-major order within a task, as
        the targets list them. The same evaluations run under every protocol of the run."""
        out = []
        for task in FINETUNE_TASKS:
            for i, model in enumerate(self.config["finetune"][task]["models"]):
                if re.fullmatch(r"published-k[135]", model):
                    raise SettingsError(key_path("finetune", task, "models", i),
                                        f"{model} is no longer a model: released files are entries of "
                                        f"finetune.{task}.released, evaluated without being listed here "
                                        "(docs/protocol-pipeline.md)")
                if model != ONEHOT:
                    run_k = self.settings(task, model)["k"]
                    if model_k(model) != run_k:
                        raise SettingsError(key_path("finetune", task, "models"),
                                            f"{model} is a k={model_k(model)} model but the {task} task is set "
                                            f"to k={run_k} (finetune.{task}.settings.k)")
                for name, dataset in self.plan.datasets.get(task, {}).items():
                    if dataset.has("test") and self.plan.datasets[task][dataset.source].trained:
                        out.append((task, name, model))
            for model, entry in self.released(task).items():
                out += [(task, name, model) for name in entry["datasets"]]
        return out

    def protocol_evaluations(self) -> list[tuple[str, str, str, str]]:
        """(protocol, task, dataset, model) of every evaluation: each of the run's under its
        protocol, and those of the paper tasks again under each protocol of ``compare_protocols``
        (the generic tasks have no published protocol to compare with)."""
        return [(protocol, *e) for protocol in self.plan.protocols() for e in self.evaluations
                if protocol == self.plan.protocol or e[0] in PAPER_TASKS]

    def metrics(self) -> list[tuple[str, str]]:
        """(task, metrics.tsv) of every evaluation under every protocol of the run, in the
        targets' order."""
        return [(task, f"{self.evaluation_dir(task, dataset, model, protocol)}/metrics.tsv")
                for protocol, task, dataset, model in self.protocol_evaluations()]

    def targets(self) -> list[str]:
        """metrics.tsv of every evaluation under every protocol of the run (the run's protocol
        first), in the targets' order."""
        return [path for _task, path in self.metrics()]
