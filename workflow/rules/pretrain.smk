# Command: `rnaret launch -- pretrain`
# Module:  rnaret/train/pretrain.py, rnaret/train/launch.py
# Tests:   tests/train/test_pretrain.py, tests/train/test_train_mechanics.py
#
# Pretraining: masked language modelling of each configured model (pretrain.models) on the token
# shards at its k, through `rnaret launch` (one process, or one torchrun worker per GPU when
# pretrain.gpus > 1). A rerun after a kill or a SLURM preemption resumes from the newest
# checkpoint in results/pretrain/{model}/train/ (not a declared output, so Snakemake keeps it).
# A model of pretrain.init_from is not pretrained: fine-tuning reads its released weights.


rule pretrain:
    input:
        unpack(PLAN.pretrain_inputs),
    output:
        checkpoint=directory("results/pretrain/{model}/checkpoint"),
        metrics="results/pretrain/{model}/metrics.tsv",
        curve=report(
            "results/pretrain/{model}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Pretraining",
            labels={"model": "{model}", "figure": "MLM loss"},
        ),
        summary="results/pretrain/{model}/summary.json",
    log:
        "logs/pretrain/{model}.log",
    wildcard_constraints:
        model=rnaret_settings.plan.PRETRAINED_MODEL,
    priority: PLAN.priority("pretrain")
    conda:
        conda_env(PLAN.model_env("pretrain"))
    threads: PLAN.threads("pretrain")
    resources:
        **PLAN.resources("pretrain", resumable=True),
    params:
        args=PLAN.pretrain_args,
        code_version=PLAN.code_version,
        nproc=PLAN.pretrain_nproc,
        nodes=PLAN.pretrain_nodes,
        threads=PLAN.worker_threads,
    shell:
        "python -m rnaret launch --nproc {params.nproc} --nodes {params.nodes} --"
        " pretrain --shards {input.shards:q}"
        " --out results/pretrain/{wildcards.model} {params.args} --threads {params.threads}"
        " > {log:q} 2>&1"
