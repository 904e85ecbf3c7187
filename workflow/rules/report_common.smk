# Helper functions of workflow/rules/report.smk (kept apart from the rules, as --lint asks).

import os
import re
import shlex

# results/{task}/{dataset}/{model}/metrics.tsv: one evaluation (DESIGN.md contract)
EVALUATION = re.compile(
    r"results/(interaction|structure|coding)/([^/]+)/([^/]+)/metrics\.tsv"
)
REPORT_TASKS = ("structure", "interaction", "coding")
STRUCTURE_FIGURE_INDEX = "results/report/structure/figures.txt"


def report_settings():
    """The config's report block with defaults filled in."""
    settings = {
        "published_results": "resources/published_results.tsv",
        "contact_map_examples": 4,
        "length_scaling": {},
    }
    settings.update(config.get("report") or {})
    scaling = {
        "models": ["rnaret-chunkwise", "rnaret-parallel", "transformer"],
        "presets": ["laptop"],
        "lengths": [256, 512, 1024, 2048, 4096, 8192],
        "repeats": 2,
        "threads": 2,
        "max_seconds": 15,
    }
    scaling.update(settings["length_scaling"] or {})
    settings["length_scaling"] = scaling
    return settings


def evaluation_metrics(wildcards=None):
    """Every evaluation's metrics.tsv among the targets the stages registered for `rule all`
    (the run's explicit list: the tables never glob the results folder)."""
    stages = [s for s in _TARGETS if s != "report"]
    targets = [t for s in stages for t in _TARGETS[s]]
    found = [str(t) for t in targets if EVALUATION.fullmatch(str(t))]
    return sorted(
        dict.fromkeys(found),
        key=lambda t: REPORT_TASKS.index(EVALUATION.fullmatch(t).group(1)),
    )


def structure_evaluations():
    """(dataset, model) of every structure evaluation of the run."""
    return [
        EVALUATION.fullmatch(t).groups()[1:]
        for t in evaluation_metrics()
        if t.startswith("results/structure/")
    ]


def table_outputs(extension):
    """results/tables/{task}.{extension} of every task, as a dict of named outputs."""
    return {task: f"results/tables/{task}.{extension}" for task in REPORT_TASKS}


def table_dir(wildcards, output):
    """The folder of the tables (that of the outputs), for `rnaret tables --output-dir`."""
    return os.path.dirname(output.structure_tsv)


def structure_truth(wildcards):
    """The structure dataset's test split (local path; the download rule makes URL sources)."""
    return dataset_path("structure", wildcards.dataset, "test")


def structure_per_sequence(wildcards):
    """The evaluation's per-sequence scores: ViennaRNA's per_sequence.tsv (MFE and MEA F1), the
    fine-tuned models' predictions.tsv (F1 per sequence, written by their evaluation).
    """
    name = "per_sequence.tsv" if wildcards.model == "vienna" else "predictions.tsv"
    return f"results/structure/{wildcards.dataset}/{wildcards.model}/{name}"


def structure_split_args(wildcards):
    """`--split VALUE` when the test split is the rows of a table selected by its split column."""
    row_split = dataset_row_split("structure", wildcards.dataset, "test")
    return "" if row_split is None else f"--split {shlex.quote(row_split)}"


def structure_figure_targets():
    """The F1 distribution of every structure evaluation, and ViennaRNA's contact maps."""
    targets = []
    for dataset, model in structure_evaluations():
        targets.append(
            f"results/report/structure/{dataset}/{model}/f1_distribution.png"
        )
        if model == "vienna":
            targets.append(
                f"results/report/structure/{dataset}/vienna/contact_maps.png"
            )
    return targets


def structure_figure_inputs(wildcards):
    """Input function of the figure index (evaluated when the DAG is built, after every stage has
    registered its evaluations, whatever the order of the includes)."""
    return structure_figure_targets()


def report_targets():
    """Final targets of the report stage: the tables, the length scaling and the index of the
    structure figures (which requests every evaluation's figures)."""
    return (
        list(table_outputs("tsv").values())
        + list(table_outputs("md").values())
        + list(table_outputs("html").values())
        + ["results/tables/length_scaling.tsv", "results/tables/length_scaling.png"]
        + [STRUCTURE_FIGURE_INDEX]
    )
