"""The plan of the paper's analyses: which evaluations they cover on the default run, and the
options their commands receive."""
from __future__ import annotations

import shlex
from types import SimpleNamespace

import yaml

from conftest import ROOT
from rnaret.settings import Plan, validate_config
from rnaret.settings.stages.analyses import ANALYSIS_FILES, analysis_dir


def default_plan(changes: dict | None = None) -> Plan:
    from workflow_copy import merged

    return Plan(validate_config(merged(yaml.safe_load((ROOT / "config.yaml").read_text()), changes or {})))


def option(args: str, name: str) -> str:
    words = shlex.split(args)
    return words[words.index(name) + 1]


def test_the_default_run_analyses_its_retnet_models_and_every_structure_evaluation():
    plan = default_plan()
    targets = plan.analyses.targets()
    dirs = sorted({t.rsplit("/", 1)[0] for t in targets})
    assert dirs == sorted([
        analysis_dir("structure", "bprna", model) for model in ("rnaret-k1", "transformer-k1", "onehot", "vienna")
    ] + [analysis_dir("interaction", d, "rnaret-k5") for d in ("mirtar", "mirtar_indtest")]
      + [analysis_dir("coding", "mouse", "rnaret-k5")])
    coding = analysis_dir("coding", "mouse", "rnaret-k5")
    assert [t for t in targets if t.startswith(coding + "/")] == [f"{coding}/{n}" for n in ANALYSIS_FILES["transcripts"]]
    interaction = analysis_dir("interaction", "mirtar", "rnaret-k5")
    assert {t.rsplit("/", 1)[1] for t in targets if t.startswith(interaction + "/")} == set(
        ANALYSIS_FILES["pca"] + ANALYSIS_FILES["cls-retention"])
    # every figure has its data as TSV beside it, and all are final targets
    for names in ANALYSIS_FILES.values():
        assert any(n.endswith(".tsv") for n in names) and any(n.endswith(".png") for n in names)
    assert set(targets) <= set(plan.targets())


def test_analysis_inputs_and_options_name_the_evaluated_model():
    plan = default_plan({"report": {"analyses": {"codon_transcripts": 7, "layer": -2}}})
    pca = SimpleNamespace(task="interaction", dataset="mirtar_indtest", model="rnaret-k5")
    inputs = plan.analyses.pca_inputs(pca)
    # the independent test set is scored by the model fine-tuned on mirtar
    assert inputs == {"checkpoint": "results/interaction/mirtar/rnaret-k5/checkpoint",
                      "test": "resources/mirna_target/mirtar_deepmirtar_indtest.tsv",
                      "pretrained": "results/pretrain/rnaret-k5/checkpoint"}
    assert option(plan.analyses.pca_args(pca), "--pretrained") == inputs["pretrained"]
    assert plan.analyses.inputs(pca) == {k: v for k, v in inputs.items() if k != "pretrained"}
    args = plan.analyses.args(pca)
    assert option(args, "--layer") == "-2" and "--pretrained" not in args
    assert "--split" not in shlex.split(args)
    coding = SimpleNamespace(task="coding", dataset="mouse", model="rnaret-k5")
    args = plan.analyses.args(coding)
    assert option(args, "--predictions") == plan.analyses.inputs(coding)["predictions"] == \
        "results/coding/mouse/rnaret-k5/predictions.tsv"
    assert option(args, "--max-transcripts") == "7" and option(args, "--device") == "cpu"
    mirtar = SimpleNamespace(task="interaction", dataset="mirtar", model="rnaret-k5")
    assert option(plan.analyses.args(mirtar), "--split") == "test"
    assert plan.analyses.f1_column(SimpleNamespace(model="vienna")) == "mfe_f1"
    assert plan.analyses.f1_column(SimpleNamespace(model="rnaret-k1")) == "f1"


def test_without_a_retnet_model_only_the_structure_analyses_remain():
    plan = default_plan({"finetune": {"interaction": {"models": ["onehot"]}, "coding": {"models": ["onehot"]}}})
    assert {t.split("/")[3] for t in plan.analyses.targets()} == {"structure"}
