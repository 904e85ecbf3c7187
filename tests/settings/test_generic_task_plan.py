"""The settings resolver plans the generic tasks' jobs: datasets of a generic task type in
`datasets:` or the dataset sheet, their fine-tune and evaluation options (the task's resolved
settings), their leakage splits, their tables; bad settings name the key."""
from __future__ import annotations

import json
import shlex
from types import SimpleNamespace

import pytest
import yaml

from conftest import ROOT
from dataset_sheets import write_sheet
from rnaret.settings import Plan, SettingsError, validate_config

TASK = "sequence-classification"
TABLE = "resources/ncrna/mncr_families.tsv"


def plan_of(changes: dict | None = None) -> Plan:
    from workflow_copy import merged

    return Plan(validate_config(merged(yaml.safe_load((ROOT / "config.yaml").read_text()), changes or {})))


def option(args: str, name: str) -> list[str]:
    words = shlex.split(args)
    return [words[i + 1] for i, word in enumerate(words) if word == name]


def test_the_default_config_plans_the_bundled_ncrna_families():
    plan = plan_of()
    models = ("rnaret-k5", "transformer-k5", "onehot")
    for model in models:
        assert f"results/{TASK}/mncr/{model}/metrics.tsv" in plan.targets()
    assert f"results/tables/{TASK}.md" in plan.targets() and TASK in plan.report.tasks()
    # a generic task without datasets gets no table
    assert "token-regression" not in plan.report.tasks()
    assert shlex.split(plan.report.tables_args())[1:] == ["structure", "interaction", "coding", TASK]
    wildcards = SimpleNamespace(task=TASK, dataset="mncr", model="onehot")
    args = plan.finetune.args(wildcards)
    assert option(args, "--task") == [TASK] and option(args, "--init") == ["onehot"]
    assert option(args, "--split") == [f"train={TABLE}#train", f"valid={TABLE}#valid"]
    settings = json.loads(option(args, "--settings")[0])
    assert settings["preset"] == "laptop" and settings["classes"] is None and settings["pooling"] == "mean"
    assert (settings["lr"], settings["head_lr"], settings["epochs"]) == (1e-3, 3e-3, 3)
    assert plan.finetune.inputs(wildcards) == {"train": TABLE, "valid": TABLE}
    evaluate = plan.finetune.evaluate_args(SimpleNamespace(task=TASK, dataset="mncr", model="rnaret-k5"))
    assert option(evaluate, "--checkpoint") == [f"results/{TASK}/mncr/rnaret-k5/checkpoint"]
    assert option(evaluate, "--split") == [f"test={TABLE}#test"]
    # the valid and test sequences are held out of the pretraining corpus like the paper tasks'
    assert {f"{TASK}/mncr/valid", f"{TASK}/mncr/test"} <= {s.label for s in plan.data.leakage_sources()}


def test_settings_and_models_of_a_generic_task():
    plan = plan_of({"finetune": {TASK: {"models": ["onehot"], "settings": {"pooling": "cls", "epochs": 5},
                                        "model_settings": {"onehot": {"lr": 0.01}}}}})
    assert [t for t in plan.targets() if t.startswith(f"results/{TASK}/")] == [f"results/{TASK}/mncr/onehot/metrics.tsv"]
    resolved = plan.finetune.settings(TASK, "onehot")
    assert (resolved["pooling"], resolved["epochs"], resolved["lr"]) == ("cls", 5, 0.01)
    with pytest.raises(SettingsError, match=rf"finetune\.{TASK}\.settings\.pool: unknown key 'pool'; did you mean 'pooling'"):
        plan_of({"finetune": {TASK: {"settings": {"pool": "mean"}}}})
    with pytest.raises(SettingsError, match=rf"finetune\.{TASK}\.models"):
        plan_of({"finetune": {TASK: {"models": ["published-k5"]}}})


def test_a_generic_dataset_from_the_sheet(tmp_path):
    sheet = write_sheet(tmp_path / "datasets.tsv", [
        ("token-regression", "reactivity", "train", TABLE, "train", ""),
        ("token-regression", "reactivity", "test", TABLE, "test", "")])
    plan = plan_of({"dataset_sheet": str(sheet), "finetune": {"token-regression": {"models": ["onehot"]}}})
    assert "results/token-regression/reactivity/onehot/metrics.tsv" in plan.targets()
    assert "token-regression" in plan.report.tasks()
    args = plan.finetune.args(SimpleNamespace(task="token-regression", dataset="reactivity", model="onehot"))
    assert option(args, "--split") == [f"train={TABLE}#train"]  # valid: held out of train by the task


def test_a_fasta_split_with_its_side_table_of_labels():
    fasta = {s: {"path": f"data/{s}.fa", "labels": f"data/{s}_labels.tsv"} for s in ("train", "valid", "test")}
    plan = plan_of({"datasets": {"token-classification": {"paired": fasta}},
                    "finetune": {"token-classification": {"models": ["onehot"]}}})
    job = SimpleNamespace(task="token-classification", dataset="paired", model="onehot")
    args = plan.finetune.args(job)
    assert option(args, "--split") == ["train=data/train.fa", "valid=data/valid.fa"]
    assert option(args, "--labels") == ["train=data/train_labels.tsv", "valid=data/valid_labels.tsv"]
    assert plan.finetune.inputs(job) == {"train": "data/train.fa", "valid": "data/valid.fa",
                                         "train_labels": "data/train_labels.tsv",
                                         "valid_labels": "data/valid_labels.tsv"}
    assert option(plan.finetune.evaluate_args(job), "--labels") == ["test=data/test_labels.tsv"]
    assert plan.finetune.evaluate_inputs(job)["test_labels"] == "data/test_labels.tsv"
    # the leakage stage gets the entry the task reads
    leakage = json.loads(option(plan.data.leakage_args(), "--datasets")[0])
    assert leakage["token-classification"]["paired"]["test"] == fasta["test"]
    with pytest.raises(SettingsError, match=r"datasets\.coding\.mouse\.train\.labels.*for the generic tasks"):
        plan_of({"datasets": {"coding": {"mouse": {"train": {"path": "a.fa", "labels": "a.tsv"}}}}})
    with pytest.raises(SettingsError, match=r"datasets\.token-classification\.p\.test: a FASTA split with a side table"):
        plan_of({"datasets": {"token-classification": {"p": {"test": {"path": "a.fa", "labels": "a.tsv",
                                                                         "split": "test"}}}}})
