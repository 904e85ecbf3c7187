# Pretraining: masked language modelling of each configured model (pretrain.models) on the token
# shards at its k, through `rnaret launch` (one process, or one torchrun worker per GPU when
# pretrain.gpus > 1). A rerun after a kill or a SLURM preemption resumes from the newest
# checkpoint in results/pretrain/{model}/train/ (not a declared output, so Snakemake keeps it).
# With pretrain.init_from.{model} the released weights are converted and validated instead.


include: "pretrain_common.smk"


rule pretrain:
    input:
        unpack(pretrain_inputs),
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
        model=PRETRAIN_MODEL,
    conda:
        conda_env("model")
    threads: pretrain_settings()["threads"]
    resources:
        gpu=pretrain_gpus,
        mem_mb=pretrain_settings()["mem_mb"],
        runtime=pretrain_settings()["runtime"],
    params:
        out_dir=pretrain_out_dir,
        nproc=pretrain_nproc,
        args=pretrain_args,
    shell:
        "python -m rnaret launch --nproc {params.nproc} -- pretrain --shards {input.shards:q}"
        " --out {params.out_dir:q} {params.args} > {log:q} 2>&1"


register_targets("pretrain", pretrain_targets())
