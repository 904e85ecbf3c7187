"""The leakage stage inside the real Snakemake on a temporary copy of the workflow: thresholds
refused by the schema, the data stages with the optional clustering on part of the bundled
corpus (summary rows per pass, the report's figure and tables, a homology table per dataset),
what a threshold change reruns, and the mmseqs2 wrapper on its own."""
from __future__ import annotations

import csv
import gzip

import pytest

from conftest import ROOT
from workflow_copy import make_workdir, planned_jobs, snakemake, write_yaml

pytestmark = pytest.mark.slow  # real Snakemake runs

REPORT_TARGETS = ["results/corpus/summary.tsv", "results/corpus/leakage.png",
                  "results/corpus/leakage_closest.tsv", "results/homology/summary.tsv"]


def read_tsv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.mark.parametrize("block, words", [
    ("leakage: {min_identity: 1.5}", ["leakage", "min_identity", "1.5"]),
    ("leakage: {min_test_coverage: 0}", ["leakage", "min_test_coverage"]),
    ("leakage: {max_evalue: -1}", ["leakage", "max_evalue"]),
    ("dedupe: {cluster_identity: 2}", ["dedupe", "cluster_identity"]),
])
def test_bad_thresholds_are_refused_by_the_schema_naming_the_key(tmp_path, block, words):
    workdir = make_workdir(tmp_path / "cfg")
    (workdir / "bad.yaml").write_text(block + "\n")
    result = snakemake(workdir, "-n", "--configfile", workdir / "bad.yaml", check=False)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    for word in words:
        assert word in text, (word, text[-2000:])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The data stages on the first 3,000 bundled corpus records plus a planted test tRNA inside
    a longer record, clustered at 90 % identity; the leakage report and the homology tables."""
    from rnaret.io.dataset_readers import iter_sequences
    from rnaret.io.fasta import read_fasta

    workdir = make_workdir(tmp_path_factory.mktemp("leakage_workflow"))
    records = [r for _, r in zip(range(3000), read_fasta(ROOT / "resources/rnacentral/rnacentral_sample.fa.gz"))]
    trna = next(s for _, s in iter_sequences(str(ROOT / "resources/structure/bprna_test.csv")) if 70 <= len(s) <= 90)
    host = records[11].sequence
    with gzip.open(workdir / "corpus.fa.gz", "wt") as handle:
        for record in records:
            handle.write(f">{record.description}\n{record.sequence}\n")
        handle.write(f">planted_trna\n{host[:40]}{trna}{host[40:]}\n")
    config = {"corpus": {"url": "corpus.fa.gz", "md5": "", "release": "part of the bundled sample"},
              "shards": {"k": [1], "tokens_per_shard": 1_000_000, "run_tokens": 500_000},
            "pretrain": {"models": ["rnaret-k1"]},
              "dedupe": {"cluster_identity": 0.9}}
    write_yaml(workdir / "leakage.yaml", config)
    snakemake(workdir, "--cores", "2", *REPORT_TARGETS, "--configfile", workdir / "leakage.yaml", timeout=900)
    return workdir


def test_the_summary_shows_each_pass_per_split_and_the_clustering(run):
    summary = {row["stage"]: row for row in read_tsv(run / "results/corpus/summary.tsv")}
    identical, similar, cluster = summary["leakage identical"], summary["leakage similar"], summary["cluster"]
    counts = read_tsv(run / "results/corpus/leakage.tsv")
    total = next(r for r in counts if r["task"] == "all")
    assert int(identical["records_removed"]) == int(total["corpus_records_identical"])
    assert int(similar["records_removed"]) == int(total["corpus_records_similar"]) >= 1
    for row in counts[:-1]:
        label = f"{row['task']}/{row['dataset']}/{row['split']}"
        assert f"{label}: {row['corpus_records_identical']} identical, {row['corpus_records_similar']} similar" \
            in similar["detail"]
    assert "MMseqs2 14" in similar["detail"] and "E <= 1" in similar["detail"]
    assert int(cluster["records_in"]) == int(similar["records_out"]) > int(cluster["records_out"])
    assert int(summary["filter"]["records_in"]) == int(cluster["records_out"])
    kept = {line[1:].split()[0] for line in gzip.open(run / "results/corpus/filtered.fa.gz", "rt") if line[0] == ">"}
    assert "planted_trna" not in kept


def test_the_report_has_the_figure_the_closest_pairs_and_the_homology_of_every_dataset(run):
    assert (run / "results/corpus/leakage.png").read_bytes()[:4] == b"\x89PNG"
    closest = read_tsv(run / "results/corpus/leakage_closest.tsv")
    assert 1 <= len(closest) <= 10 and closest[0]["identity"] == "1.000"
    homology = read_tsv(run / "results/homology/summary.tsv")
    assert {(r["task"], r["dataset"]) for r in homology} == {
        ("structure", "bprna"), ("interaction", "mirtar"), ("interaction", "mirtar_indtest"), ("coding", "mouse"),
        ("sequence-classification", "mncr")}
    for task, dataset in {(r["task"], r["dataset"]) for r in homology}:
        assert (run / f"results/homology/{task}/{dataset}.tsv").is_file()
    log = (run / "logs/data/remove_leakage.log").read_text()
    assert "mmseqs search" in log and "leakage:" in log


def test_a_threshold_reruns_the_leakage_stage_and_resources_rerun_nothing(run):
    base = {"corpus": {"url": "corpus.fa.gz", "md5": "", "release": "part of the bundled sample"},
            "shards": {"k": [1], "tokens_per_shard": 1_000_000, "run_tokens": 500_000},
            "pretrain": {"models": ["rnaret-k1"]},
            "dedupe": {"cluster_identity": 0.9}}
    same = write_yaml(run / "same.yaml", {**base, "leakage": {"threads": 2, "mem_mb": 3000}})
    assert planned_jobs(run, *REPORT_TARGETS, "--configfile", same) == set()
    stricter = write_yaml(run / "stricter.yaml", {**base, "leakage": {"min_identity": 0.9}})
    rules = {rule for rule, _ in planned_jobs(run, *REPORT_TARGETS, "--configfile", stricter)}
    assert {"remove_leakage", "cluster_corpus", "filter_lengths", "leakage_report", "homology",
            "homology_summary", "corpus_summary"} <= rules
    # the stages before it rerun only to rebuild their temporary outputs; the download stays
    assert "download_corpus" not in rules


def test_the_mmseqs2_wrapper_keeps_one_representative_per_cluster(tmp_path):
    (tmp_path / "in.fa").write_text(">a first\nACGTACGGTACCGATAGCATCGACTAGCATTACGACGATCGATCAGCGCGCATATACGACTAGC\n"
                                    ">b near copy of a\nACGTACGGTACCGATAGCATCGACTAGCATTACGACGATCGATCAGCGCGCATATACGACTAGG\n"
                                    ">c other\nTTTTGGGGCCCCAAAATTGGCCAAGGTTCCAATTGGCCAAGGTTCCAAGGTTCCAAGGTTCCAA\n")
    wrapper = (ROOT / "workflow/wrappers/mmseqs2").as_uri()
    (tmp_path / "Snakefile").write_text(f'''
rule cluster:
    input:
        "in.fa",
    output:
        rep="out/rep.fa",
        clusters="out/clusters.tsv",
    params:
        command="easy-linclust",
        extra="--min-seq-id 0.9",
    log:
        "logs/cluster.log",
    threads: 1
    resources:
        mem_mb=1000,
    wrapper:
        "{wrapper}"
''')
    snakemake(tmp_path, "--cores", "1")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clusters.tsv", "rep.fa"]
    members = [line.split("\t") for line in (tmp_path / "out/clusters.tsv").read_text().splitlines()]
    assert len(members) == 3 and len({rep for rep, _ in members}) == 2
    reps = [line for line in (tmp_path / "out/rep.fa").read_text().splitlines() if line.startswith(">")]
    assert len(reps) == 2 and any(r.startswith(">c other") for r in reps)
