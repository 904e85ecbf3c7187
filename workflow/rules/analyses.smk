# Command: `rnaret analyses structure|pca|cls-retention|transcripts`
# Module:  rnaret/settings/stages/analyses.py (jobs and paths), rnaret/analyses.py, rnaret/commands/analyses.py, rnaret/model/scores.py
# Tests:   tests/test_analyses.py, tests/settings/test_plan_analyses.py
#
# The paper's analyses (the published analysis/*.ipynb) on this run's models, each figure with
# its data as TSV in the analysis folder of its evaluation (docs/analyses.md):
# per-family F1 and F1 against length of every structure evaluation; PCA of the CLS states of the
# fine-tuned, pretrained and a random encoder, and the CLS token's retention, on each interaction
# test split; retention maps of one mRNA and one lncRNA and the codons at high retention on each
# coding test split (RetNet models only: retention scores). Paths and targets: rnaret.settings.stages.analyses.


rule analyses_structure:
    input:
        truth=PLAN.report.structure_truth,
        per_sequence=PLAN.report.structure_per_sequence,
    output:
        **analysis_outputs("structure", "analyses_structure.rst"),
    log:
        "logs/report/analyses/{task}/{dataset}/{model}/structure.log",
    wildcard_constraints:
        task="structure",
        dataset="[^/]+",
        model="[^/]+",
    conda:
        conda_env("report")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=1000, runtime=10),
    params:
        truth=PLAN.report.structure_truth_args,
        column=PLAN.analyses.f1_column,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret analyses structure {params.truth} --predictions {input.per_sequence:q}"
        " --column {params.column} --title '{wildcards.model} on {wildcards.dataset}' "
        + analysis_options("structure")
        + " > {log:q} 2>&1"


rule analyses_pca:
    input:
        unpack(PLAN.analyses.pca_inputs),
    output:
        **analysis_outputs("pca", "analyses_pca.rst"),
    log:
        "logs/report/analyses/{task}/{dataset}/{model}/pca.log",
    wildcard_constraints:
        task="interaction",
        dataset="[^/]+",
        model=PLAN.analyses.RETNET_MODEL,
    conda:
        conda_env(PLAN.model_env("finetune"))
    threads: PLAN.threads("finetune")
    resources:
        **PLAN.resources("finetune"),
    params:
        args=PLAN.analyses.pca_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret analyses pca {params.args} --threads {threads} "
        + analysis_options("pca")
        + " > {log:q} 2>&1"


rule analyses_cls_retention:
    input:
        unpack(PLAN.analyses.inputs),
    output:
        **analysis_outputs("cls-retention", "analyses_cls_retention.rst"),
    log:
        "logs/report/analyses/{task}/{dataset}/{model}/cls_retention.log",
    wildcard_constraints:
        task="interaction",
        dataset="[^/]+",
        model=PLAN.analyses.RETNET_MODEL,
    conda:
        conda_env(PLAN.model_env("finetune"))
    threads: PLAN.threads("finetune")
    resources:
        **PLAN.resources("finetune"),
    params:
        args=PLAN.analyses.args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret analyses cls-retention {params.args} --threads {threads} "
        + analysis_options("cls-retention")
        + " > {log:q} 2>&1"


rule analyses_transcripts:
    input:
        unpack(PLAN.analyses.inputs),
    output:
        **analysis_outputs("transcripts", "analyses_transcripts.rst"),
    log:
        "logs/report/analyses/{task}/{dataset}/{model}/transcripts.log",
    wildcard_constraints:
        task="coding",
        dataset="[^/]+",
        model=PLAN.analyses.RETNET_MODEL,
    conda:
        conda_env(PLAN.model_env("finetune"))
    threads: PLAN.threads("finetune")
    resources:
        **PLAN.resources("finetune"),
    params:
        args=PLAN.analyses.args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret analyses transcripts {params.args} --threads {threads} "
        + analysis_options("transcripts")
        + " > {log:q} 2>&1"
