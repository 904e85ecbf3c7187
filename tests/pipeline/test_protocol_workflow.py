"""The protocols in the real Snakemake (dry runs of a temporary copy of the workflow): the paper's
run plans every released file on exactly the datasets it was trained for and our own models,
each under both protocols; the default run passes `--protocol rnaret` to every fine-tuning and
evaluation and plans nothing else; `--config protocol=published` plans the bundled run under the
published protocol at the same paths."""
from __future__ import annotations

import re
import shlex
import shutil

import pytest

from conftest import ROOT
from workflow_copy import make_workdir, snakemake, write_yaml

pytestmark = pytest.mark.slow  # real Snakemake dry runs

EVALUATE_RULES = ("evaluate_classifier", "evaluate_structure")
MODEL_RULES = ("finetune", *EVALUATE_RULES)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("protocol_workflow"))
    (work / "config").mkdir()
    shutil.copy(ROOT / "config" / "paper.yaml", work / "config" / "paper.yaml")
    return work


def dry_run_commands(workdir, *args) -> list[tuple[str, list[str]]]:
    """(rule, argument list) of every shell command a dry run (-p) prints."""
    result = snakemake(workdir, "--dry-run", "--printshellcmds", "--nolock", "--cores", "64", *args)
    commands, rule = [], None
    for line in result.stdout.splitlines():
        match = re.match(r"(?:local)?rule (\w+):", line)
        if match:
            rule = match.group(1)
        elif line.startswith("Shell command: ") and rule:
            commands.append((rule, shlex.split(line[len("Shell command: "):])))
    assert commands, result.stdout[-3000:]
    return commands


def value_of(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def evaluations(commands) -> set[tuple[str, str, str, str]]:
    """(protocol, --out folder, --checkpoint, --split) of every planned evaluation."""
    return {(value_of(words, "--protocol"), value_of(words, "--out"), value_of(words, "--checkpoint"),
             value_of(words, "--split"))
            for rule, words in commands if rule.removesuffix("_compared") in EVALUATE_RULES}


MODELS = "results/archives/paper_models/model"
DATA = "results/archives/paper_data/data"
# each released file of model.tar.gz and the test sets of the data it was trained on
RELEASED = {
    ("structure", "archiveii", "released-RNAStrAlign_1mer"): (f"{MODELS}/ssp/RNAStrAlign_1mer.pth",
                                                              f"test={DATA}/archiveII"),
    ("interaction", "deepmirtar_miraw", "released-MirTar_5mer"): (
        f"{MODELS}/rri/MirTar_5mer.pth", f"test={DATA}/data_DeepMirTar_miRAW_noRepeats_3folds_test.txt"),
    ("interaction", "deepmirtar_indtest", "released-MirTar_5mer"): (
        f"{MODELS}/rri/MirTar_5mer.pth", f"test={DATA}/data_DeepMirTar_IndTest_noRepeats_3folds.txt"),
    ("coding", "lncrna_h", "released-lnc_H_5mer"): (f"{MODELS}/lnc/lnc_H_5mer.pth", f"test={DATA}/lncRNA_H/test.fa"),
    ("coding", "lncrna_m", "released-lnc_M_5mer"): (f"{MODELS}/lnc/lnc_M_5mer.pth", f"test={DATA}/lncRNA_M/test.fa"),
}
# our models: (task, dataset) -> models, and the dataset each test set's models were fine-tuned on
OURS = {("structure", "archiveii"): ["rnaret-k1", "transformer-k1", "onehot"],
        ("structure", "bprna"): ["rnaret-k1", "transformer-k1", "onehot"],
        ("interaction", "deepmirtar_miraw"): ["rnaret-k5", "rnaret-k3", "transformer-k5", "onehot"],
        ("interaction", "deepmirtar_indtest"): ["rnaret-k5", "rnaret-k3", "transformer-k5", "onehot"],
        ("coding", "lncrna_h"): ["rnaret-k5", "rnaret-k3", "transformer-k5", "onehot"],
        ("coding", "lncrna_m"): ["rnaret-k5", "rnaret-k3", "transformer-k5", "onehot"]}
TEST_SPLITS = {("structure", "bprna"): f"test={DATA}/bpRNA/TS0",
               **{key[:2]: split for key, (_, split) in RELEASED.items()}}
FINETUNED_ON = {"deepmirtar_indtest": "deepmirtar_miraw"}


def test_the_paper_run_evaluates_each_released_file_on_its_datasets_and_our_models_under_both(workdir):
    filled = write_yaml(workdir / "paper_filled.yaml", {"archives": {
        "paper_data": {"md5": "a" * 32}, "paper_models": {"md5": "b" * 32}}})
    commands = dry_run_commands(workdir, "--configfile", "config/paper.yaml", filled.name)
    # the paper's run is the published protocol at the contract paths, the corrected one beside it
    where = {"published": "results", "rnaret": "results/protocols/rnaret"}
    want = set()
    for protocol, root in where.items():
        for (task, dataset, model), (checkpoint, split) in RELEASED.items():
            want.add((protocol, f"{root}/{task}/{dataset}/{model}", checkpoint, split))
        for (task, dataset), models in OURS.items():
            trained_on = FINETUNED_ON.get(dataset, dataset)
            for model in models:
                want.add((protocol, f"{root}/{task}/{dataset}/{model}",
                          f"{root}/{task}/{trained_on}/{model}/checkpoint", TEST_SPLITS[(task, dataset)]))
    planned = evaluations(commands)
    assert planned == want, (sorted(planned - want), sorted(want - planned))
    # each released file: exactly the datasets it was trained for, once per protocol
    for checkpoint in {c for c, _ in RELEASED.values()}:
        splits = sorted((p, s) for p, _, c, s in planned if c == checkpoint)
        assert splits == sorted((p, s) for p in where for c, s in RELEASED.values() if c == checkpoint)
    # our models are fine-tuned under each protocol, into that protocol's tree
    finetunes = [(value_of(words, "--protocol"), value_of(words, "--out"))
                 for rule, words in commands if rule.removesuffix("_compared") == "finetune"]
    assert len(finetunes) == 2 * 18 and len(set(finetunes)) == len(finetunes)
    for protocol, out in finetunes:
        assert out.startswith(f"{where[protocol]}/") and out.endswith("/checkpoint"), (protocol, out)
        assert (protocol == "rnaret") == out.startswith("results/protocols/rnaret/"), out
    # the published protocol fine-tunes and evaluates in float32, as the published scripts do
    for rule, words in commands:
        if rule.removesuffix("_compared") in MODEL_RULES and value_of(words, "--protocol") == "published":
            assert value_of(words, "--precision") == "fp32", words


def test_the_default_run_passes_protocol_rnaret_and_plans_the_same_paths(workdir):
    commands = dry_run_commands(workdir)
    model_jobs = [(rule, words) for rule, words in commands if rule in MODEL_RULES]
    # fine-tunes (9 of the paper tasks, 3 of the MncR families), evaluations of the paper tasks
    assert len(model_jobs) == 12 + 12
    assert not any(rule.endswith("_compared") for rule, _ in commands)
    for rule, words in model_jobs:
        assert value_of(words, "--protocol") == "rnaret" and value_of(words, "--precision") == "auto", words
        assert re.fullmatch(r"results/[\w-]+/\w+/[\w-]+(/checkpoint)?", value_of(words, "--out")), words
    published = dry_run_commands(workdir, "--config", "protocol=published")
    assert sorted(value_of(w, "--out") for r, w in published if r in MODEL_RULES) == \
        sorted(value_of(w, "--out") for _, w in model_jobs)
    for rule, words in published:
        if rule in MODEL_RULES:
            assert value_of(words, "--protocol") == "published", words


def test_the_published_corpus_and_pretraining_run_through_the_same_rules(tmp_path):
    """`--config protocol=published` on a small corpus with long records: download, normalize,
    filter (each record cut to its first 2,000 nt, none dropped), shards holding nothing out, the
    summary without dedupe or leakage rows, and a pretraining with --precision fp16 (fp32 on
    this CPU): no dedupe, leakage or clustering job."""
    import json

    from rnaret.io.fasta import read_fasta
    from workflow_copy import _fasta_records, _write_fasta_gz, make_small_run

    work = make_workdir(tmp_path / "published")
    make_small_run(work)
    records = _fasta_records(ROOT / "resources/rnacentral/rnacentral_sample.fa.gz")
    chosen = [r for r in records if len(r[1]) <= 2000][:120] + [r for r in records if len(r[1]) > 2000][:6]
    _write_fasta_gz(work / "data" / "corpus.fa.gz", chosen)
    targets = ["results/corpus/summary.tsv", "results/pretrain/rnaret-k1/metrics.tsv"]
    # a tenth drawn for validation (also trained on): a few records of this small corpus
    write_yaml(work / "published.yaml", {"protocol": "published", "shards": {"valid_fraction": 0.1}})
    result = snakemake(work, *targets, "--cores", "2", "--printshellcmds", "--configfile", "small.yaml",
                       "published.yaml", timeout=900)
    ran = set(re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, flags=re.M))
    assert {"normalize_corpus", "filter_lengths", "shard_tokens", "corpus_summary", "pretrain"} <= ran
    assert not ran & {"dedupe_corpus", "remove_leakage", "cluster_corpus"}, ran
    filtered = list(read_fasta(work / "results/corpus/filtered.fa.gz"))
    # every record, in order, under its header: U read as T (normalize), then its first 2,000 nt
    assert [(r.description, r.sequence) for r in filtered] == [
        (h, s.translate(str.maketrans("Uu", "Tt"))[:2000]) for h, s in chosen]
    counts = json.loads((work / "results/corpus/filter.json").read_text())
    assert counts["long_cut"] == 6 and counts["too_short"] == 0 and counts["records_out"] == len(chosen)
    manifest = json.loads((work / "results/shards/k1/manifest.json").read_text())
    assert manifest["shards"]["valid_from_train"] and manifest["splits"]["train"]["records"] == len(chosen)
    stages = [line.split("\t")[0] for line in (work / "results/corpus/summary.tsv").read_text().splitlines()[1:]]
    assert stages == ["download", "normalize", "filter", "shard k1", "shard k5"]
    log = (work / "logs/pretrain/rnaret-k1.log").read_text()
    assert (work / "results/pretrain/rnaret-k1/checkpoint").is_dir(), log[-2000:]
    assert re.search(r"--precision fp16\b", result.stdout + result.stderr)
