"""Exact rerun triggers on a completed run: the whole pipeline runs once on subsets of the bundled
data (tiny pretraining, two fine-tuning steps; a few minutes on 2 cores), then each config change
is dry-run and the jobs it plans are compared, job by job, with exactly those it affects: a job
reruns when its resolved settings or its inputs change, and only then."""
from __future__ import annotations

import shutil

import pytest

from workflow_copy import make_small_run, make_workdir, merged, planned_jobs, snakemake, write_yaml

pytestmark = pytest.mark.slow  # runs the whole pipeline once (small), then dry runs

PRETRAIN = {("pretrain", f"results/pretrain/{m}/checkpoint") for m in ("rnaret-k1", "rnaret-k5")}
FINETUNE = {("finetune", "results/interaction/mirtar/rnaret-k5/checkpoint"),
            ("finetune", "results/coding/mouse/rnaret-k5/checkpoint"),
            ("finetune", "results/structure/bprna/rnaret-k1/checkpoint"),
            ("finetune", "results/sequence-classification/mncr/rnaret-k5/checkpoint")}
EVALUATE = {("evaluate_classifier", "results/interaction/mirtar/rnaret-k5/metrics.tsv"),
            ("evaluate_classifier", "results/interaction/mirtar_indtest/rnaret-k5/metrics.tsv"),
            ("evaluate_classifier", "results/coding/mouse/rnaret-k5/metrics.tsv"),
            ("evaluate_structure", "results/structure/bprna/rnaret-k1/metrics.tsv"),
            ("evaluate_generic", "results/sequence-classification/mncr/rnaret-k5/metrics.tsv")}
TABLES = {("tables", "results/tables/structure.html")}
STRUCTURE_FIGURES = {("f1_distribution", "results/report/structure/bprna/rnaret-k1/f1_distribution.png"),
                     ("structure_figures_index", "results/report/structure/figures.txt")}
TRAINING_RULES = {"pretrain", "finetune"}
HOMOLOGY_SUMMARY = {("homology_summary", "results/homology/summary.tsv")}
# the paper's analyses of the fine-tuned RetNet models (rule, first output)
ANALYSES = "results/report/analyses"
STRUCTURE_ANALYSES = {("analyses_structure", f"{ANALYSES}/structure/bprna/rnaret-k1/per_sequence.tsv")}
INTERACTION_ANALYSES = {job for d in ("mirtar", "mirtar_indtest") for job in (
    ("analyses_pca", f"{ANALYSES}/interaction/{d}/rnaret-k5/pca_points.tsv"),
    ("analyses_cls_retention", f"{ANALYSES}/interaction/{d}/rnaret-k5/cls_profile.tsv"))}
CODING_ANALYSES = {("analyses_transcripts", f"{ANALYSES}/coding/mouse/rnaret-k5/profile.tsv")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The small pipeline run to completion; returns (workdir, its configfile's content)."""
    workdir = make_workdir(tmp_path_factory.mktemp("rerun"))
    config = make_small_run(workdir)
    snakemake(workdir, "--cores", "2", "--configfile", workdir / "small.yaml", timeout=1500)
    return workdir, config


def plan_after(run, changes: dict, name: str) -> set[tuple[str, str]]:
    """The jobs a dry run plans with ``changes`` merged over the run's configfile."""
    workdir, config = run
    configfile = write_yaml(workdir / f"{name}.yaml", merged(config, changes))
    return planned_jobs(workdir, "--configfile", configfile)


def test_the_completed_run_has_nothing_to_do(run):
    workdir, _ = run
    assert planned_jobs(workdir, "--configfile", workdir / "small.yaml") == set()
    assert (workdir / "results/tables/coding.tsv").is_file()
    # the generic task's evaluation has its row in its table
    table = (workdir / "results/tables/sequence-classification.tsv").read_text()
    assert "mncr\trnaret-k5" in table


def test_resources_alone_rerun_nothing(run):
    assert plan_after(run, {"pretrain": {"threads": 1, "mem_mb": 3000, "runtime": 60},
                            "finetune": {"threads": 1}, "dedupe": {"mem_mb": 2000}}, "resources") == set()


@pytest.mark.parametrize("changes", [{"pretrain": {"preset": "laptop"}},
                                     {"pretrain": {"overrides": {"max_steps": 5}}}],
                         ids=["preset", "override"])
def test_a_pretraining_setting_reruns_the_pretrainings_and_what_uses_them(run, changes):
    assert plan_after(run, changes, "pretraining") == (PRETRAIN | FINETUNE | EVALUATE | TABLES | STRUCTURE_FIGURES
                                                       | STRUCTURE_ANALYSES | INTERACTION_ANALYSES | CODING_ANALYSES)


def test_a_task_setting_reruns_that_tasks_finetunings_only(run):
    changes = {"finetune": {"coding": {"settings": {"lr": 0.01}}}}
    assert plan_after(run, changes, "task_settings") == {
        ("finetune", "results/coding/mouse/rnaret-k5/checkpoint"),
        ("evaluate_classifier", "results/coding/mouse/rnaret-k5/metrics.tsv")} | TABLES | CODING_ANALYSES


def test_a_model_setting_reruns_that_models_finetuning_and_its_evaluations(run):
    changes = {"finetune": {"interaction": {"model_settings": {"rnaret-k5": {"lr": 0.01}}}}}
    assert plan_after(run, changes, "model_settings") == {
        ("finetune", "results/interaction/mirtar/rnaret-k5/checkpoint"),
        ("evaluate_classifier", "results/interaction/mirtar/rnaret-k5/metrics.tsv"),
        ("evaluate_classifier", "results/interaction/mirtar_indtest/rnaret-k5/metrics.tsv")} | TABLES | INTERACTION_ANALYSES


def test_a_datasets_path_reruns_what_reads_it(run):
    workdir, _ = run
    shutil.copy(workdir / "data/mouse_train.fa.gz", workdir / "data/mouse_train_copy.fa.gz")
    changes = {"datasets": {"coding": {"mouse": {"train": "data/mouse_train_copy.fa.gz"}}}}
    assert plan_after(run, changes, "dataset_path") == {
        ("finetune", "results/coding/mouse/rnaret-k5/checkpoint"),
        ("evaluate_classifier", "results/coding/mouse/rnaret-k5/metrics.tsv"),
        ("homology", "results/homology/coding/mouse.tsv")} | TABLES | HOMOLOGY_SUMMARY | CODING_ANALYSES


def test_another_shard_k_builds_those_shards_only(run):
    assert plan_after(run, {"shards": {"k": [1, 3, 5]}}, "shards_k") == {
        ("shard_tokens", "results/shards/k3"), ("corpus_summary", "results/corpus/summary.tsv")}


def test_the_corpus_release_label_reruns_only_the_summary(run):
    jobs = plan_after(run, {"corpus": {"release": "another label"}}, "release")
    assert jobs == {("corpus_summary", "results/corpus/summary.tsv")}


def test_a_test_only_dataset_plans_its_evaluation_and_no_training(run):
    changes = {"datasets": {"coding": {"mouse_extra": {"test": "data/mouse_test.fa.gz", "finetuned_on": "mouse"}}}}
    jobs = plan_after(run, changes, "test_only")
    assert not {rule for rule, _ in jobs} & TRAINING_RULES
    assert jobs == {("evaluate_classifier", "results/coding/mouse_extra/rnaret-k5/metrics.tsv"),
                    ("homology", "results/homology/coding/mouse_extra.tsv"),
                    ("analyses_transcripts", f"{ANALYSES}/coding/mouse_extra/rnaret-k5/profile.tsv")} \
        | TABLES | HOMOLOGY_SUMMARY


@pytest.mark.parametrize("changes, expected", [
    ({"report": {"contact_map_examples": 2}},
     {("vienna_contact_maps", "results/report/structure/bprna/vienna/contact_maps.png"),
      ("structure_figures_index", "results/report/structure/figures.txt")}),
    ({"report": {"length_scaling": {"lengths": [32, 48]}}},
     {("length_scaling", "results/tables/length_scaling.tsv")}),
    ({"report": {"analyses": {"codon_transcripts": 3}}}, CODING_ANALYSES),
], ids=["contact_maps", "length_scaling", "analyses"])
def test_a_report_setting_plans_no_training(run, changes, expected):
    jobs = plan_after(run, changes, "report")
    assert jobs == expected


def test_compare_protocols_adds_the_other_protocols_jobs_and_reruns_nothing_of_the_run(run):
    """The other protocol's fine-tunings and evaluations, in their own tree, from the same
    pretrained models; none of the run's own jobs (its protocol's results stay as they are)."""
    jobs = plan_after(run, {"compare_protocols": ["published"]}, "compare_protocols")
    # the paper tasks only: a generic task has no published protocol to compare with
    compared = {(f"{rule}_compared", path.replace("results/", "results/protocols/published/", 1))
                for rule, path in FINETUNE | EVALUATE if "/sequence-classification/" not in path}
    assert jobs == compared | TABLES


def test_the_protocol_reruns_the_corpus_pretrainings_and_evaluations(run):
    """protocol: published: the published corpus (normalize's temporary output rebuilt, the filter
    cutting instead of splitting, shards holding nothing out), fp16 pretrainings, and every
    fine-tuning and evaluation under --protocol published; the homology tables stay."""
    jobs = plan_after(run, {"protocol": "published"}, "protocol")
    corpus = {("normalize_corpus", "results/corpus/normalized.fa.gz"),
              ("filter_lengths", "results/corpus/filtered.fa.gz"),
              ("shard_tokens", "results/shards/k1"), ("shard_tokens", "results/shards/k5"),
              ("corpus_summary", "results/corpus/summary.tsv")}
    assert jobs == (corpus | PRETRAIN | FINETUNE | EVALUATE | TABLES | STRUCTURE_FIGURES | STRUCTURE_ANALYSES
                    | INTERACTION_ANALYSES | CODING_ANALYSES)
