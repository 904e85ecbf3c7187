# Command: `rnaret download|normalize|leakage|homology|filter|shard|corpus-summary`, two wrappers
# Module:  rnaret/settings/stages/data.py (jobs and paths), rnaret/data/ (one module per stage), workflow/wrappers/seqkit/, workflow/wrappers/mmseqs2/
# Tests:   tests/data/, tests/pipeline/test_pipeline_data.py, tests/pipeline/test_leakage_workflow.py
#
# Data stages: download -> normalize (U->T) -> dedupe (seqkit) -> leakage (identity, then MMseqs2)
# -> [cluster, optional] -> filter -> shard per k; besides, the homology within each dataset.
# Under `protocol: published` the corpus is the published one: normalize -> filter (each record
# cut to its first length_policy.max_length nt, nothing dropped) -> shard (nothing held out);
# the same rules with other options (rnaret.settings.stages.data: Data.published_corpus).
# Every rule calls the `rnaret` command line; outputs are written atomically by rnaret. Options
# come from rnaret.settings (PLAN): params taking only wildcards are rerun triggers.

# every corpus file is f"{CORPUS}/NAME" (rnaret.settings.stages.data)
CORPUS = PLAN.data.CORPUS


# Downloads and the summary run on the machine that runs Snakemake (on a cluster, the login
# node): compute nodes often have no internet access, and the summary is seconds of work.
localrules:
    download_corpus,
    download_dataset,
    corpus_summary,


rule download_corpus:
    input:
        PLAN.data.download_inputs,
    output:
        fasta=PLAN.data.download_path(),
        info=f"{CORPUS}/download.json",
    log:
        "logs/data/download_corpus.log",
    priority: PLAN.priority("corpus")
    conda:
        conda_env("data")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=500, runtime=600),
    params:
        args=PLAN.data.download_args,
    shell:
        "python -m rnaret download {params.args} --output {output.fasta:q} --info {output.info:q}"
        " > {log:q} 2>&1"


rule download_dataset:
    output:
        PLAN.data.DATASET_DOWNLOAD,
    log:
        "logs/data/download_dataset/{task}/{dataset}/{split}/{filename}.log",
    wildcard_constraints:
        split="train|valid|test",
    conda:
        conda_env("data")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=500, runtime=60),
    params:
        args=PLAN.data.dataset_download_args,
    shell:
        "python -m rnaret download {params.args} --output {output:q} > {log:q} 2>&1"


rule normalize_corpus:
    input:
        PLAN.data.download_path(),
    output:
        fasta=temp(f"{CORPUS}/normalized.fa.gz"),
        counts=f"{CORPUS}/normalize.json",
    log:
        "logs/data/normalize_corpus.log",
    priority: PLAN.priority("corpus")
    conda:
        conda_env("data")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=2000, runtime=600),
    params:
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret normalize {input:q} --output {output.fasta:q} --counts {output.counts:q}"
        " > {log:q} 2>&1"


rule dedupe_corpus:
    input:
        fastx=f"{CORPUS}/normalized.fa.gz",
    output:
        fastx=temp(f"{CORPUS}/deduplicated.fa.gz"),
        dup_num=f"{CORPUS}/duplicates.txt",
    log:
        "logs/data/dedupe_corpus.log",
    priority: PLAN.priority("corpus")
    threads: PLAN.threads("dedupe")
    resources:
        **PLAN.resources("dedupe", runtime=600),
    params:
        command="rmdup",
        # forward strand only: an RNA and its reverse complement are different molecules
        extra="--by-seq --ignore-case --only-positive-strand",
    wrapper:
        SEQKIT_WRAPPER


rule remove_leakage:
    input:
        fasta=f"{CORPUS}/deduplicated.fa.gz",
        datasets=PLAN.data.leakage_inputs,
    output:
        fasta=temp(f"{CORPUS}/no_leakage.fa.gz"),
        table=report(
            f"{CORPUS}/leakage.tsv",
            caption="../report/leakage.rst",
            category="Data",
            subcategory="leakage",
            labels={"table": "leakage per split"},
        ),
        hits=f"{CORPUS}/leakage_hits.tsv.gz",
        counts=f"{CORPUS}/leakage.json",
    log:
        "logs/data/remove_leakage.log",
    priority: PLAN.priority("corpus")
    conda:
        conda_env("data")
    threads: PLAN.threads("leakage")
    resources:
        **PLAN.resources("leakage"),
    params:
        args=PLAN.data.leakage_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret leakage {input.fasta:q} --output {output.fasta:q} {params.args}"
        " --table {output.table:q} --hits {output.hits:q} --counts {output.counts:q}"
        " --threads {threads} --memory-mb {resources.mem_mb} --tmp-dir {resources.tmpdir:q}"
        " > {log:q} 2>&1"


# optional (dedupe.cluster_identity): one representative per MMseqs2 linclust cluster
rule cluster_corpus:
    input:
        f"{CORPUS}/no_leakage.fa.gz",
    output:
        rep=temp(f"{CORPUS}/clustered.fa"),
        clusters=f"{CORPUS}/clusters.tsv",
    log:
        "logs/data/cluster_corpus.log",
    priority: PLAN.priority("corpus")
    threads: PLAN.threads("leakage")
    resources:
        **PLAN.resources("leakage"),
    params:
        command="easy-linclust",
        extra=PLAN.data.cluster_extra,
    wrapper:
        MMSEQS2_WRAPPER


# within each dataset: test against train and valid, valid against train (reported only)
rule homology:
    input:
        PLAN.data.homology_inputs,
    output:
        table=PLAN.data.HOMOLOGY_TABLE,
        hits=PLAN.data.HOMOLOGY_HITS,
    log:
        "logs/data/homology/{task}/{dataset}.log",
    wildcard_constraints:
        task="interaction|structure|coding|sequence-classification|sequence-regression|token-classification|token-regression",
    conda:
        conda_env("data")
    threads: PLAN.threads("leakage")
    resources:
        **PLAN.resources(mem_mb=2000, runtime=120),
    params:
        args=PLAN.data.homology_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret homology {params.args} --table {output.table:q} --hits {output.hits:q}"
        " --threads {threads} --memory-mb {resources.mem_mb} --tmp-dir {resources.tmpdir:q}"
        " > {log:q} 2>&1"


rule filter_lengths:
    input:
        PLAN.data.filter_input(),
    output:
        fasta=f"{CORPUS}/filtered.fa.gz",
        counts=f"{CORPUS}/filter.json",
    log:
        "logs/data/filter_lengths.log",
    priority: PLAN.priority("corpus")
    conda:
        conda_env("data")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=1000, runtime=600),
    params:
        args=PLAN.data.filter_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret filter {input:q} --output {output.fasta:q} --counts {output.counts:q}"
        " {params.args} > {log:q} 2>&1"


rule shard_tokens:
    input:
        fasta=f"{CORPUS}/filtered.fa.gz",
        download=f"{CORPUS}/download.json",
        policy=f"{CORPUS}/filter.json",
    output:
        directory(PLAN.data.SHARDS),
    log:
        "logs/data/shard_tokens/k{k}.log",
    wildcard_constraints:
        k="[135]",
    priority: PLAN.priority("corpus")
    conda:
        conda_env("data")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=PLAN.data.shard_mem_mb(), runtime=1440),
    params:
        args=PLAN.data.shard_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret shard {input.fasta:q} --output {output:q} --k {wildcards.k} {params.args}"
        " --provenance {input.download:q} --policy {input.policy:q} > {log:q} 2>&1"


rule corpus_summary:
    input:
        download=f"{CORPUS}/download.json",
        normalize=f"{CORPUS}/normalize.json",
        removals=PLAN.data.removal_counts,
        clusters=PLAN.data.cluster_tables,
        filter=f"{CORPUS}/filter.json",
        shards=PLAN.data.shard_dirs(),
    output:
        report(
            f"{CORPUS}/summary.tsv",
            caption="../report/corpus_summary.rst",
            category="Data",
            labels={"table": "corpus stages"},
        ),
    log:
        "logs/data/corpus_summary.log",
    conda:
        conda_env("data")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=200, runtime=10),
    params:
        args=PLAN.data.summary_args,
        code_version=PLAN.code_version,
    shell:
        "python -m rnaret corpus-summary --download {input.download:q} --normalize {input.normalize:q}"
        " --filter {input.filter:q} --shards {input.shards:q} {params.args} --output {output:q} > {log:q} 2>&1"
