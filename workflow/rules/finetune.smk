# Downstream tasks: fine-tune each configured model on each dataset (rule finetune: the
# checkpoint folder, best on the validation split), then evaluate it on the test split (rule
# evaluate_classifier for interaction and coding: metrics.tsv, predictions.tsv, ROC figure;
# evaluate_structure: metrics.tsv, per-sequence predictions.tsv, dbn/CT/bpseq, contact maps;
# evaluate_generic for the generic tasks: metrics.tsv, predictions.tsv).
# `snakemake results/{task}/{dataset}/{model}/metrics.tsv` reruns only what is missing or stale:
# deleting metrics.tsv reruns the evaluation alone. Settings: `finetune:` (rnaret.settings).

TRAINED_MODEL = rnaret_settings.plan.TRAINED_MODEL
EVALUATED_MODEL = f"{TRAINED_MODEL}|{rnaret_settings.plan.PUBLISHED_MODEL}"


rule finetune:
    input:
        unpack(PLAN.finetune_inputs),
    output:
        checkpoint=directory("results/{task}/{dataset}/{model}/checkpoint"),
    log:
        "logs/{task}/{dataset}/{model}/finetune.log",
    wildcard_constraints:
        task="interaction|coding|structure|sequence-classification|sequence-regression|token-classification|token-regression",
        dataset="[^/]+",
        model=TRAINED_MODEL,
    priority: PLAN.finetune_priority
    conda:
        conda_env(PLAN.model_env("finetune"))
    threads: PLAN.threads("finetune")
    resources:
        **PLAN.resources("finetune"),
    params:
        args=PLAN.finetune_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret finetune --out {output.checkpoint:q} {params.args} --threads {threads}"
        " > {log:q} 2>&1"


rule evaluate_classifier:
    input:
        unpack(PLAN.evaluate_inputs),
    output:
        metrics="results/{task}/{dataset}/{model}/metrics.tsv",
        predictions="results/{task}/{dataset}/{model}/predictions.tsv",
        roc=report(
            "results/{task}/{dataset}/{model}/roc.png",
            caption="../report/roc_curve.rst",
            category="ROC curves",
            subcategory="{task}",
            labels={"task": "{task}", "dataset": "{dataset}", "model": "{model}"},
        ),
    log:
        "logs/{task}/{dataset}/{model}/evaluate.log",
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
        args=PLAN.evaluate_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret evaluate --out results/{wildcards.task}/{wildcards.dataset}/{wildcards.model}"
        " {params.args} --threads {threads} > {log:q} 2>&1"


rule evaluate_structure:
    input:
        unpack(PLAN.evaluate_inputs),
    output:
        metrics="results/{task}/{dataset}/{model}/metrics.tsv",
        predictions="results/{task}/{dataset}/{model}/predictions.tsv",
        dbn="results/{task}/{dataset}/{model}/predictions.dbn",
        ct="results/{task}/{dataset}/{model}/predictions.ct",
        bpseq=directory("results/{task}/{dataset}/{model}/predictions_bpseq"),
        contact_maps=report(
            "results/{task}/{dataset}/{model}/contact_maps.png",
            caption="../report/contact_maps.rst",
            category="Secondary structure",
            subcategory="{dataset}",
            labels={"model": "{model}", "figure": "contact maps"},
        ),
    log:
        "logs/{task}/{dataset}/{model}/evaluate.log",
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
        args=PLAN.evaluate_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret evaluate --out results/{wildcards.task}/{wildcards.dataset}/{wildcards.model}"
        " {params.args} --threads {threads} > {log:q} 2>&1"


# The generic tasks (any labelled table: rnaret.tasks.generic): metrics.tsv and predictions.tsv.
rule evaluate_generic:
    input:
        unpack(PLAN.evaluate_inputs),
    output:
        metrics="results/{task}/{dataset}/{model}/metrics.tsv",
        predictions="results/{task}/{dataset}/{model}/predictions.tsv",
    log:
        "logs/{task}/{dataset}/{model}/evaluate.log",
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
        args=PLAN.evaluate_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret evaluate --out results/{wildcards.task}/{wildcards.dataset}/{wildcards.model}"
        " {params.args} --threads {threads} > {log:q} 2>&1"
