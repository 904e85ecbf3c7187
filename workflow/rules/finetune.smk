# Downstream tasks: fine-tune each configured model on each dataset (rule finetune: the
# checkpoint folder, best on the validation split), then evaluate it on the test split (rule
# evaluate_classifier for interaction and coding: metrics.tsv, predictions.tsv, ROC figure;
# evaluate_structure: metrics.tsv, per-sequence predictions.tsv, dbn/CT/bpseq, contact maps).
# `snakemake results/{task}/{dataset}/{model}/metrics.tsv` reruns only what is missing or stale:
# deleting metrics.tsv reruns the evaluation alone. Settings: config.yaml `finetune:`.


include: "finetune_common.smk"


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        checkpoint=directory("results/{task}/{dataset}/{model}/checkpoint"),
    log:
        "logs/{task}/{dataset}/{model}/finetune.log",
    wildcard_constraints:
        task="|".join(FINETUNE_TASKS),
        dataset="[^/]+",
        model=TRAINED_MODEL,
    conda:
        conda_env("model")
    threads: finetune_settings()["threads"]
    resources:
        gpu=finetune_settings()["gpus"],
        mem_mb=finetune_settings()["mem_mb"],
        runtime=finetune_settings()["runtime"],
    params:
        args=finetune_args,
    shell:
        "python -m rnaret finetune --task {wildcards.task} --out {output.checkpoint:q} {params.args}"
        " > {log:q} 2>&1"


rule evaluate_classifier:
    input:
        unpack(evaluate_inputs),
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
        model=f"{TRAINED_MODEL}|{PUBLISHED_MODEL}",
    conda:
        conda_env("model")
    threads: finetune_settings()["threads"]
    resources:
        gpu=finetune_settings()["gpus"],
        mem_mb=finetune_settings()["mem_mb"],
        runtime=finetune_settings()["runtime"],
    params:
        out_dir=evaluation_dir,
        args=evaluate_args,
    shell:
        "python -m rnaret evaluate --checkpoint {input.checkpoint:q} --out {params.out_dir:q} {params.args}"
        " > {log:q} 2>&1"


rule evaluate_structure:
    input:
        unpack(evaluate_inputs),
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
        model=f"{TRAINED_MODEL}|{PUBLISHED_MODEL}",
    conda:
        conda_env("model")
    threads: finetune_settings()["threads"]
    resources:
        gpu=finetune_settings()["gpus"],
        mem_mb=finetune_settings()["mem_mb"],
        runtime=finetune_settings()["runtime"],
    params:
        out_dir=evaluation_dir,
        args=evaluate_args,
    shell:
        "python -m rnaret evaluate --checkpoint {input.checkpoint:q} --out {params.out_dir:q} {params.args}"
        " > {log:q} 2>&1"


register_targets("finetune", finetune_targets(("interaction", "coding", "structure")))
