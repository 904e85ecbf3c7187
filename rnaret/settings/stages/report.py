"""The report stage (``workflow/rules/report.smk``): one table per task from every evaluation's
metrics.tsv and the published figures, the encoder length scaling, the per-sequence F1 of every
structure evaluation and ViennaRNA's contact maps, the leakage figures and the homology summary."""
from __future__ import annotations

from rnaret.settings.stages.baselines import VIENNA
from rnaret.settings.stages.base import Stage, join
from rnaret.settings.stages.finetune import GENERIC_TASKS, PAPER_TASKS, evaluation_dir

REPORT_TASKS = ("structure", "interaction", "coding") + GENERIC_TASKS  # the order of the tables' inputs
TABLES_DIR = "results/tables"  # {task}.tsv/.md/.html and length_scaling.*
REPORT_DIR = "results/report"  # the figures, and the paper's analyses (stages.analyses)
STRUCTURE_FIGURES = f"{REPORT_DIR}/structure"


class Report(Stage):
    """The tables and figures jobs."""

    TABLES_DIR = TABLES_DIR
    STRUCTURE_FIGURE_DIR = f"{STRUCTURE_FIGURES}/{{dataset}}/{{model}}"
    STRUCTURE_FIGURE_INDEX = f"{STRUCTURE_FIGURES}/figures.txt"

    def evaluations(self, wildcards=None) -> list[str]:
        """Every evaluation's metrics.tsv (the models' under each protocol of the run, then
        ViennaRNA's), grouped by task in structure, interaction, coding order: the tables' inputs
        (never a glob of results/)."""
        found = self.plan.finetune.metrics() + [("structure", path) for path in self.plan.baselines.targets()]
        ordered = sorted(found, key=lambda item: REPORT_TASKS.index(item[0]))
        return list(dict.fromkeys(path for _task, path in ordered))

    def published_results(self) -> str:
        """The TSV of published figures the tables add."""
        return self.config["report"]["published_results"]

    def structure_evaluations(self) -> list[tuple[str, str]]:
        """(dataset, model) of every structure evaluation under the run's protocol (ViennaRNA's
        included): the evaluations the report's structure figures show."""
        models = [(dataset, model) for task, dataset, model in self.plan.finetune.evaluations if task == "structure"]
        return list(dict.fromkeys(models + [(name, VIENNA) for name in self.plan.baselines.datasets()]))

    def structure_truth(self, wildcards) -> str:
        """The structure dataset's test file (the input of its figures)."""
        return self.plan.split("structure", wildcards.dataset, "test").input

    def structure_truth_args(self, wildcards) -> str:
        """`rnaret structure-figures` options naming the true structures: --truth and --split."""
        test = self.plan.split("structure", wildcards.dataset, "test")
        args = ["--truth", test.path]
        if test.row_split is not None:
            args += ["--split", test.row_split]
        return join(args)

    @staticmethod
    def structure_per_sequence(wildcards) -> str:
        """The evaluation's per-sequence scores: ViennaRNA's per_sequence.tsv, the models'
        predictions.tsv."""
        name = "per_sequence.tsv" if wildcards.model == VIENNA else "predictions.tsv"
        return f"{evaluation_dir('structure', wildcards.dataset, wildcards.model)}/{name}"

    def contact_map_examples(self) -> int:
        """Sequences in each contact-map figure."""
        return int(self.config["report"]["contact_map_examples"])

    def structure_figure_targets(self, wildcards=None) -> list[str]:
        """The F1 distribution of every structure evaluation, and ViennaRNA's contact maps."""
        targets = []
        for dataset, model in self.structure_evaluations():
            folder = self.STRUCTURE_FIGURE_DIR.format(dataset=dataset, model=model)
            targets.append(f"{folder}/f1_distribution.png")
            if model == VIENNA:
                targets.append(f"{folder}/contact_maps.png")
        return targets

    def length_scaling_threads(self) -> int:
        """Threads of the length-scaling measurement (a measurement condition: passed as a tracked
        option, so that changing it reruns the measurement)."""
        return int(self.config["report"]["length_scaling"]["threads"])

    def length_scaling_args(self, wildcards=None) -> str:
        """`rnaret scaling` options from ``report.length_scaling``."""
        scaling = self.config["report"]["length_scaling"]
        return join(["--models", *scaling["models"], "--presets", *scaling["presets"],
                     "--lengths", ",".join(str(n) for n in scaling["lengths"]), "--repeats", scaling["repeats"],
                     "--threads", scaling["threads"], "--max-seconds", scaling["max_seconds"]])

    def tasks(self) -> list[str]:
        """The tasks that get a table: the paper's three always, a generic task when the run
        evaluates a dataset of it."""
        evaluated = {task for task, _, _ in self.plan.finetune.evaluations}
        return [task for task in REPORT_TASKS if task in PAPER_TASKS or task in evaluated]

    def tables_args(self, wildcards=None) -> str:
        """`rnaret tables` option naming the tables written (``tasks``)."""
        return join(["--tasks", *self.tasks()])

    def targets(self) -> list[str]:
        """The tables (TSV, Markdown, HTML per task), the length scaling and the figure index."""
        return ([f"{TABLES_DIR}/{task}.{ext}" for ext in ("tsv", "md", "html") for task in self.tasks()]
                + [f"{TABLES_DIR}/length_scaling.tsv", f"{TABLES_DIR}/length_scaling.png",
                   self.STRUCTURE_FIGURE_INDEX])
