"""The settings resolver (rnaret.settings) without Snakemake: the schema's defaults, the per-job
settings it resolves (through the presets' and the tasks' own resolution), datasets from the
config and from a sheet, file references (URLs, archives), devices, and the bad values it names."""
from __future__ import annotations

import copy
import json
import shlex
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from conftest import ROOT
from dataset_sheets import DEFAULT_SHEET, write_sheet
from rnaret.io.errors import InputError
from rnaret.settings import Plan, SettingsError, load_config, read_config_file, validate_config
from rnaret.settings.dataset_sources import read_dataset_sheet
from rnaret.settings.stages import Finetune, Pretrain

CONFIG = ROOT / "config.yaml"


def default_config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def plan_of(changes: dict | None = None, base: dict | None = None) -> Plan:
    """The plan of config.yaml with ``changes`` merged key by key (as a --configfile would be)."""
    from workflow_copy import merged

    return Plan(validate_config(merged(base if base is not None else default_config(), changes or {})))


def option(args: str, name: str) -> str:
    """The value after ``name`` in a command's option string."""
    words = shlex.split(args)
    return words[words.index(name) + 1]


def wildcards(**values):
    return SimpleNamespace(**values)


# ------------------------------------------------------------------ defaults once

def test_schema_fills_every_nested_block_like_snakemake_validate():
    from snakemake.utils import validate

    ours = validate_config({})
    theirs = {}
    validate(theirs, str(ROOT / "workflow/schemas/config.schema.yaml"), set_default=True)
    assert ours == theirs
    assert ours["finetune"]["structure"]["models"] == ["rnaret-k1", "transformer-k1", "onehot"]
    assert ours["finetune"]["coding"]["settings"] == {} and ours["finetune"]["preset"] == "laptop"
    assert ours["baselines"]["vienna"] == {"threads": 2, "method": "both", "gamma": 1.0, "max_bp_span": None,
                                           "mem_mb": 4000, "runtime": 240}
    assert ours["report"]["length_scaling"]["lengths"] == [256, 512, 1024, 2048, 4096, 8192]
    assert ours["dedupe"]["leakage_splits"] == ["valid", "test"] and ours["precision"] == "auto"


def test_defaults_are_those_of_the_default_run():
    """The values the schema, config.yaml and the rules' helpers used to disagree on."""
    config = validate_config({})
    assert config["shards"]["tokens_per_shard"] == 2_000_000 and config["shards"]["run_tokens"] == 4_000_000
    assert config["pretrain"]["models"] == ["rnaret-k1", "rnaret-k5", "transformer-k1", "transformer-k5"]


def test_config_yaml_sets_only_the_data_of_the_run():
    assert set(default_config()) == {"corpus", "datasets"}


def test_a_partial_config_keeps_the_other_defaults_of_its_block():
    config = validate_config({"pretrain": {"preset": "paper"}, "finetune": {"coding": {"models": ["onehot"]}}})
    assert config["pretrain"]["models"] == validate_config({})["pretrain"]["models"]
    assert config["finetune"]["interaction"]["models"] == ["rnaret-k5", "transformer-k5", "onehot"]
    assert config["finetune"]["coding"]["released"] == {} and "published" not in config["finetune"]["coding"]
    assert config["protocol"] == "rnaret" and config["compare_protocols"] == []


# ------------------------------------------------------------------ resolved settings per job

def test_pretraining_is_the_preset_with_overrides_through_the_preset_machinery():
    from rnaret.train.config import preset

    plan = plan_of({"pretrain": {"overrides": {"max_steps": 7, "encoder": {"retnet_layers": 2}}}})
    want = preset("laptop", 5, max_steps=7, encoder={"retnet_layers": 2}, architecture="transformer").to_dict()
    assert plan.pretrain.pretrain_config("transformer-k5") == want
    args = plan.pretrain.args(wildcards(model="transformer-k5"))
    assert json.loads(option(args, "--overrides")) == want
    assert option(args, "--model") == "transformer-k5" and option(args, "--precision") == "auto"


def test_finetune_settings_are_what_the_task_resolves():
    from rnaret.tasks import get_task

    plan = plan_of({"finetune": {"preset": "paper", "coding": {"settings": {"epochs": 3},
                                                               "model_settings": {"transformer-k5": {"lr": 0.01}}}}})
    settings = plan.finetune.settings("coding", "transformer-k5")
    assert settings == get_task("coding", {"preset": "paper", "epochs": 3, "lr": 0.01}).settings
    assert plan.finetune.settings("coding", "rnaret-k5")["lr"] == get_task("coding", {"preset": "paper"}).settings["lr"]
    args = plan.finetune.args(wildcards(task="coding", dataset="mouse", model="transformer-k5"))
    assert json.loads(option(args, "--settings")) == settings
    assert option(args, "--init") == "results/pretrain/transformer-k5/checkpoint"
    assert option(args, "--split") == "train=resources/mrna_lncrna/mouse_train.fa.gz"


def test_the_default_run_gets_the_settings_its_commands_resolved_before():
    """The default config resolves to what `--config-preset laptop` and `--set preset=laptop`
    gave the commands (the default run's settings do not change)."""
    from rnaret.tasks import get_task
    from rnaret.train.config import parse_model_name, preset

    plan = plan_of()
    for model in ("rnaret-k1", "rnaret-k5", "transformer-k1", "transformer-k5"):
        arch, k = parse_model_name(model)
        assert plan.pretrain.pretrain_config(model) == preset("laptop", k, architecture=arch).to_dict()
    for task in ("interaction", "coding", "structure"):
        assert plan.finetune.settings(task, "onehot") == get_task(task, {"preset": "laptop"}).settings


def test_evaluations_follow_finetuned_on(tmp_path):
    plan = plan_of({"finetune": {"interaction": {"models": ["rnaret-k5"]}}})
    indtest = wildcards(task="interaction", dataset="mirtar_indtest", model="rnaret-k5")
    assert plan.finetune.evaluate_inputs(indtest) == {"checkpoint": "results/interaction/mirtar/rnaret-k5/checkpoint",
                                             "test": "resources/mirna_target/mirtar_deepmirtar_indtest.tsv"}


def released_files(tmp_path, *names):
    paths = []
    for name in names:
        paths.append(tmp_path / f"{name}.pth")
        paths[-1].write_bytes(b"x")
    return paths


def test_released_files_are_evaluated_on_their_own_datasets_only(tmp_path):
    miraw, indtest_only = released_files(tmp_path, "MirTar_5mer", "Indtest_5mer")
    plan = plan_of({"finetune": {"interaction": {"models": ["rnaret-k5"], "released": {
        "MirTar_5mer": {"file": str(miraw), "datasets": ["mirtar", "mirtar_indtest"]},
        "Indtest_5mer": {"file": str(indtest_only), "datasets": ["mirtar_indtest"],
                         "settings": {"batch_size": 3}}}}}})
    targets = [t for t in plan.targets() if t.startswith("results/interaction/")]
    assert targets == ["results/interaction/mirtar/rnaret-k5/metrics.tsv",
                       "results/interaction/mirtar_indtest/rnaret-k5/metrics.tsv",
                       "results/interaction/mirtar/released-MirTar_5mer/metrics.tsv",
                       "results/interaction/mirtar_indtest/released-MirTar_5mer/metrics.tsv",
                       "results/interaction/mirtar_indtest/released-Indtest_5mer/metrics.tsv"]
    job = wildcards(task="interaction", dataset="mirtar", model="released-MirTar_5mer")
    assert plan.finetune.evaluate_inputs(job) == {"checkpoint": str(miraw),
                                         "test": "resources/mirna_target/mirtar_deepmirtar_miraw.tsv"}
    args = plan.finetune.evaluate_args(job)
    assert option(args, "--checkpoint") == str(miraw)
    assert option(args, "--split") == "test=resources/mirna_target/mirtar_deepmirtar_miraw.tsv#test"
    settings = json.loads(option(args, "--settings"))
    assert "k" not in settings and settings == {k: v for k, v in plan.finetune.settings("interaction", None).items()
                                                if k != "k"}  # the command reads k from the file
    assert option(args, "--protocol") == "rnaret"
    own = plan.finetune.evaluate_args(wildcards(task="interaction", dataset="mirtar_indtest", model="released-Indtest_5mer"))
    assert json.loads(option(own, "--settings"))["batch_size"] == 3
    # a released file is evaluated, never fine-tuned
    assert not any("released-" in key for key in plan.describe()["finetune"])


@pytest.mark.parametrize("changes, words", [
    ({"finetune": {"structure": {"published": {"k1": "RNAStrAlign_1mer.pth"}}}},
     ["finetune.structure.published", "finetune.structure.released:", "datasets:", "trained for"]),
    ({"finetune": {"coding": {"models": ["rnaret-k5", "published-k5"]}}},
     ["finetune.coding.models[1]", "published-k5", "finetune.coding.released"]),
    ({"finetune": {"coding": {"released": {"lnc_H": {"file": "lnc_H_5mer.pth", "datasets": ["human"]}}}}},
     ["finetune.coding.released.lnc_H.datasets[0]", "'human'", "known: mouse"]),
    ({"finetune": {"coding": {"released": {"lnc_H": {"file": "lnc_H_5mer.pth"}}}}},
     ["finetune.coding.released.lnc_H", "datasets"]),
    ({"finetune": {"coding": {"released": {"lnc-H": {"file": "x.pth", "datasets": ["mouse"]}}}}},
     ["finetune.coding.released", "lnc-H"]),
    ({"protocol": "paper"}, ["protocol", "paper"]),
    ({"compare_protocols": ["rnaret"]}, ["compare_protocols", "rnaret is the run's protocol already"]),
])
def test_released_entries_and_protocols_refuse_bad_values_naming_the_key(changes, words):
    with pytest.raises(SettingsError) as error:
        plan_of(changes)
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_every_finetune_and_evaluate_job_gets_its_protocol(tmp_path):
    (released,) = released_files(tmp_path, "lnc_M_5mer")
    coding = {"released": {"lnc_M_5mer": {"file": str(released), "datasets": ["mouse"]}}}
    default = plan_of({"finetune": {"coding": coding}})
    job = wildcards(task="coding", dataset="mouse", model="rnaret-k5")
    assert option(default.finetune.args(job), "--protocol") == "rnaret"
    assert option(default.finetune.evaluate_args(job), "--protocol") == "rnaret"
    assert default.protocols() == ["rnaret"] and default.compared_protocols() == []
    assert not any("protocols/" in t for t in default.targets())
    # the run's protocol published: the same paths, --protocol published, fp32 (the published
    # scripts fine-tune and evaluate in float32 whatever `precision` says)
    published = plan_of({"protocol": "published", "precision": "bf16", "finetune": {"coding": coding}})
    assert published.finetune.targets() == default.finetune.targets()
    for args in (published.finetune.args(job), published.finetune.evaluate_args(job)):
        assert option(args, "--protocol") == "published" and option(args, "--precision") == "fp32"
    # both: the other protocol's jobs in their own tree, fine-tuned under that protocol
    both = plan_of({"compare_protocols": ["published"], "finetune": {"coding": coding}})
    compared = [t for t in both.finetune.targets() if t not in default.finetune.targets()]
    # the paper tasks' evaluations only: a generic task has no published protocol to compare with
    assert compared == [t.replace("results/", "results/protocols/published/", 1)
                        for t in default.finetune.targets() if not t.startswith("results/sequence-")]
    assert compared and not any("sequence-classification" in t for t in compared)
    other = wildcards(task="coding", dataset="mouse", model="rnaret-k5", protocol="published")
    assert both.finetune.evaluate_inputs(other)["checkpoint"] == "results/protocols/published/coding/mouse/rnaret-k5/checkpoint"
    assert option(both.finetune.args(other), "--protocol") == "published"
    assert option(both.finetune.evaluate_args(other), "--protocol") == "published"
    released_job = wildcards(task="coding", dataset="mouse", model="released-lnc_M_5mer", protocol="published")
    assert both.finetune.evaluate_inputs(released_job)["checkpoint"] == str(released)
    assert both.protocol_pattern() == "published"
    # the tables read every protocol's evaluations; the report's figures those of the run's protocol
    assert set(both.finetune.targets()) <= set(both.report.evaluations())
    assert ("mouse", "rnaret-k5") not in both.report.structure_evaluations()
    assert both.report.structure_evaluations() == default.report.structure_evaluations()


def test_released_weights_replace_pretraining_and_the_corpus(tmp_path):
    released = tmp_path / "pretrain_5mer.pth"
    released.write_bytes(b"x")
    only_released = {"pretrain": {"models": ["rnaret-k5"], "init_from": {"rnaret-k5": str(released)}},
                     "finetune": {task: {"models": []} for task in ("structure", "coding", "sequence-classification")}
                     | {"interaction": {"models": ["rnaret-k5"]}}}
    base = default_config()
    del base["corpus"]
    plan = plan_of(only_released, base=base)
    assert plan.pretrain.pretrained_models() == [] and plan.data.targets() == [] and plan.pretrain.targets() == []
    job = wildcards(task="interaction", dataset="mirtar", model="rnaret-k5")
    assert plan.finetune.inputs(job)["init"] == str(released)
    assert option(plan.finetune.args(job), "--init") == str(released)
    with pytest.raises(SettingsError, match="released weights: it is not pretrained"):
        plan.pretrain.inputs(wildcards(model="rnaret-k5"))
    # a model that is still pretrained needs the corpus
    with pytest.raises(SettingsError, match="corpus.*needed to pretrain transformer-k5"):
        plan_of({**only_released, "pretrain": {**only_released["pretrain"], "models": ["transformer-k5"]}},
                base=base).data.download_inputs()


def test_devices_follow_the_gpu_count_and_allow_cpu():
    job = wildcards(task="coding", dataset="mouse", model="rnaret-k5")
    assert option(plan_of().finetune.args(job), "--device") == "cpu"
    gpu = plan_of({"pretrain": {"gpus": 2}, "finetune": {"gpus": 1}, "precision": "bf16"})
    assert option(gpu.finetune.args(job), "--device") == "cuda"
    assert option(gpu.finetune.evaluate_args(job), "--device") == "cuda"
    assert option(gpu.pretrain.args(wildcards(model="rnaret-k1")), "--device") == "cuda"
    assert option(gpu.pretrain.args(wildcards(model="rnaret-k1")), "--precision") == "bf16"
    assert gpu.pretrain.pretrain_config("rnaret-k1")["precision"] == "bf16"
    lenient = plan_of({"finetune": {"gpus": 1}, "allow_cpu": True})
    assert option(lenient.finetune.args(job), "--device") == "auto"
    resources = SimpleNamespace(gpu=2, get=lambda name, default=None: 2)
    assert Pretrain.nproc(None, resources) == 2 and Pretrain.worker_threads(None, 8, resources) == 4


def test_scheduling_puts_the_gating_stages_and_the_long_fine_tunes_first():
    by_task = {task: Finetune.priority(wildcards(task=task)) for task in ("coding", "structure", "interaction")}
    assert Plan.priority("corpus") > Plan.priority("pretrain") > by_task["coding"] > by_task["structure"]
    assert by_task["structure"] == by_task["interaction"] > Plan.priority("evaluate") == 0
    # the model jobs take one thread each by default, so that --cores 2 runs two of them at once
    assert plan_of().threads("pretrain") == plan_of().threads("finetune") == 1


# ------------------------------------------------------------------ datasets

def test_datasets_resolve_to_local_files_and_row_selections(tmp_path):
    plan = plan_of({"datasets": {"coding": {"web": {"test": {"path": "https://example.org/x/web_test.fa?dl=1",
                                                             "md5": "0" * 32}, "finetuned_on": "mouse"}}}})
    mirtar = plan.dataset("interaction", "mirtar")
    assert mirtar.entry() == {s: {"path": "resources/mirna_target/mirtar_deepmirtar_miraw.tsv", "split": s}
                              for s in ("train", "valid", "test")}
    web = plan.split("coding", "web", "test")
    assert web.path == web.input == "results/datasets/coding/web/test/web_test.fa"
    assert web.url.startswith("https://") and web.md5 == "0" * 32
    args = plan.data.dataset_download_args(wildcards(task="coding", dataset="web", split="test", filename="web_test.fa"))
    assert shlex.split(args) == ["https://example.org/x/web_test.fa?dl=1", f"--md5={'0' * 32}"]
    assert plan.dataset("interaction", "mirtar_indtest").entry()["finetuned_on"] == "mirtar"


def test_a_null_entry_removes_a_dataset_of_an_earlier_file():
    plan = plan_of({"datasets": {"interaction": {"mirtar_indtest": None}}})
    assert "mirtar_indtest" not in plan.datasets["interaction"]
    assert not any("mirtar_indtest" in t for t in plan.targets())


def test_only_trained_datasets_feed_the_leakage_removal_unless_asked():
    labels = [s.label for s in plan_of().data.leakage_sources()]
    assert labels == ["interaction/mirtar/valid", "interaction/mirtar/test", "structure/bprna/valid",
                      "structure/bprna/test", "coding/mouse/test", "sequence-classification/mncr/valid",
                      "sequence-classification/mncr/test"]
    labels = [s.label for s in plan_of({"dedupe": {"leakage_test_only": True}}).data.leakage_sources()]
    assert "interaction/mirtar_indtest/test" in labels


def test_a_dataset_sheet_resolves_as_the_datasets_block(tmp_path):
    sheet = write_sheet(tmp_path / "datasets.tsv", DEFAULT_SHEET)
    base = default_config()
    base["datasets"] = {}
    from_sheet = plan_of({"dataset_sheet": str(sheet)}, base=base)
    from_block = plan_of()
    assert from_sheet.datasets == from_block.datasets
    assert from_sheet.targets() == from_block.targets()
    assert from_sheet.data.leakage_args() == from_block.data.leakage_args()
    job = wildcards(task="interaction", dataset="mirtar", model="rnaret-k5")
    assert from_sheet.finetune.args(job) == from_block.finetune.args(job)
    with pytest.raises(SettingsError, match="also defined in the dataset sheet"):
        plan_of({"dataset_sheet": str(sheet)})


@pytest.mark.parametrize("rows, words", [
    ([("protein", "x", "test", "a.fa", "", "")], ["line 2", "task", "protein"]),
    ([("coding", "x", "test", "", "", "")], ["line 2", "path"]),
    ([("coding", "x", "dev", "a.fa", "", "")], ["line 2", "split", "dev"]),
    ([("coding", "x", "test", "a.fa", "", ""), ("coding", "x", "test", "b.fa", "", "")], ["line 3", "also on line 2"]),
    ([("coding", "x", "test", "a.fa", "", "m"), ("coding", "x", "train", "b.fa", "", "n")], ["line 3", "finetuned_on"]),
    ([("coding", "x", "train", "a.fa", "", "")], ["coding/x has no test row"]),
    ([("coding", "x", "test", "a.fa", "", "", "extra")], ["line 2", "more cells"]),
])
def test_bad_sheet_rows_are_refused_naming_the_line(tmp_path, rows, words):
    sheet = write_sheet(tmp_path / "bad.tsv", rows)
    with pytest.raises(SettingsError) as error:
        read_dataset_sheet(sheet)
    for word in words:
        assert word in str(error.value), (word, str(error.value))
    assert str(sheet) in str(error.value) or "bad.tsv" in str(error.value)


# ------------------------------------------------------------------ archives and files

def test_archive_members_resolve_into_the_unpacked_folder(tmp_path):
    plan = plan_of({"archives": {"paper_models": {"url": "https://example.org/model.tar.gz", "md5": "a" * 32},
                                 "paper_data": {"url": "data/datasets.tar.gz"}},
                    "pretrain": {"init_from": {"rnaret-k5": {"archive": "paper_models", "path": "model/pretrain_5mer.pth"}}},
                    "datasets": {"coding": {"human": {"train": {"archive": "paper_data", "path": "data/lncRNA_H/train.fa"},
                                                      "test": {"archive": "paper_data", "path": "data/lncRNA_H/test.fa"}}}}})
    job = wildcards(task="coding", dataset="human", model="rnaret-k5")
    assert plan.finetune.inputs(job) == {"train": "results/archives/paper_data",
                                         "init": "results/archives/paper_models"}
    args = plan.finetune.args(job)
    assert option(args, "--init") == "results/archives/paper_models/model/pretrain_5mer.pth"
    assert option(args, "--split") == "train=results/archives/paper_data/data/lncRNA_H/train.fa"
    assert plan.archives.source(wildcards(archive="paper_models")) == {"url": "https://example.org/model.tar.gz",
                                                                      "md5": "a" * 32}
    assert plan.archives.dirs() == ["results/archives/paper_models", "results/archives/paper_data"]


@pytest.mark.parametrize("changes, words", [
    ({"pretrain": {"init_from": {"rnaret-k5": {"archive": "nope", "path": "a.pth"}}}},
     ["pretrain.init_from.rnaret-k5", "'nope' is not in the archives"]),
    ({"archives": {"a": {"url": "x.tgz"}}, "pretrain": {"init_from": {"rnaret-k5": {"archive": "a", "path": "../up.pth"}}}},
     ["pretrain.init_from.rnaret-k5", "relative path inside the archive"]),
    ({"pretrain": {"init_from": {"rnaret-k5": "https://example.org/pretrain_5mer.pth"}}},
     ["pretrain.init_from.rnaret-k5", "a URL is not accepted here"]),
])
def test_bad_file_references_name_the_key(changes, words):
    with pytest.raises(SettingsError) as error:
        plan_of(changes)
    for word in words:
        assert word in str(error.value)


# ------------------------------------------------------------------ bad values, every block

@pytest.mark.parametrize("changes, words", [
    ({"pretrain": {"preset": "huge"}}, ["pretrain.preset", "huge"]),
    ({"pretrain": {"gpus": -1}}, ["pretrain.gpus"]),
    ({"pretrain": {"models": ["bert-k5"]}}, ["pretrain.models[0]", "bert-k5"]),
    ({"pretrain": {"overrides": {"lrr": 1}}}, ["pretrain.overrides", "lrr"]),
    ({"pretrain": {"overrides": {"k": 3}}}, ["pretrain.overrides.k", "model name"]),
    ({"pretrain": {"overrides": {"precision": "bf16"}}}, ["pretrain.overrides.precision", "top-level precision"]),
    ({"pretrain": {"overrides": {"encoder": {"retnet_retention_heads": 3}}}}, ["pretrain.overrides", "heads"]),
    ({"shards": {"k": [1, 5]}, "pretrain": {"models": ["rnaret-k3"]}}, ["pretrain.models", "shards at k=3"]),
    ({"finetune": {"preset": "huge"}}, ["finetune.preset", "huge"]),
    ({"finetune": {"coding": {"models": ["bert"]}}}, ["finetune.coding.models[0]", "bert"]),
    ({"finetune": {"coding": {"settings": {"epoch": 1}}}}, ["finetune.coding.settings", "'epoch'"]),
    ({"finetune": {"coding": {"model_settings": {"rnaret-k5": {"lrr": 1}}}}},
     ["finetune.coding.model_settings.rnaret-k5", "'lrr'"]),
    ({"finetune": {"structure": {"models": ["rnaret-k5"]}}}, ["finetune.structure.models", "k=5 model", "k=1"]),
    ({"report": {"contact_map_examples": 0}}, ["report.contact_map_examples"]),
    ({"report": {"length_scaling": {"models": ["lstm"]}}}, ["report.length_scaling.models[0]", "lstm"]),
    ({"report": {"colour": "red"}}, ["report", "colour"]),
    ({"baselines": {"vienna": {"method": "centroid"}}}, ["baselines.vienna.method", "centroid"]),
    ({"baselines": {"vienna": {"gamma": 0}}}, ["baselines.vienna.gamma"]),
    ({"baselines": {"contrafold": {}}}, ["baselines", "contrafold"]),
    ({"datasets": {"coding": {"mouse": {"test": 3}}}}, ["datasets.coding.mouse.test"]),
    ({"datasets": {"coding": {"new": {"train": "a.fa"}}}}, ["datasets.coding.new", "test"]),
    ({"datasets": {"rna": {}}}, ["datasets", "rna"]),
    ({"datasets": {"coding": {"new": {"test": "a.fa", "finetuned_on": "nope"}}}},
     ["datasets.coding.new.finetuned_on", "no dataset 'nope'"]),
    ({"datasets": {"coding": {"mouse": {"finetuned_on": "mouse"}}}}, ["datasets.coding.mouse.finetuned_on", "test-only"]),
    ({"archives": {"a": {"md5": "0" * 32}}}, ["archives.a", "url"]),
    ({"precision": "fp16"}, ["precision", "fp16"]),
    ({"allow_cpu": "yes"}, ["allow_cpu"]),
    ({"shards": {"k": [2]}}, ["shards.k[0]"]),
    ({"dataset_sheet": "missing.tsv"}, ["dataset_sheet", "missing.tsv", "no such file"]),
])
def test_bad_values_name_the_key(changes, words):
    with pytest.raises(SettingsError) as error:
        plan_of(changes)
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("pretrain:\n  preset: paper\n  models: [rnaret-k1, rnaret-k5\nfinetune: {}\n")
    with pytest.raises(InputError) as error:
        read_config_file(path)
    assert str(path) in str(error.value) and "line 4" in str(error.value) and "not valid YAML" in str(error.value)
    path.write_text("- a list\n- not a mapping\n")
    with pytest.raises(InputError, match="must hold a mapping"):
        load_config([CONFIG, path])


def test_files_merge_key_by_key_as_snakemake_does(tmp_path):
    more = tmp_path / "more.yaml"
    more.write_text("pretrain: {preset: paper}\ndatasets: {coding: {mouse: {test: other.fa}}}\n")
    config = load_config([CONFIG, more])
    assert config["pretrain"]["preset"] == "paper" and config["pretrain"]["gpus"] == 0
    assert config["datasets"]["coding"]["mouse"] == {"train": "resources/mrna_lncrna/mouse_train.fa.gz",
                                                     "test": "other.fa"}


# ------------------------------------------------------------------ the commands use the same resolution

def test_commands_read_a_pipeline_config_through_the_resolver(tmp_path):
    from rnaret.tasks.run import dataset_entry, task_settings

    sheet = write_sheet(tmp_path / "datasets.tsv", [
        ("coding", "human", "train", "https://example.org/h/train.fa", "", ""),
        ("coding", "human", "test", "h_test.fa", "", "")])
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"dataset_sheet": str(sheet), "finetune": {
        "coding": {"settings": {"epochs": 4}, "model_settings": {"onehot": {"lr": 0.5}}}}}))
    assert dataset_entry("coding", config, "human") == {"train": "results/datasets/coding/human/train/train.fa",
                                                        "test": "h_test.fa"}
    assert task_settings("coding", config, ["seed=3"], model="onehot") == {"preset": "laptop", "epochs": 4,
                                                                           "lr": 0.5, "seed": 3}
    inline = json.dumps({"epochs": 2, "preset": "paper"})
    assert task_settings("coding", inline, ["lr=0.1"]) == {"epochs": 2, "preset": "paper", "lr": 0.1}
    with pytest.raises(InputError, match="--settings: not a JSON object"):
        task_settings("coding", "{epochs: 2")


def test_rnaret_settings_prints_every_jobs_resolved_settings(tmp_path):
    more = tmp_path / "paper.yaml"
    more.write_text("finetune: {preset: paper}\n")
    result = subprocess.run([sys.executable, "-m", "rnaret", "settings", str(CONFIG), str(more)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["finetune"]["coding/mouse/rnaret-k5"]["settings"]["epochs"] == 50  # the published recipe
    assert described["pretrain"]["rnaret-k1"]["max_steps"] == 200
    assert "results/structure/bprna/vienna/metrics.tsv" in described["targets"]
    more.write_text("finetune: {preset: paper\n")
    result = subprocess.run([sys.executable, "-m", "rnaret", "settings", str(CONFIG), str(more)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode != 0 and "paper.yaml: line 2" in result.stderr


def test_the_resolver_imports_neither_torch_nor_snakemake():
    code = ("import sys; from rnaret.settings import Plan, load_config; "
            "plan = Plan(load_config(['config.yaml'])); plan.targets(); plan.describe(); "
            "print(sorted(m for m in ('torch', 'snakemake') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_plans_do_not_share_state_with_the_config():
    config = validate_config(default_config())
    before = copy.deepcopy(config)
    plan = Plan(config)
    plan.describe()
    assert config == before


def test_local_corpus_and_checksum_files_are_inputs_but_a_hex_md5_is_a_value():
    assert plan_of().data.download_inputs() == ["resources/rnacentral/rnacentral_sample.fa.gz",
                                                  "resources/rnacentral/md5.txt"]
    assert plan_of({"corpus": {"md5": "A" * 32}}).data.download_inputs() == [
        "resources/rnacentral/rnacentral_sample.fa.gz"]
    remote = plan_of({"corpus": {"url": "https://example.org/r/rnacentral_active.fasta.gz", "md5": ""}})
    assert remote.data.download_inputs() == []
    assert remote.data.download_path() == "results/corpus/download/rnacentral_active.fasta.gz"
    assert "--release" not in remote.data.download_args()  # the label goes to the summary only


def test_the_published_protocol_builds_the_published_corpus_with_the_same_rules():
    """protocol: published: normalize -> filter (every record cut to its first max_length nt,
    nothing dropped) -> shard (nothing held out); no dedupe, leakage or clustering stage; the
    pretraining in fp16 (+ grad scaler on CUDA). The default run keeps its stages and options."""
    default = plan_of()
    published = plan_of({"protocol": "published", "dedupe": {"cluster_identity": 0.9},
                         "length_policy": {"max_length": 1000}})
    assert published.data.filter_input() == "results/corpus/normalized.fa.gz"
    assert default.data.filter_input() == "results/corpus/no_leakage.fa.gz"
    assert shlex.split(published.data.filter_args()) == ["--min-length", "1", "--max-length", "1000", "--long", "cut",
                                                    "--window", "1000", "--overlap", "0"]
    assert shlex.split(default.data.filter_args()) == ["--min-length", "10", "--max-length", "2000", "--long", "split",
                                                  "--window", "2000", "--overlap", "200"]
    assert shlex.split(published.data.shard_args())[-1] == "--valid-from-train"
    assert "--valid-from-train" not in default.data.shard_args()
    assert published.data.removal_counts() == [] and published.data.cluster_tables() == []
    assert "--dup-num" not in published.data.summary_args() and "--leakage" not in published.data.summary_args()
    assert default.data.removal_counts() == ["results/corpus/duplicates.txt", "results/corpus/leakage.json"]
    assert option(default.data.summary_args(), "--dup-num") == "results/corpus/duplicates.txt"
    assert not any("leakage" in t for t in published.data.targets())
    assert "results/corpus/leakage.png" in default.data.targets()
    assert published.pretrain.pretrain_config("rnaret-k1")["precision"] == "fp16"
    assert option(published.pretrain.args(wildcards(model="rnaret-k1")), "--precision") == "fp16"
    assert option(default.pretrain.args(wildcards(model="rnaret-k1")), "--precision") == "auto"
    # a compared protocol changes fine-tuning and evaluation only: the corpus follows `protocol`
    assert plan_of({"compare_protocols": ["published"]}).data.targets() == default.data.targets()
