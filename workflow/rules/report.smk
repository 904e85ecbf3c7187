# Command: `rnaret tables|scaling|structure-figures|leakage-report`
# Module:  rnaret/settings/stages/report.py (jobs and paths), rnaret/tables.py, rnaret/scaling.py, rnaret/figures.py, rnaret/data/leakage_report.py
# Tests:   tests/test_tables.py, tests/test_scaling.py, tests/pipeline/test_report.py
#
# Tables and the HTML report: one table per task from every evaluation's metrics.tsv plus the
# published figures (rnaret tables), the encoder length-scaling table (rnaret scaling), the
# per-sequence F1 distribution of every structure evaluation and ViennaRNA's example contact maps
# (rnaret structure-figures; the fine-tuned models' contact maps come from their evaluations).
# `snakemake --report report.html` collects them with their captions.
# The evaluations are the plan's (rnaret.settings.stages.report: Report.evaluations), never a glob.

TABLE_TASKS = PLAN.report.tasks()
TABLES = PLAN.report.TABLES_DIR
# the figures of one structure evaluation (the F1 distribution; ViennaRNA's contact maps)
FIGURES = PLAN.report.STRUCTURE_FIGURE_DIR
VIENNA_FIGURES = FIGURES.format(dataset="{dataset}", model="vienna")


report: "../report/workflow.rst"


rule tables:
    input:
        metrics=PLAN.report.evaluations,
        published=PLAN.report.published_results(),
    output:
        **{
            f"{task}_html": report(
                f"{TABLES}/{task}.html",
                caption="../report/tables.rst",
                category="Tables",
                subcategory=task,
                labels={"task": task, "format": "table (HTML)"},
            )
            for task in TABLE_TASKS
        },
        **{
            f"{task}_tsv": report(
                f"{TABLES}/{task}.tsv",
                caption="../report/tables.rst",
                category="Tables",
                subcategory=task,
                labels={"task": task, "format": "TSV"},
            )
            for task in TABLE_TASKS
        },
        **{f"{task}_md": f"{TABLES}/{task}.md" for task in TABLE_TASKS},
    log:
        "logs/report/tables.log",
    conda:
        conda_env("report")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=500, runtime=10),
    params:
        tasks=PLAN.report.tables_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret tables {input.metrics:q} --published {input.published:q}"
        f" --output-dir {TABLES} {{params.tasks}} > {{log:q}} 2>&1"


rule length_scaling:
    output:
        tsv=report(
            f"{TABLES}/length_scaling.tsv",
            caption="../report/length_scaling.rst",
            category="Long sequences",
            labels={"item": "measurements (TSV)"},
        ),
        html=report(
            f"{TABLES}/length_scaling.html",
            caption="../report/length_scaling.rst",
            category="Long sequences",
            labels={"item": "table"},
        ),
        png=report(
            f"{TABLES}/length_scaling.png",
            caption="../report/length_scaling.rst",
            category="Long sequences",
            labels={"item": "plot"},
        ),
        md=f"{TABLES}/length_scaling.md",
    log:
        "logs/report/length_scaling.log",
    conda:
        conda_env("model")
    threads: PLAN.report.length_scaling_threads()
    resources:
        **PLAN.resources(mem_mb=6000, runtime=30),
    params:
        # the thread count is a condition of the measurement: an option (tracked), not {threads}
        args=PLAN.report.length_scaling_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret scaling {params.args} --output-tsv {output.tsv:q} --output-md {output.md:q}"
        " --output-png {output.png:q} --output-html {output.html:q} > {log:q} 2>&1"


rule f1_distribution:
    input:
        truth=PLAN.report.structure_truth,
        per_sequence=PLAN.report.structure_per_sequence,
    output:
        report(
            f"{FIGURES}/f1_distribution.png",
            caption="../report/f1_distribution.rst",
            category="Secondary structure",
            subcategory="{dataset}",
            labels={"model": "{model}", "figure": "per-sequence F1"},
        ),
    log:
        "logs/report/f1_distribution/{dataset}/{model}.log",
    wildcard_constraints:
        dataset="[^/]+",
        model="[^/]+",
    conda:
        conda_env("report")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=1000, runtime=10),
    params:
        truth=PLAN.report.structure_truth_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret structure-figures {params.truth}"
        " --per-sequence {input.per_sequence:q} --label {wildcards.model}"
        " --title '{wildcards.model} on {wildcards.dataset}' --f1-png {output:q} > {log:q} 2>&1"


# the fine-tuned models' evaluations draw their own contact maps; ViennaRNA's are drawn here
rule vienna_contact_maps:
    input:
        truth=PLAN.report.structure_truth,
        predictions=f"{PLAN.baselines.DIR}/predictions.dbn",
    output:
        report(
            f"{VIENNA_FIGURES}/contact_maps.png",
            caption="../report/contact_maps.rst",
            category="Secondary structure",
            subcategory="{dataset}",
            labels={"model": "vienna", "figure": "contact maps"},
        ),
    log:
        "logs/report/vienna_contact_maps/{dataset}.log",
    wildcard_constraints:
        dataset="[^/]+",
    conda:
        conda_env("report")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=1000, runtime=10),
    params:
        truth=PLAN.report.structure_truth_args,
        examples=PLAN.report.contact_map_examples(),
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret structure-figures {params.truth}"
        " --prediction MFE={input.predictions:q} --title 'vienna on {wildcards.dataset}'"
        " --examples {params.examples} --maps-png {output:q} > {log:q} 2>&1"


rule structure_figures_index:
    input:
        PLAN.report.structure_figure_targets,
    output:
        PLAN.report.STRUCTURE_FIGURE_INDEX,
    log:
        "logs/report/structure_figures_index.log",
    conda:
        conda_env("report")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=100, runtime=5),
    shell:
        "printf '%s\\n' {input:q} > {output:q} 2> {log:q}"


rule leakage_report:
    input:
        hits=f"{CORPUS}/leakage_hits.tsv.gz",
        table=f"{CORPUS}/leakage.tsv",
        counts=f"{CORPUS}/leakage.json",
    output:
        figure=report(
            f"{CORPUS}/leakage.png",
            caption="../report/leakage_figure.rst",
            category="Data",
            subcategory="leakage",
            labels={"table": "hits and removals (figure)"},
        ),
        closest=report(
            f"{CORPUS}/leakage_closest.tsv",
            caption="../report/leakage_closest.rst",
            category="Data",
            subcategory="leakage",
            labels={"table": "closest removed pairs"},
        ),
    log:
        "logs/report/leakage_report.log",
    conda:
        conda_env("report")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=2000, runtime=10),
    params:
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret leakage-report --hits {input.hits:q} --table {input.table:q}"
        " --counts {input.counts:q} --figure {output.figure:q} --closest {output.closest:q}"
        " > {log:q} 2>&1"


rule homology_summary:
    input:
        PLAN.data.homology_tables,
    output:
        report(
            PLAN.data.HOMOLOGY_SUMMARY,
            caption="../report/leakage_homology.rst",
            category="Data",
            subcategory="leakage",
            labels={"table": "homology within datasets"},
        ),
    log:
        "logs/report/homology_summary.log",
    conda:
        conda_env("report")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=200, runtime=5),
    params:
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret leakage-report --homology {input:q} --homology-table {output:q} > {log:q} 2>&1"
