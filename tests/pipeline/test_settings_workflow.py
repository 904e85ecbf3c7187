"""The settings resolver inside the real Snakemake (dry runs of a temporary copy of the workflow):
config errors as the user sees them, released weights without the corpus, devices in the
commands, the dataset sheet, archive members; and that workflow/ holds no resolution logic."""
from __future__ import annotations

import re
import shlex

import pytest

from conftest import ROOT
from dataset_sheets import DEFAULT_SHEET, write_sheet
from workflow_copy import make_workdir, planned_jobs, snakemake, write_yaml

pytestmark = pytest.mark.slow  # several real Snakemake dry runs

DATA_RULES = {"download_corpus", "normalize_corpus", "dedupe_corpus", "remove_leakage", "filter_lengths",
              "shard_tokens", "corpus_summary"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("settings_workflow"))


def dry_run_commands(workdir, *args) -> dict[str, list[list[str]]]:
    """rule -> the argument lists of the shell commands a dry run (-p) prints for it, sorted (the
    order of independent jobs in a dry run is not fixed)."""
    result = snakemake(workdir, "--dry-run", "--printshellcmds", "--nolock", "--cores", "2", *args)
    commands: dict[str, list[list[str]]] = {}
    rule = None
    for line in result.stdout.splitlines():
        match = re.match(r"(?:local)?rule (\w+):", line)
        if match:
            rule = match.group(1)
        elif line.startswith("Shell command: ") and rule:
            commands.setdefault(rule, []).append(shlex.split(line[len("Shell command: "):]))
    return {rule: sorted(lists) for rule, lists in commands.items()}


def value_of(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


# ------------------------------------------------------------------ errors as the user sees them

def test_a_yaml_syntax_error_in_config_yaml_names_the_line(tmp_path):
    work = make_workdir(tmp_path / "yaml")
    text = (work / "config.yaml").read_text()
    (work / "config.yaml").write_text(text.replace("  structure:\n", "  structure: [\n", 1))
    result = snakemake(work, "-n", check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "config.yaml: line" in message and "not valid YAML" in message, message[-2000:]


@pytest.mark.parametrize("extra, words", [
    ("pretrain: {overrides: {lrr: 1}}", ["pretrain.overrides", "lrr"]),
    ("pretrain: {preset: huge}", ["pretrain", "preset", "huge"]),
    ("finetune: {coding: {settings: {epoch: 2}}}", ["finetune.coding.settings", "epoch"]),
    ("report: {contact_map_examples: 0}", ["report", "contact_map_examples"]),
    ("baselines: {vienna: {method: centroid}}", ["baselines", "vienna", "method", "centroid"]),
    ("datasets: {coding: {new: {test: a.fa, finetuned_on: nope}}}", ["datasets.coding.new.finetuned_on", "nope"]),
    ("finetune: {coding: {settings: {epochs: -3}}}", ["finetune.coding.settings.epochs", "minimum of 1"]),
    ("finetun: {coding: {}}", ["unknown key 'finetun'", "did you mean 'finetune'"]),
])
def test_bad_values_stop_snakemake_naming_the_key(workdir, tmp_path, extra, words):
    configfile = tmp_path / "extra.yaml"
    configfile.write_text(extra + "\n")
    result = snakemake(workdir, "-n", "--nolock", "--configfile", configfile, check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    for word in words:
        assert word in message, (word, message[-2000:])
    # one line naming the key: no traceback, no dump of the schema
    assert "Traceback" not in message and "Failed validating" not in message, message[-2000:]
    assert len([line for line in message.splitlines() if "config" in line and "error" in line]) == 1, message


# ------------------------------------------------------------------ what a dry run plans

def test_released_weights_and_task_data_plan_no_data_stage_job(workdir, tmp_path):
    released = tmp_path / "pretrain_5mer.pth"
    released.write_bytes(b"released weights stand-in: a dry run only checks that it exists")
    configfile = write_yaml(tmp_path / "released.yaml", {
        "pretrain": {"models": ["rnaret-k5"], "init_from": {"rnaret-k5": str(released)}},
        "finetune": {"interaction": {"models": ["rnaret-k5"]}, "coding": {"models": ["rnaret-k5"]},
                     "structure": {"models": []}, "sequence-classification": {"models": []}}})
    jobs = planned_jobs(workdir, "--configfile", configfile)
    rules = {rule for rule, _ in jobs}
    assert not rules & DATA_RULES and "pretrain" not in rules
    assert {"finetune", "evaluate_classifier", "tables"} <= rules
    commands = dry_run_commands(workdir, "--configfile", configfile)
    assert {value_of(c, "--init") for c in commands["finetune"]} == {str(released)}


def test_gpu_stages_pass_device_cuda_and_the_precision(workdir, tmp_path):
    cpu = dry_run_commands(workdir)
    for rule in ("pretrain", "finetune", "evaluate_classifier", "evaluate_structure"):
        assert {value_of(c, "--device") for c in cpu[rule]} == {"cpu"}, rule
        assert {value_of(c, "--precision") for c in cpu[rule]} == {"auto"}, rule
    configfile = write_yaml(tmp_path / "gpu.yaml", {"pretrain": {"gpus": 2}, "finetune": {"gpus": 1},
                                                    "precision": "bf16"})
    gpu = dry_run_commands(workdir, "--configfile", configfile)
    for rule in ("pretrain", "finetune", "evaluate_classifier", "evaluate_structure"):
        assert {value_of(c, "--device") for c in gpu[rule]} == {"cuda"}, rule
        assert {value_of(c, "--precision") for c in gpu[rule]} == {"bf16"}, rule
    assert {value_of(c, "--nproc") for c in gpu["pretrain"]} == {"2"}
    assert {value_of(c, "--threads") for c in gpu["pretrain"]} == {"1"}  # 2 threads shared by 2 workers
    configfile = write_yaml(tmp_path / "lenient.yaml", {"finetune": {"gpus": 1}, "allow_cpu": True})
    lenient = dry_run_commands(workdir, "--configfile", configfile)
    assert {value_of(c, "--device") for c in lenient["finetune"]} == {"auto"}


def test_a_dataset_sheet_plans_the_jobs_of_the_datasets_block(tmp_path):
    work = make_workdir(tmp_path / "sheet")
    text = (work / "config.yaml").read_text()
    (work / "config.yaml").write_text(text[: text.index("\ndatasets:")] + "\ndataset_sheet: datasets.tsv\n")
    write_sheet(work / "datasets.tsv", DEFAULT_SHEET)
    from_sheet = dry_run_commands(work)
    from_block = dry_run_commands(make_workdir(tmp_path / "block"))
    assert from_sheet == from_block


def test_archive_members_are_read_from_the_unpacked_folder(workdir, tmp_path):
    unpacked = workdir / "results/archives/paper_models/model"
    unpacked.mkdir(parents=True)
    (unpacked / "pretrain_5mer.pth").write_bytes(b"stand-in")
    configfile = write_yaml(tmp_path / "archive.yaml", {
        "archives": {"paper_models": {"url": "https://example.org/model.tar.gz", "md5": "0" * 32}},
        "pretrain": {"models": [], "init_from": {"rnaret-k5": {"archive": "paper_models",
                                                               "path": "model/pretrain_5mer.pth"}}},
        "finetune": {"interaction": {"models": ["rnaret-k5"]}, "coding": {"models": []},
                     "structure": {"models": []}, "sequence-classification": {"models": []}}})
    result = snakemake(workdir, "--dry-run", "--nolock", "--cores", "1", "--configfile", configfile)
    finetune_input = re.search(r"rule finetune:\n    input: (.+)\n", result.stdout).group(1).split(", ")
    assert "results/archives/paper_models" in finetune_input
    commands = dry_run_commands(workdir, "--configfile", configfile)
    assert {value_of(c, "--init") for c in commands["finetune"]} == {
        "results/archives/paper_models/model/pretrain_5mer.pth"}


# ------------------------------------------------------------------ workflow/ only calls rnaret

# besides the three adapters, the analyses rules' output declarations (report() entries of the
# plan's file lists) and the options that name those outputs: no settings are resolved there
ALLOWED_FUNCTIONS = {"common.smk": {"check_config_file", "plan_of", "conda_env", "analysis_outputs",
                                    "analysis_options"}}


def test_no_resolution_or_merging_logic_is_left_in_the_workflow():
    """Every setting, dataset lookup and default comes from rnaret.settings: the rules hold no
    helper functions (common.smk: three one-line adapters and the analyses' output declarations), never read `config` themselves, and
    their params are calls into the plan (or fixed words of the seqkit wrapper)."""
    rules = ROOT / "workflow" / "rules"
    names = {p.name for p in rules.glob("*.smk")}
    assert {"baselines.smk", "common.smk", "data.smk", "finetune.smk", "pretrain.smk", "report.smk"} <= names
    assert names <= {"baselines.smk", "common.smk", "data.smk", "finetune.smk", "pretrain.smk", "report.smk",
                     "archives.smk", "analyses.smk"}  # no *_common.smk helper files
    for path in [ROOT / "Snakefile", *sorted(rules.glob("*.smk"))]:
        text = re.sub(r'"""(.|\n)*?"""', '""', path.read_text())  # docstrings may speak of the config
        functions = set(re.findall(r"^def (\w+)", text, flags=re.M))
        assert functions == ALLOWED_FUNCTIONS.get(path.name, set()), path.name
        for line in text.splitlines():
            code = line.split("#", 1)[0]
            if re.search(r"\bconfig\b", code) and not code.lstrip().startswith(("configfile:", "validate(config",
                                                                                  "PLAN = plan_of(config)",
                                                                                  "def plan_of(config)",
                                                                                  "return rnaret_settings.resolve(config)",
                                                                                  "rnaret_settings.validate_config(config)")):
                raise AssertionError(f"{path.name}: reads the config itself: {line.strip()}")
            assert not re.search(r"\bimport (json|re|shlex|urllib)\b|\.get\(|\.setdefault\(|\.update\(", code), \
                f"{path.name}: {line.strip()}"
        for block in re.findall(r"^    params:\n((?:        .+\n)+)", text, flags=re.M):
            for entry in re.findall(r"^        (\w+)=(.+),$", block, flags=re.M):
                name, value = entry
                assert value.startswith("PLAN.") or name in ("command", "extra"), (path.name, name, value)
