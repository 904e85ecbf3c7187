# Helper functions of workflow/rules/report.smk (kept apart from the rules, as --lint asks).

import os
import re
import shlex

# results/{task}/{dataset}/{model}/metrics.tsv: one evaluation (DESIGN.md contract)
EVALUATION = re.compile(r"results/(interaction|structure|coding)/([^/]+)/([^/]+)/metrics\.tsv")
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
    return sorted(dict.fromkeys(found), key=lambda t: REPORT_TASKS.index(EVALUATION.fullmatch(t).group(1)))


def structure_evaluations():
    """(dataset, model) of every structure evaluation of the run."""
    return [EVALUATION.fullmatch(t).groups()[1:] for t in evaluation_metrics() if t.startswith("results/structure/")]


def table_outputs(extension):
    """results/tables/{task}.{extension} of every task, as a dict of named outputs."""
    return {task: f"results/tables/{task}.{extension}" for task in REPORT_TASKS}


def table_dir(wildcards, output):
    """The folder of the tables (that of the outputs), for `rnaret tables --output-dir`."""
    return os.path.dirname(output.structure_tsv)


def structure_truth(wildcards):
    """The structure dataset's test split (local path; the download rule makes URL sources)."""
    return dataset_path("structure", wildcards.dataset, "test")


def structure_predictions(wildcards):
    """The evaluation's predicted structures (.dbn; ViennaRNA's MFE structures for `vienna`)."""
    return f"results/structure/{wildcards.dataset}/{wildcards.model}/predictions.dbn"


def structure_prediction_label(wildcards):
    """The label of the predicted structures in the figures: ViennaRNA's are its MFE structures."""
    return "MFE" if wildcards.model == "vienna" else wildcards.model


def structure_per_sequence(wildcards):
    """ViennaRNA's per-sequence scores (MFE and MEA F1); other models' F1 come from predictions."""
    if wildcards.model == "vienna":
        return [f"results/structure/{wildcards.dataset}/vienna/per_sequence.tsv"]
    return []


def structure_figure_args(wildcards, input):
    """Extra arguments of `rnaret structure-figures`: the test rows' split, the per-sequence TSV."""
    args = []
    row_split = dataset_row_split("structure", wildcards.dataset, "test")
    if row_split is not None:
        args += ["--split", row_split]
    if input.per_sequence:
        args += ["--per-sequence", str(input.per_sequence)]
    return " ".join(shlex.quote(a) for a in args)


def structure_figure_targets():
    """The F1-distribution and contact-map figures of every structure evaluation."""
    return [
        f"results/report/structure/{dataset}/{model}/{name}.png"
        for dataset, model in structure_evaluations()
        for name in ("f1_distribution", "contact_maps")
    ]


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
