"""Checkpoint I/O: our safetensors checkpoints, published .pth files, strict and safe loading."""
from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import rnaret
from rnaret.checkpoint.encoder import infer_config, load_encoder, save_encoder
from rnaret.checkpoint.published import load_published_state_dict, read_pth
from rnaret.io.errors import InputError
from rnaret.model import EncoderConfig, RetNetEncoder


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def official(reference):
    return reference / "official_vectors"


@pytest.fixture(scope="module")
def vectors(official):
    return load_file(official / "io_parallel.safetensors")


@pytest.fixture(scope="module")
def published_state(official):
    return load_file(official / "weights.safetensors")


def _assert_reproduces(model, vectors):
    with torch.no_grad():
        out = model(vectors["tokens"][[0, 2]])
    assert torch.allclose(out.logits, vectors["logits"][[0, 2]], atol=1e-5, rtol=0)


def test_public_load_encoder_reads_the_published_style_directory(official, vectors):
    model = rnaret.load_encoder(official)
    assert isinstance(model, RetNetEncoder) and not model.training
    assert model.config.k == 3 and model.config.retnet_layers == 2
    _assert_reproduces(model, vectors)


def test_save_and_load_round_trip(tmp_path, official, vectors):
    model = load_encoder(official)
    model.config.chunk_size = 32
    target = save_encoder(model, tmp_path / "ckpt")
    assert sorted(os.listdir(target)) == ["config.json", "weights.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temporary leftovers
    saved = json.loads((target / "config.json").read_text())
    assert saved["k"] == 3 and saved["chunk_size"] == 32 and saved["architecture"] == "retnet"
    again = load_encoder(target)
    assert again.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
    _assert_reproduces(again, vectors)
    # saving again replaces the checkpoint; a folder holding anything else is refused
    save_encoder(again, target)
    (tmp_path / "ckpt" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to replace"):
        save_encoder(again, target)
    assert (tmp_path / "ckpt" / "notes.txt").exists()


def test_safetensors_file_with_and_without_config(tmp_path, official, vectors):
    shutil.copy(official / "weights.safetensors", tmp_path / "model.safetensors")
    _assert_reproduces(load_encoder(tmp_path / "model.safetensors"), vectors)  # shapes -> config
    shutil.copy(official / "config.json", tmp_path / "config.json")
    _assert_reproduces(load_encoder(tmp_path / "model.safetensors"), vectors)


def test_published_pth_bare_keys(tmp_path, published_state, vectors):
    torch.save(dict(published_state), tmp_path / "pretrain_3mer.pth")
    model = load_encoder(tmp_path / "pretrain_3mer.pth")
    assert (model.config.k, model.config.retnet_embed_dim, model.config.retnet_value_embed_dim,
            model.config.retnet_ffn_embed_dim, model.config.retnet_layers,
            model.config.retnet_retention_heads) == (3, 64, 128, 128, 2, 4)
    _assert_reproduces(model, vectors)


def test_published_pth_fine_tuned_ret_and_classifier(tmp_path, published_state, vectors):
    head = {"classifier.linear_in.weight": torch.randn(128, 128), "classifier.linear_in.bias": torch.randn(128)}
    state = {**{f"ret.{k}": v for k, v in published_state.items()}, **head}
    torch.save(state, tmp_path / "RNAStrAlign_1mer.pth")
    _assert_reproduces(load_encoder(tmp_path / "RNAStrAlign_1mer.pth"), vectors)
    encoder_state, head_state = load_published_state_dict(tmp_path / "RNAStrAlign_1mer.pth")
    assert set(encoder_state) == set(published_state)
    assert set(head_state) == {"linear_in.weight", "linear_in.bias"}
    assert torch.equal(head_state["linear_in.bias"], head["classifier.linear_in.bias"])
    torch.save({**state, "optimizer.step": torch.tensor(3)}, tmp_path / "odd.pth")
    with pytest.raises(InputError, match=r"odd\.pth.*outside ret\.\* and classifier\.\*.*optimizer\.step"):
        load_published_state_dict(tmp_path / "odd.pth")


def test_paper_size_pth_config_is_inferred(tmp_path):
    torch.manual_seed(0)
    model = RetNetEncoder(EncoderConfig.paper(5))
    torch.save(model.state_dict(), tmp_path / "pretrain_5mer.pth")
    loaded = load_encoder(tmp_path / "pretrain_5mer.pth")
    assert loaded.config == EncoderConfig.paper(5)
    assert loaded.num_parameters() == 12_594_048
    assert torch.equal(loaded.output_projection.weight, model.output_projection.weight)


def test_strict_errors_name_the_keys_and_the_file(tmp_path, published_state):
    missing = {k: v for k, v in published_state.items() if k != "layers.1.ffn.gate.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing\.pth.*missing keys \['layers\.1\.ffn\.gate\.weight'\]"):
        load_encoder(tmp_path / "missing.pth")
    load_encoder(tmp_path / "missing.pth", strict=False)  # tolerated when asked

    extra = {**published_state, "layers.0.retention.bias": torch.zeros(3)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(InputError, match=r"extra\.pth.*unexpected keys \['layers\.0\.retention\.bias'\]"):
        load_encoder(tmp_path / "extra.pth")

    folder = tmp_path / "bad_shape"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"vocab_size": 70, "retnet_embed_dim": 64,
                                                    "retnet_value_embed_dim": 128, "retnet_ffn_embed_dim": 256,
                                                    "retnet_layers": 2, "retnet_retention_heads": 4}))
    save_file(dict(published_state), str(folder / "weights.safetensors"))
    with pytest.raises(InputError, match=r"weights\.safetensors.*shape mismatch.*layers\.0\.ffn\.fc1\.weight: "
                                         r"file \(128, 64\) vs model \(256, 64\)"):
        load_encoder(folder)


def test_config_with_unknown_keys_is_refused(tmp_path, official):
    folder = tmp_path / "ckpt"
    shutil.copytree(official, folder)
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, "retnet_depth": 8}))
    with pytest.raises(InputError, match=r"config\.json.*unknown encoder config keys \['retnet_depth'\]"):
        load_encoder(folder)


class _Marker:
    """Unpickling this would create a file: the proof that a pickle ran code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("container", ["zip", "raw-pickle"])
def test_pickle_with_code_is_refused_without_running_it(tmp_path, published_state, container):
    marker = tmp_path / "code_ran"
    evil = {**published_state, "embed_tokens.weight": _Marker(str(marker))}
    path = tmp_path / "pretrain_3mer.pth"
    if container == "zip":
        torch.save(evil, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(evil, handle, protocol=2)
    assert not marker.exists()
    with pytest.raises(InputError, match=r"pretrain_3mer\.pth: refused: the file holds pickled objects other "
                                         r"than tensors \(not unpickled, nothing in it was run\)"):
        load_encoder(path)
    with pytest.raises(InputError, match="refused"):
        load_published_state_dict(path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Marker(str(marker))))  # the same object, unpickled unsafely...
    assert marker.exists()  # ...does run: the test would have seen it


def test_non_tensor_and_unreadable_files_are_refused(tmp_path):
    torch.save({"embed_tokens.weight": torch.zeros(10, 8), "step": 5}, tmp_path / "mixed.pth")
    with pytest.raises(InputError, match=r"mixed\.pth.*not named tensors.*step"):
        read_pth(tmp_path / "mixed.pth")
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    with pytest.raises(InputError, match="expected a non-empty state dict, found list"):
        read_pth(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(os.urandom(300))
    with pytest.raises(InputError, match=r"junk\.pth"):
        load_encoder(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(InputError, match=r"junk\.safetensors: not a readable safetensors file"):
        load_encoder(tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="no such checkpoint"):
        load_encoder(tmp_path / "absent.pth")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="has no weights.safetensors"):
        load_encoder(tmp_path / "empty_dir")


def test_heads_from_the_decay_buffer_or_the_argument(published_state):
    assert infer_config(published_state, "x.pth").retnet_retention_heads == 4
    no_buffers = {k: v for k, v in published_state.items() if not k.startswith("retnet_rel_pos")}
    assert infer_config(no_buffers, "x.pth").retnet_retention_heads == 4
    assert infer_config(no_buffers, "x.pth", retention_heads=2).retnet_retention_heads == 2
    with pytest.raises(InputError, match="decay buffer has 4"):
        infer_config(published_state, "x.pth", retention_heads=2)


# --------------------------------------------------------------------------- damaged checkpoints

def _tiny_config(**changes) -> EncoderConfig:
    return EncoderConfig(**{"vocab_size": 1030, "retnet_embed_dim": 8, "retnet_value_embed_dim": 8,
                            "retnet_ffn_embed_dim": 16, "retnet_layers": 2, "retnet_retention_heads": 2,
                            **changes})


@pytest.fixture()
def tiny_dir(tmp_path):
    torch.manual_seed(0)
    return save_encoder(RetNetEncoder(_tiny_config()), tmp_path / "tiny")


@pytest.mark.parametrize("text, words", [
    ('{"vocab_size": 1030, "retnet_embed_dim": 8,,}', ["not valid JSON", "line 1, column 44"]),
    ("[1, 2]", ["must hold a JSON object", "found list"]),
    ('{"vocab_size": 1030, "retnet_embed_dim": "8"}', ["retnet_embed_dim must be a whole number", "'8'"]),
    ('{"vocab_size": 1030, "retnet_layers": true}', ["retnet_layers must be a whole number", "True"]),
    ('{"vocab_size": 1030, "dropout": 1.5}', ["dropout must be a number from 0 to 1"]),
    ('{"vocab_size": 1030, "dropout": NaN}', ["dropout must be a number from 0 to 1"]),
    ('{"vocab_size": 1030, "architecture": 3}', ["architecture must be a string"]),
    ('{"vocab_size": 1031}', ["bad encoder config", "vocab_size"]),
    ('{"vocab_size": 1030, "retnet_embed_dim": 9, "retnet_retention_heads": 2}', ["heads of an even size"]),
    (b'\xff\xfe{"vocab_size": 1030}', ["byte 0xFF is not UTF-8"]),
    ("", ["the file is empty"]),
])
def test_an_invalid_config_json_is_refused_naming_it(tiny_dir, text, words):
    path = tiny_dir / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError) as err:
        load_encoder(tiny_dir)
    assert str(err.value).startswith(str(path)), str(err.value)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize("field, value", [("retnet_embed_dim", 1_000_000_000), ("retnet_ffn_embed_dim", 2**30),
                                          ("retnet_layers", 1_000_000), ("retnet_value_embed_dim", 2**30)])
def test_a_config_asking_for_a_huge_model_fails_before_allocating_it(tiny_dir, field, value):
    # built on the meta device first: a 1e9-wide model would need terabytes if it were allocated
    data = json.loads((tiny_dir / "config.json").read_text())
    data[field] = value
    (tiny_dir / "config.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="does not fit the encoder|layers, the weights hold"):
        load_encoder(tiny_dir)


@pytest.mark.parametrize("keep", [0, 7, 8, 100, -1])
def test_a_truncated_safetensors_is_refused(tiny_dir, keep):
    path = tiny_dir / "weights.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(InputError) as err:
        load_encoder(tiny_dir)
    assert str(path) in str(err.value)
    assert "not a readable safetensors file" in str(err.value)


def test_weights_of_another_kind_are_refused(tiny_dir):
    state = load_file(tiny_dir / "weights.safetensors")
    state["embed_tokens.weight"] = state["embed_tokens.weight"].to(torch.int32)
    save_file(state, str(tiny_dir / "weights.safetensors"))
    with pytest.raises(InputError, match=r"dtype mismatch \['embed_tokens.weight: file torch.int32 vs model "
                                         r"torch.float32'\]"):
        load_encoder(tiny_dir)


def test_a_pth_with_a_gap_in_its_layers_or_cut_short(tmp_path, tiny_dir):
    state = load_file(tiny_dir / "weights.safetensors")
    gap = {k.replace("layers.1.", "layers.7."): v for k, v in state.items()}
    torch.save(gap, tmp_path / "gap.pth")
    with pytest.raises(InputError, match=r"gap\.pth: cannot infer the encoder shape: layers \[1, 2, 3, 4, 5\] "
                                         r"are missing"):
        load_encoder(tmp_path / "gap.pth")
    torch.save(state, tmp_path / "whole.pth")
    data = (tmp_path / "whole.pth").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        with pytest.raises(InputError, match=r"cut\.pth: not a readable PyTorch checkpoint"):
            load_encoder(tmp_path / "cut.pth")


@pytest.fixture()
def finetuned(tmp_path, tiny_dir):
    from rnaret.tasks import get_task
    from rnaret.checkpoint.finetuned import save_finetuned
    from rnaret.tasks.finetune import TaskModel

    task = get_task("interaction")
    encoder = load_encoder(tiny_dir)
    return save_finetuned(TaskModel(encoder, task.build_head(8)), task, tmp_path / "ft", encoder_kind="retnet",
                          init=str(tiny_dir))


def _edit_task_json(folder, change):
    meta = json.loads((folder / "task.json").read_text())
    change(meta)
    (folder / "task.json").write_text(json.dumps(meta))


def test_a_finetuned_checkpoint_loads(finetuned):
    from rnaret.checkpoint.finetuned import load_finetuned

    task, model, meta = load_finetuned(finetuned)
    assert task.name == "interaction" and meta["encoder_kind"] == "retnet" and not model.training


@pytest.mark.parametrize("damage, file, words", [
    (lambda f: (f / "task.json").unlink(), "", ["not a fine-tuned checkpoint folder (no task.json)"]),
    (lambda f: (f / "task.json").write_text('{"task": "interaction",'), "task.json", ["not valid JSON", "line 1"]),
    (lambda f: (f / "task.json").write_text('"interaction"'), "task.json", ["must hold a JSON object"]),
    (lambda f: _edit_task_json(f, lambda m: m.pop("task")), "task.json", ["'task' must name the task"]),
    (lambda f: _edit_task_json(f, lambda m: m.update(task="folding")), "task.json", ["unknown task 'folding'"]),
    (lambda f: _edit_task_json(f, lambda m: m.update(settings=[1])), "task.json", ["'settings' must be a mapping"]),
    (lambda f: _edit_task_json(f, lambda m: m["settings"].update(colour=1)), "task.json",
     ["unknown interaction setting 'colour'"]),
    (lambda f: _edit_task_json(f, lambda m: m.update(encoder_kind="lstm")), "task.json", ["'encoder_kind' must be one of"]),
    (lambda f: _edit_task_json(f, lambda m: m["settings"].update(head_dropout="high")), "task.json",
     ["setting head_dropout: 'high' is not of type 'number'"]),
    (lambda f: (f / "head.safetensors").unlink(), "", ["the fine-tuned checkpoint has no head.safetensors"]),
    (lambda f: (f / "head.safetensors").write_bytes((f / "head.safetensors").read_bytes()[:40]), "head.safetensors",
     ["not a readable safetensors file"]),
    (lambda f: save_file({"extra.weight": torch.zeros(8, 8)}, str(f / "head.safetensors")), "head.safetensors",
     ["does not fit the interaction head", "missing keys", "unexpected keys ['extra.weight']"]),
    (lambda f: shutil.rmtree(f / "encoder"), "encoder", ["no such checkpoint file or directory"]),
    (lambda f: (f / "encoder" / "config.json").write_text("{}"), "encoder/config.json", ["has no 'vocab_size'"]),
])
def test_a_missing_or_corrupt_part_of_a_finetuned_checkpoint(finetuned, damage, file, words):
    from rnaret.checkpoint.finetuned import load_finetuned

    damage(finetuned)
    with pytest.raises(InputError) as err:
        load_finetuned(finetuned)
    assert str(err.value).startswith(str(finetuned / file) if file else str(finetuned)), str(err.value)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_evaluate_names_the_damaged_task_json(finetuned, resources, tmp_path, capsys):
    from rnaret.cli import main

    (finetuned / "task.json").write_text("{")
    assert main(["evaluate", "--checkpoint", str(finetuned), "--split",
                 f"test={resources / 'mirna_target/mirtar_deepmirtar_indtest.tsv'}", "--out", str(tmp_path / "o")]) == 1
    assert f"{finetuned / 'task.json'}: line 1, column 2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
