# Tables and the HTML report: one table per task from every evaluation's metrics.tsv plus the
# published figures (rnaret tables), the encoder length-scaling table (rnaret scaling), the
# per-sequence F1 distribution of every structure evaluation and ViennaRNA's example contact maps
# (rnaret structure-figures; the fine-tuned models' contact maps come from their evaluations). `snakemake --report report.html` collects them with their captions.
# The evaluations are those the other stages registered for `rule all` (read when the DAG is built).


include: "report_common.smk"


report: "../report/workflow.rst"


rule tables:
    input:
        metrics=evaluation_metrics,
        published=report_settings()["published_results"],
    output:
        **{
            f"{task}_html": report(
                path,
                caption="../report/tables.rst",
                category="Tables",
                subcategory=task,
                labels={"task": task, "format": "table (HTML)"},
            )
            for task, path in table_outputs("html").items()
        },
        **{
            f"{task}_tsv": report(
                path,
                caption="../report/tables.rst",
                category="Tables",
                subcategory=task,
                labels={"task": task, "format": "TSV"},
            )
            for task, path in table_outputs("tsv").items()
        },
        **{f"{task}_md": path for task, path in table_outputs("md").items()},
    log:
        "logs/report/tables.log",
    conda:
        conda_env("report")
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    params:
        out_dir=table_dir,
    shell:
        "python -m rnaret tables {input.metrics:q} --published {input.published:q}"
        " --output-dir {params.out_dir:q} > {log:q} 2>&1"


rule length_scaling:
    output:
        tsv=report(
            "results/tables/length_scaling.tsv",
            caption="../report/length_scaling.rst",
            category="Long sequences",
            labels={"item": "measurements (TSV)"},
        ),
        html=report(
            "results/tables/length_scaling.html",
            caption="../report/length_scaling.rst",
            category="Long sequences",
            labels={"item": "table"},
        ),
        png=report(
            "results/tables/length_scaling.png",
            caption="../report/length_scaling.rst",
            category="Long sequences",
            labels={"item": "plot"},
        ),
        md="results/tables/length_scaling.md",
    log:
        "logs/report/length_scaling.log",
    conda:
        conda_env("model")
    threads: report_settings()["length_scaling"]["threads"]
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        models=" ".join(report_settings()["length_scaling"]["models"]),
        presets=" ".join(report_settings()["length_scaling"]["presets"]),
        lengths=",".join(str(n) for n in report_settings()["length_scaling"]["lengths"]),
        repeats=report_settings()["length_scaling"]["repeats"],
        max_seconds=report_settings()["length_scaling"]["max_seconds"],
    shell:
        "python -m rnaret scaling --models {params.models} --presets {params.presets}"
        " --lengths {params.lengths} --repeats {params.repeats} --threads {threads}"
        " --max-seconds {params.max_seconds} --output-tsv {output.tsv:q} --output-md {output.md:q}"
        " --output-png {output.png:q} --output-html {output.html:q} > {log:q} 2>&1"


rule f1_distribution:
    input:
        truth=structure_truth,
        per_sequence=structure_per_sequence,
    output:
        report(
            "results/report/structure/{dataset}/{model}/f1_distribution.png",
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
        mem_mb=1000,
        runtime=10,
    params:
        split=structure_split_args,
    shell:
        "python -m rnaret structure-figures --truth {input.truth:q} {params.split}"
        " --per-sequence {input.per_sequence:q} --label {wildcards.model}"
        " --title '{wildcards.model} on {wildcards.dataset}' --f1-png {output:q} > {log:q} 2>&1"


# the fine-tuned models' evaluations draw their own contact maps; ViennaRNA's are drawn here
rule vienna_contact_maps:
    input:
        truth=structure_truth,
        predictions="results/structure/{dataset}/vienna/predictions.dbn",
    output:
        report(
            "results/report/structure/{dataset}/vienna/contact_maps.png",
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
        mem_mb=1000,
        runtime=10,
    params:
        split=structure_split_args,
        examples=report_settings()["contact_map_examples"],
    shell:
        "python -m rnaret structure-figures --truth {input.truth:q} {params.split}"
        " --prediction MFE={input.predictions:q} --title 'vienna on {wildcards.dataset}'"
        " --examples {params.examples} --maps-png {output:q} > {log:q} 2>&1"


rule structure_figures_index:
    input:
        structure_figure_inputs,
    output:
        STRUCTURE_FIGURE_INDEX,
    log:
        "logs/report/structure_figures_index.log",
    conda:
        conda_env("report")
    threads: 1
    resources:
        mem_mb=100,
        runtime=5,
    shell:
        "printf '%s\\n' {input:q} > {output:q} 2> {log:q}"


register_targets("report", report_targets())
