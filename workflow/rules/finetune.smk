# Command: `rnaret finetune`, `rnaret evaluate`
# Module:  rnaret/settings/stages/finetune.py (jobs and paths), rnaret/tasks/ (run.py, finetune.py, one module per task)
# Tests:   tests/tasks/, tests/pipeline/test_finetune_workflow.py
#
# Downstream tasks: fine-tune each configured model on each dataset (the finetune rule: the
# checkpoint folder), then evaluate it on the test split (evaluate_classifier for interaction and
# coding: metrics.tsv, predictions.tsv, ROC figure; evaluate_structure: metrics.tsv, per-sequence
# predictions.tsv, dbn/CT/bpseq, contact maps; evaluate_generic for the generic tasks:
# metrics.tsv, predictions.tsv); released fine-tuned files
# (finetune.<task>.released) are evaluated on the datasets of their entry.
# Each job runs under a protocol (--protocol): the run's `protocol` writes the contract paths
# EVALUATION_DIR = results/{task}/{dataset}/{model}; each protocol of `compare_protocols` writes
# the same jobs under PROTOCOL_EVALUATION_DIR (the *_compared rules, which differ only in where
# they write). Both templates are rnaret.settings.stages.finetune's, used here and by the targets.
# `snakemake EVALUATION_DIR/metrics.tsv` (a path of it) reruns only what is missing or stale:
# deleting metrics.tsv reruns the evaluation alone. Settings: `finetune:` (rnaret.settings).

TRAINED_MODEL = PLAN.finetune.TRAINED_MODEL
EVALUATED_MODEL = PLAN.finetune.EVALUATED_MODEL
EVALUATION = PLAN.finetune.EVALUATION_DIR
COMPARED = PLAN.finetune.PROTOCOL_EVALUATION_DIR
EVALUATION_LOG = PLAN.finetune.EVALUATION_LOG_DIR
COMPARED_LOG = PLAN.finetune.PROTOCOL_EVALUATION_LOG_DIR


rule finetune:
    input:
        unpack(PLAN.finetune.inputs),
    output:
        checkpoint=directory(f"{EVALUATION}/checkpoint"),
    log:
        f"{EVALUATION_LOG}/finetune.log",
    wildcard_constraints:
        task="interaction|coding|structure|sequence-classification|sequence-regression|token-classification|token-regression",
        dataset="[^/]+",
        model=TRAINED_MODEL,
    priority: PLAN.finetune.priority
    conda:
        conda_env(PLAN.model_env("finetune"))
    threads: PLAN.threads("finetune")
    resources:
        **PLAN.resources("finetune"),
    params:
        args=PLAN.finetune.args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret finetune --out {output.checkpoint:q} {params.args} --threads {threads}"
        " > {log:q} 2>&1"


rule evaluate_classifier:
    input:
        unpack(PLAN.finetune.evaluate_inputs),
    output:
        metrics=f"{EVALUATION}/metrics.tsv",
        predictions=f"{EVALUATION}/predictions.tsv",
        roc=report(
            f"{EVALUATION}/roc.png",
            caption="../report/roc_curve.rst",
            category="ROC curves",
            subcategory="{task}",
            labels={
                "task": "{task}",
                "dataset": "{dataset}",
                "model": "{model}",
                "protocol": PLAN.protocol,
            },
        ),
    log:
        f"{EVALUATION_LOG}/evaluate.log",
    wildcard_constraints:
        task="interaction|coding",
        dataset="[^/]+",
        model=EVALUATED_MODEL,
    conda:
        conda_env(PLAN.model_env("finetune"))
    threads: PLAN.threads("finetune")
    resources:
        **PLAN.resources("finetune"),
    params:
        args=PLAN.finetune.evaluate_args,
        out=PLAN.finetune.evaluation_out,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret evaluate --out {params.out:q} {params.args} --threads {threads} > {log:q} 2>&1"


rule evaluate_structure:
    input:
        unpack(PLAN.finetune.evaluate_inputs),
    output:
        metrics=f"{EVALUATION}/metrics.tsv",
        predictions=f"{EVALUATION}/predictions.tsv",
        dbn=f"{EVALUATION}/predictions.dbn",
        ct=f"{EVALUATION}/predictions.ct",
        bpseq=directory(f"{EVALUATION}/predictions_bpseq"),
        contact_maps=report(
            f"{EVALUATION}/contact_maps.png",
            caption="../report/contact_maps.rst",
            category="Secondary structure",
            subcategory="{dataset}",
            labels={
                "model": "{model}",
                "figure": "contact maps",
                "protocol": PLAN.protocol,
            },
        ),
    log:
        f"{EVALUATION_LOG}/evaluate.log",
    wildcard_constraints:
        task="structure",
        dataset="[^/]+",
        model=EVALUATED_MODEL,
    conda:
        conda_env(PLAN.model_env("finetune"))
    threads: PLAN.threads("finetune")
    resources:
        **PLAN.resources("finetune"),
    params:
        args=PLAN.finetune.evaluate_args,
        out=PLAN.finetune.evaluation_out,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret evaluate --out {params.out:q} {params.args} --threads {threads} > {log:q} 2>&1"


# the same jobs under each protocol of compare_protocols (the `protocol` wildcard)
use rule finetune as finetune_compared with:
    output:
        checkpoint=directory(f"{COMPARED}/checkpoint"),
    log:
        f"{COMPARED_LOG}/finetune.log",
    wildcard_constraints:
        protocol=PLAN.protocol_pattern(),
        task="interaction|coding|structure",
        dataset="[^/]+",
        model=TRAINED_MODEL,


use rule evaluate_classifier as evaluate_classifier_compared with:
    output:
        metrics=f"{COMPARED}/metrics.tsv",
        predictions=f"{COMPARED}/predictions.tsv",
        roc=report(
            f"{COMPARED}/roc.png",
            caption="../report/roc_curve.rst",
            category="ROC curves",
            subcategory="{task}",
            labels={
                "task": "{task}",
                "dataset": "{dataset}",
                "model": "{model}",
                "protocol": "{protocol}",
            },
        ),
    log:
        f"{COMPARED_LOG}/evaluate.log",
    wildcard_constraints:
        protocol=PLAN.protocol_pattern(),
        task="interaction|coding",
        dataset="[^/]+",
        model=EVALUATED_MODEL,


use rule evaluate_structure as evaluate_structure_compared with:
    output:
        metrics=f"{COMPARED}/metrics.tsv",
        predictions=f"{COMPARED}/predictions.tsv",
        dbn=f"{COMPARED}/predictions.dbn",
        ct=f"{COMPARED}/predictions.ct",
        bpseq=directory(f"{COMPARED}/predictions_bpseq"),
        contact_maps=report(
            f"{COMPARED}/contact_maps.png",
            caption="../report/contact_maps.rst",
            category="Secondary structure",
            subcategory="{dataset}",
            labels={
                "model": "{model}",
                "figure": "contact maps",
                "protocol": "{protocol}",
            },
        ),
    log:
        f"{COMPARED_LOG}/evaluate.log",
    wildcard_constraints:
        protocol=PLAN.protocol_pattern(),
        task="structure",
        dataset="[^/]+",
        model=EVALUATED_MODEL,


# The generic tasks (any labelled table: rnaret.tasks.generic): metrics.tsv and predictions.tsv.
rule evaluate_generic:
    input:
        unpack(PLAN.finetune.evaluate_inputs),
    output:
        metrics=f"{EVALUATION}/metrics.tsv",
        predictions=f"{EVALUATION}/predictions.tsv",
    log:
        f"{EVALUATION_LOG}/evaluate.log",
    wildcard_constraints:
        task="sequence-classification|sequence-regression|token-classification|token-regression",
        dataset="[^/]+",
        model=TRAINED_MODEL,
    conda:
        conda_env(PLAN.model_env("finetune"))
    threads: PLAN.threads("finetune")
    resources:
        **PLAN.resources("finetune"),
    params:
        args=PLAN.finetune.evaluate_args,
        out=PLAN.finetune.evaluation_out,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret evaluate --out {params.out:q} {params.args} --threads {threads} > {log:q} 2>&1"
