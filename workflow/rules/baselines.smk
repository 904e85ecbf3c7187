# Command: `rnaret vienna`
# Module:  rnaret/settings/stages/baselines.py (jobs and paths), rnaret/vienna.py
# Tests:   tests/test_vienna.py
#
# Baselines that need no training: ViennaRNA (model `vienna`) on every structure dataset's test
# split, scored with the same base-pair F1 as the learned models (rnaret.metrics).
# metrics.tsv: f1/precision/recall/f1_pk/... of the MFE structures, mea_* rows of the MEA ones.


# ViennaRNA's evaluation folder of a structure dataset (rnaret.settings.stages.baselines)
VIENNA = PLAN.baselines.DIR
VIENNA_OUT = VIENNA.format(dataset="{wildcards.dataset}")  # --output-dir of the job


rule vienna:
    input:
        PLAN.baselines.inputs,
    output:
        metrics=f"{VIENNA}/metrics.tsv",
        predictions=f"{VIENNA}/predictions.dbn",
        per_sequence=f"{VIENNA}/per_sequence.tsv",
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
        args=PLAN.baselines.args,
        code_version=PLAN.code_version,
    shell:
        f"python -m rnaret vienna {{params.args}} --output-dir {VIENNA_OUT}"
        " --threads {threads} > {log:q} 2>&1"
