# Data stages: download -> normalize (U->T) -> dedupe (seqkit) -> leakage -> filter -> shard per k.
# Every rule calls the `rnaret` command line; outputs are written atomically by rnaret.


rule download_corpus:
    input:
        corpus_download_inputs,
    output:
        fasta=corpus_download_path(),
        info=f"{CORPUS}/download.json",
    log:
        "logs/data/download_corpus.log",
    conda:
        conda_env("data")
    threads: 1
    resources:
        mem_mb=500,
        runtime=600,
    params:
        source=config["corpus"]["url"],
        md5=config["corpus"].get("md5", ""),
        release=config["corpus"].get("release", ""),
    shell:
        "python -m rnaret download {params.source:q} --output {output.fasta:q} --md5={params.md5:q}"
        " --release={params.release:q} --info {output.info:q} > {log:q} 2>&1"


rule download_dataset:
    output:
        "results/datasets/{task}/{dataset}/{split}/{filename}",
    log:
        "logs/data/download_dataset/{task}/{dataset}/{split}/{filename}.log",
    wildcard_constraints:
        split="train|valid|test",
    conda:
        conda_env("data")
    threads: 1
    resources:
        mem_mb=500,
        runtime=60,
    params:
        source=dataset_download_url,
        md5=dataset_download_md5,
    shell:
        "python -m rnaret download {params.source:q} --output {output:q} --md5={params.md5:q} > {log:q} 2>&1"


rule normalize_corpus:
    input:
        corpus_download_path(),
    output:
        fasta=temp(f"{CORPUS}/normalized.fa.gz"),
        counts=f"{CORPUS}/normalize.json",
    log:
        "logs/data/normalize_corpus.log",
    conda:
        conda_env("data")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=600,
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
    threads: config["dedupe"]["threads"]
    resources:
        mem_mb=config["dedupe"]["mem_mb"],
        runtime=600,
    params:
        command="rmdup",
        # forward strand only: an RNA and its reverse complement are different molecules
        extra="--by-seq --ignore-case --only-positive-strand",
    wrapper:
        SEQKIT_WRAPPER


rule remove_leakage:
    input:
        fasta=f"{CORPUS}/deduplicated.fa.gz",
        datasets=leakage_inputs,
    output:
        fasta=temp(f"{CORPUS}/no_leakage.fa.gz"),
        table=report(
            f"{CORPUS}/leakage.tsv",
            caption="../report/leakage.rst",
            category="Data",
            labels={"table": "leakage"},
        ),
        counts=f"{CORPUS}/leakage.json",
    log:
        "logs/data/remove_leakage.log",
    conda:
        conda_env("data")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=600,
    params:
        datasets=leakage_datasets_json,
        splits=",".join(config["dedupe"]["leakage_splits"]),
    shell:
        "python -m rnaret leakage {input.fasta:q} --output {output.fasta:q} --datasets {params.datasets:q}"
        " --splits {params.splits:q} --table {output.table:q} --counts {output.counts:q}"
        " > {log:q} 2>&1"


rule filter_lengths:
    input:
        f"{CORPUS}/no_leakage.fa.gz",
    output:
        fasta=f"{CORPUS}/filtered.fa.gz",
        counts=f"{CORPUS}/filter.json",
    log:
        "logs/data/filter_lengths.log",
    conda:
        conda_env("data")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=600,
    params:
        min_length=config["length_policy"]["min_length"],
        max_length=config["length_policy"]["max_length"],
        long=config["length_policy"]["long"],
        window=config["length_policy"].get(
            "window", config["length_policy"]["max_length"]
        ),
        overlap=config["length_policy"]["overlap"],
    shell:
        "python -m rnaret filter {input:q} --output {output.fasta:q} --counts {output.counts:q}"
        " --min-length {params.min_length} --max-length {params.max_length} --long {params.long}"
        " --window {params.window} --overlap {params.overlap} > {log:q} 2>&1"


rule shard_tokens:
    input:
        fasta=f"{CORPUS}/filtered.fa.gz",
        download=f"{CORPUS}/download.json",
        policy=f"{CORPUS}/filter.json",
    output:
        directory("results/shards/k{k}"),
    log:
        "logs/data/shard_tokens/k{k}.log",
    wildcard_constraints:
        k="[135]",
    conda:
        conda_env("data")
    threads: 1
    resources:
        # sorted runs and one shard buffer (2 bytes a token), independent of the corpus size
        mem_mb=1000
        + (
            config["shards"]["run_tokens"] * 40
            + config["shards"]["tokens_per_shard"] * 2
        )
        // 1_000_000,
        runtime=1440,
    params:
        tokens_per_shard=config["shards"]["tokens_per_shard"],
        run_tokens=config["shards"]["run_tokens"],
        valid_fraction=config["shards"]["valid_fraction"],
        seed=config["shards"]["seed"],
    shell:
        "python -m rnaret shard {input.fasta:q} --output {output:q} --k {wildcards.k}"
        " --tokens-per-shard {params.tokens_per_shard} --run-tokens {params.run_tokens}"
        " --valid-fraction {params.valid_fraction} --seed {params.seed}"
        " --provenance {input.download:q} --policy {input.policy:q} > {log:q} 2>&1"


rule corpus_summary:
    input:
        normalize=f"{CORPUS}/normalize.json",
        dup_num=f"{CORPUS}/duplicates.txt",
        leakage=f"{CORPUS}/leakage.json",
        filter=f"{CORPUS}/filter.json",
        shards=expand("results/shards/k{k}", k=config["shards"]["k"]),
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
        mem_mb=200,
        runtime=10,
    shell:
        "python -m rnaret corpus-summary --normalize {input.normalize:q} --dup-num {input.dup_num:q}"
        " --leakage {input.leakage:q} --filter {input.filter:q} --shards {input.shards:q}"
        " --output {output:q} > {log:q} 2>&1"


# final targets of the data stages: the stage summary and the shards of every k
register_targets(
    "data", [f"{CORPUS}/summary.tsv"] + [shard_dir(k) for k in config["shards"]["k"]]
)
