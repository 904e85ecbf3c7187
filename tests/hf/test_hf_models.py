"""The transformers classes in process: the tokenizer against rnaret.tokenize, the heads, the
Auto registration, the released fine-tuned files' export (interaction head mapped, the others
left out and said so), the bundled code, errors."""
from __future__ import annotations

import ast
import gzip
import json

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("transformers")

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from rnaret.cli import main  # noqa: E402
from rnaret.hf import (RnaretConfig, RnaretForMaskedLM, RnaretForSequenceClassification,  # noqa: E402
                       RnaretForTokenClassification, RnaretModel, RnaretTokenizer)
from rnaret.hf.export import bundle_code, export_hf  # noqa: E402
from rnaret.io.errors import InputError  # noqa: E402
from rnaret.model import EncoderConfig  # noqa: E402
from rnaret.tokenizer import CLS, MASK, PAD, tokenize  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sample_sequences(resources):
    """The first 40 sequences of the bundled RNAcentral sample plus hand-made odd ones."""
    out, chunks = [], []
    with gzip.open(resources / "rnacentral" / "rnacentral_sample.fa.gz", "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                if chunks:
                    out.append("".join(chunks)[:300])
                chunks = []
                if len(out) == 40:
                    break
            else:
                chunks.append(line.strip())
    return out + ["acgu", "ACGUNRYKM-.", "A", "AC", "", "UUUUU"]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_tokenizer_gives_rnaret_ids(k, sample_sequences, tmp_path):
    tokenizer = RnaretTokenizer(k=k)
    assert tokenizer.vocab_size == 4 ** k + 6 and len(tokenizer) == 4 ** k + 6
    for seq in sample_sequences:
        expected = tokenize(seq, k)
        assert tokenizer(seq, add_special_tokens=False)["input_ids"] == expected
        assert tokenizer(seq)["input_ids"] == expected  # no special tokens for one sequence
    # a pair: CLS a SEP b (the interaction task's layout, SEP = CLS)
    pair = tokenizer("ACGUA", "GGCAU")["input_ids"]
    assert pair == [CLS, *tokenize("ACGUA", k), CLS, *tokenize("GGCAU", k)]
    # padding and the mask
    batch = tokenizer(["ACGUAC", "GG"], padding=True)
    assert batch["attention_mask"][1] == [1] * len(tokenize("GG", k)) + [0] * (6 - len(tokenize("GG", k)))
    assert batch["input_ids"][1][len(tokenize("GG", k)):] == [PAD] * (6 - len(tokenize("GG", k)))
    # round trip through a folder
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert type(again) is RnaretTokenizer and again.k == k
    assert again("GGGAAACCCUUU")["input_ids"] == tokenize("GGGAAACCCUUU", k)
    assert tokenizer.decode(tokenize("GGGAAACCCUUU", k)) == "GGGAAACCCTTT"


def test_mask_hides_one_nucleotide_at_every_k():
    assert RnaretTokenizer(k=1)("AC<mask>GU")["input_ids"] == [6, 8, MASK, 9, 7]
    for k in (3, 5):
        ids = RnaretTokenizer(k=k)("ACGUACG<mask>ACGUACG")["input_ids"]
        plain = tokenize("ACGUACGAACGUACG", k)
        assert len(ids) == 15
        hidden = [i for i, (a, b) in enumerate(zip(ids, plain)) if a != b]
        assert hidden == list(range(7 - k // 2, 7 + k // 2 + 1)) and all(ids[i] == MASK for i in hidden)


def test_tokenizer_refuses_a_foreign_vocabulary(tmp_path):
    RnaretTokenizer(k=3).save_pretrained(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    vocab["AAA"], vocab["AAT"] = vocab["AAT"], vocab["AAA"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="not the published k-mer vocabulary at k=3"):
        RnaretTokenizer.from_pretrained(tmp_path)


def _config(**overrides):
    fields = dict(vocab_size=10, retnet_embed_dim=32, retnet_value_embed_dim=32, retnet_ffn_embed_dim=32,
                  retnet_layers=2, dropout=0.0, activation_dropout=0.0, chunk_size=8, parallel_max_len=0)
    fields.update(overrides)
    return RnaretConfig(**fields)


def test_config_checks_and_auto_classes(tmp_path):
    config = _config(num_labels=3)
    assert config.hidden_size == 32 and config.num_hidden_layers == 2 and config.k == 1
    assert config.encoder_config() == EncoderConfig(**{**config.encoder_config().to_dict()})
    with pytest.raises(ValueError, match="vocab_size 11"):
        _config(vocab_size=11)
    with pytest.raises(ValueError, match="classifier_pooling"):
        _config(classifier_pooling="max")
    config.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is RnaretConfig
    assert type(AutoModel.from_config(config)) is RnaretModel
    assert type(AutoModelForSequenceClassification.from_config(config)) is RnaretForSequenceClassification


def test_heads_losses_padding_and_states():
    torch.manual_seed(0)
    ids = torch.randint(6, 10, (3, 21))
    ids[2, 13:] = PAD
    mask = (ids != PAD).long()
    # chunkwise form (parallel_max_len 0, chunks of 8) for every call
    token_model = RnaretForTokenClassification(_config(num_labels=3)).eval()
    labels = torch.randint(0, 3, (3, 21)).masked_fill(mask == 0, -100)
    out = token_model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    assert out.logits.shape == (3, 21, 3) and torch.isfinite(out.loss) and len(out.hidden_states) == 3
    alone = token_model(input_ids=ids[2:, :13])
    assert torch.allclose(out.logits[2, :13], alone.logits[0], atol=1e-5) and (out.logits[2, 13:] == 0).all()
    expected = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert torch.allclose(out.loss, expected)

    seq_model = RnaretForSequenceClassification(_config(num_labels=1)).eval()
    out = seq_model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0.5, -1.0, 2.0]))
    assert seq_model.config.problem_type == "regression" and out.logits.shape == (3, 1)
    alone = seq_model(input_ids=ids[2:, :13])  # mean pooling over the real positions only
    assert torch.allclose(out.logits[2], alone.logits[0], atol=1e-5)

    mlm = RnaretForMaskedLM(_config()).eval()
    with torch.no_grad():
        out = mlm(input_ids=ids, attention_mask=mask, output_attentions=True, return_dict=False)
    logits, attentions = out[0], out[1]
    assert logits.shape == (3, 21, 10) and len(attentions) == 2 and attentions[0].shape == (3, 4, 21, 21)
    with pytest.raises(ValueError, match="RetNet encoder only"):
        RnaretModel(_config(architecture="transformer"))(input_ids=ids, output_attentions=True)


def test_bundled_code_imports_no_rnaret():
    code = bundle_code()
    assert {"configuration_rnaret.py", "modeling_rnaret.py", "tokenization_rnaret.py", "rnaret_model_encoder.py",
            "rnaret_model_retention.py", "rnaret_tokenizer.py"} <= set(code)
    for name, text in code.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("rnaret"), (name, node.module)
                assert node.module.split(".")[0] in {"__future__", "torch", "transformers", "numpy", "dataclasses",
                                                     "functools", "typing", "collections"}, (name, node.module)
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert f"{node.module}.py" in code, (name, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("rnaret") for a in node.names), name


@pytest.fixture(scope="module")
def released_files(tmp_path_factory):
    """Released-layout .pth files with random weights (tests/published_archives.py)."""
    from published_archives import make_model_tree

    return make_model_tree(tmp_path_factory.mktemp("released"), dim=16, layers=2) / "model"


def test_released_interaction_file_becomes_a_sequence_classifier(released_files, tmp_path):
    from rnaret.checkpoint import load_encoder
    from rnaret.checkpoint.published import load_published_state_dict
    from rnaret.heads.interaction import InteractionHead

    path = released_files / "rri" / "MirTar_5mer.pth"
    out = export_hf(path, tmp_path / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    # rnaret.hf is imported here, so its registered class is used (the folder's own code is
    # what test_export_hf.py runs, without rnaret)
    assert type(model).__name__ == "RnaretForSequenceClassification"
    assert model.config.classifier_pooling == "cls" and model.config.id2label[1] == "interaction"
    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    batch = tokenizer(["UGAGGUAGUAGGUUGUAUAGUU", "ACGUACGUAGCUAGC"], ["CUAUACAACCUACUACCUCA", "GGCUAGCUAG"],
                      padding=True, return_tensors="pt")
    assert batch["input_ids"][0, 0] == CLS
    encoder = load_encoder(path)
    head = InteractionHead(16)
    head.load_published_state_dict(load_published_state_dict(path)[1])
    with torch.no_grad():
        expected = head(encoder(batch["input_ids"], padding_mask=batch["attention_mask"].bool()).last_inner_state)
        got = model(**batch).logits
    assert got.shape == (2, 2) and torch.allclose(got, expected, atol=1e-5)
    card = (out / "README.md").read_text()
    assert "fine-tuned: interaction" in card and "MirTar_5mer.pth" in card


@pytest.mark.parametrize("name,task", [("lnc/lnc_H_5mer.pth", "coding"), ("ssp/RNAStrAlign_1mer.pth", "structure")])
def test_released_heads_without_a_transformers_form_export_their_encoder(released_files, tmp_path, name, task):
    from rnaret.checkpoint import load_encoder

    path = released_files / name
    out = export_hf(path, tmp_path / "hf")
    card = (out / "README.md").read_text()
    assert f"Fine-tuned for the {task} task; its head is NOT included" in card
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["RnaretForMaskedLM"] and config["auto_map"]["AutoModel"]
    weights = load_file(out / "model.safetensors")
    ours = load_encoder(path).state_dict()
    assert all(torch.equal(weights[f"rnaret.encoder.{key}"], value) for key, value in ours.items())


def test_bad_checkpoints_are_named(tmp_path, capsys):
    with pytest.raises(InputError, match="no such checkpoint"):
        export_hf(tmp_path / "missing.pth", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an RNAret checkpoint folder"):
        export_hf(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert main(["export-hf", str(tmp_path / "bad.pth"), str(tmp_path / "out")]) != 0
    assert "bad.pth" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_our_fine_tuned_interaction_folder_becomes_a_sequence_classifier(released_files, tmp_path):
    from rnaret.checkpoint import load_encoder
    from rnaret.tasks import get_task
    from rnaret.checkpoint.finetuned import save_finetuned
    from rnaret.tasks.finetune import TaskModel

    task = get_task("interaction")
    encoder = load_encoder(released_files / "pretrain" / "pretrain_5mer.pth")
    torch.manual_seed(1)
    folder = save_finetuned(TaskModel(encoder, task.build_head(16)), task, tmp_path / "ckpt",
                            encoder_kind="retnet", init="pretrain_5mer.pth", precision="fp32")
    out = export_hf(folder, tmp_path / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["UGAGGUAGUAGGUUGUAUAGUU"], ["CUAUACAACCUACUACCUCA"], return_tensors="pt")
    saved = TaskModel(load_encoder(folder / "encoder"), task.build_head(16))
    saved.head.load_state_dict(load_file(folder / "head.safetensors"))
    with torch.no_grad():
        expected = saved.head(saved.encoder(batch["input_ids"]).last_inner_state, None)
        assert torch.allclose(model(**batch).logits, expected, atol=1e-5)
    card = (out / "README.md").read_text()
    assert "Fine-tuned with `rnaret finetune` for the `interaction` task from `pretrain_5mer.pth`" in card
