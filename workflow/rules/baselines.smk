# Baselines that need no training: ViennaRNA (model `vienna`) on every structure dataset's test
# split, scored with the same base-pair F1 as the learned models (rnaret.metrics).
# metrics.tsv: f1/precision/recall/f1_pk/... of the MFE structures, mea_* rows of the MEA ones.


include: "baselines_common.smk"


rule vienna:
    input:
        vienna_test_input,
    output:
        metrics="results/structure/{dataset}/vienna/metrics.tsv",
        predictions="results/structure/{dataset}/vienna/predictions.dbn",
        per_sequence="results/structure/{dataset}/vienna/per_sequence.tsv",
    log:
        "logs/structure/{dataset}/vienna.log",
    wildcard_constraints:
        dataset="|".join(re.escape(d) for d in datasets_of("structure")) or "(?!)",
    conda:
        conda_env("vienna")
    threads: vienna_settings()["threads"]
    resources:
        mem_mb=vienna_settings()["mem_mb"],
        runtime=vienna_settings()["runtime"],
    params:
        out_dir=vienna_out_dir,
        method=vienna_settings()["method"],
        gamma=vienna_settings()["gamma"],
        extra=vienna_extra_args,
    shell:
        "python -m rnaret vienna --dataset {input:q} --output-dir {params.out_dir:q} --threads {threads}"
        " --method {params.method} --gamma {params.gamma} {params.extra} > {log:q} 2>&1"


register_targets("baselines", vienna_targets())
