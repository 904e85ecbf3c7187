# Helper functions of workflow/rules/baselines.smk (kept apart from the rules, as --lint asks).

import os
import re
import shlex


def vienna_settings():
    """The config's baselines.vienna block with defaults filled in."""
    settings = {
        "threads": 2,
        "method": "both",
        "gamma": 1.0,
        "max_bp_span": None,
        "mem_mb": 4000,
        "runtime": 240,
    }
    settings.update((config.get("baselines") or {}).get("vienna") or {})
    return settings


def vienna_test_input(wildcards):
    """Local path of the structure dataset's test split (the download rule makes URL sources)."""
    return dataset_path("structure", wildcards.dataset, "test")


def vienna_extra_args(wildcards):
    """`--split VALUE` for {path: table, split: value} entries, `--max-bp-span N` when configured."""
    args = []
    row_split = dataset_row_split("structure", wildcards.dataset, "test")
    if row_split is not None:
        args += ["--split", row_split]
    span = vienna_settings()["max_bp_span"]
    if span is not None:
        args += ["--max-bp-span", str(int(span))]
    return " ".join(shlex.quote(a) for a in args)


def vienna_out_dir(wildcards, output):
    """The evaluation's folder (results/structure/{dataset}/vienna), the outputs' parent."""
    return os.path.dirname(output.metrics)


def vienna_targets():
    """results/structure/{dataset}/vienna/metrics.tsv for every structure dataset with a test split."""
    return [
        f"results/structure/{dataset}/vienna/metrics.tsv"
        for dataset in datasets_of("structure")
        if "test" in dataset_entry("structure", dataset)
    ]
