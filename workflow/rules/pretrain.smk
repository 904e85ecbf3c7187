# Command: `rnaret launch -- pretrain`
# Module:  rnaret/settings/stages/pretrain.py (jobs and paths), rnaret/train/pretrain.py, rnaret/train/launch.py
# Tests:   tests/train/test_pretrain.py, tests/train/test_train_mechanics.py
#
# Pretraining: masked language modelling of each configured model (pretrain.models) on the token
# shards at its k, through `rnaret launch` (one process, or one torchrun worker per GPU when
# pretrain.gpus > 1). A rerun after a kill or a SLURM preemption resumes from the newest
# checkpoint in the run folder's train/ (PRETRAIN/train/: not a declared output, so Snakemake keeps it).
# A model of pretrain.init_from is not pretrained: fine-tuning reads its released weights.


# the run folder of a model: checkpoint/, metrics.tsv, loss_curve.png, summary.json, train/
PRETRAIN = PLAN.pretrain.DIR
PRETRAIN_OUT = PRETRAIN.format(model="{wildcards.model}")  # --out of the job


rule pretrain:
    input:
        unpack(PLAN.pretrain.inputs),
    output:
        checkpoint=directory(f"{PRETRAIN}/checkpoint"),
        metrics=f"{PRETRAIN}/metrics.tsv",
        curve=report(
            f"{PRETRAIN}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Pretraining",
            labels={"model": "{model}", "figure": "MLM loss"},
        ),
        summary=f"{PRETRAIN}/summary.json",
    log:
        "logs/pretrain/{model}.log",
    wildcard_constraints:
        model=PLAN.pretrain.MODEL,
    priority: PLAN.priority("pretrain")
    conda:
        conda_env(PLAN.model_env("pretrain"))
    threads: PLAN.threads("pretrain")
    resources:
        **PLAN.resources("pretrain", resumable=True),
    params:
        args=PLAN.pretrain.args,
        code_version=PLAN.code_version,
        nproc=PLAN.pretrain.nproc,
        nodes=PLAN.pretrain.nodes,
        threads=PLAN.pretrain.worker_threads,
    shell:
        "python -m rnaret launch --nproc {params.nproc} --nodes {params.nodes} --"
        " pretrain --shards {input.shards:q}"
        f" --out {PRETRAIN_OUT} {{params.args}} --threads {{params.threads}}"
        " > {log:q} 2>&1"
