# Command: `rnaret vienna`
# Module:  rnaret/vienna.py
# Tests:   tests/test_vienna.py
#
# Baselines that need no training: ViennaRNA (model `vienna`) on every structure dataset's test
# split, scored with the same base-pair F1 as the learned models (rnaret.metrics).
# metrics.tsv: f1/precision/recall/f1_pk/... of the MFE structures, mea_* rows of the MEA ones.


rule vienna:
    input:
        PLAN.vienna_inputs,
    output:
        metrics="results/structure/{dataset}/vienna/metrics.tsv",
        predictions="results/structure/{dataset}/vienna/predictions.dbn",
        per_sequence="results/structure/{dataset}/vienna/per_sequence.tsv",
    log:
        "logs/structure/{dataset}/vienna.log",
    wildcard_constraints:
        dataset="[^/]+",
    conda:
        conda_env("vienna")
    threads: PLAN.threads("vienna")
    resources:
        **PLAN.resources("vienna"),
    params:
        args=PLAN.vienna_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret vienna {params.args} --output-dir results/structure/{wildcards.dataset}/vienna"
        " --threads {threads} > {log:q} 2>&1"
