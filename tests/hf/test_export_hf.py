"""`rnaret export-hf`: exported folders load in a fresh interpreter that has only transformers and
torch (no rnaret), and give rnaret's encoder outputs and the published reference vectors; the
fill-mask pipeline, every layer's states, retention maps, and a Trainer step of a classifier."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hf_site import site_without_rnaret
from safetensors.torch import load_file, save_file

pytest.importorskip("transformers")

from rnaret.checkpoint import load_encoder  # noqa: E402
from rnaret.cli import main  # noqa: E402
from rnaret.model.scores import layer_retention_scores  # noqa: E402
from rnaret.tokenizer import PAD, tokenize  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
CLIENT = Path(__file__).with_name("hf_client.py")
SEQUENCES = ["ACGUacgu", "GGNAAUCCRYggaa", "GGGAAACCCUUU", "A", "ACGT-.ACGUUUN"]
TOL = 1e-5


def _sample_records(resources, n, types=None, max_len=None):
    """The first n records of the bundled RNAcentral sample (of the given RNA types)."""
    records, header, chunks = [], None, []
    with gzip.open(resources / "rnacentral" / "rnacentral_sample.fa.gz", "rt") as handle:
        for line in list(handle) + [">end"]:
            if line.startswith(">"):
                if header is not None and (types is None or header.split()[-1] in types):
                    records.append((header, "".join(chunks)[:max_len]))
                    if len(records) == n:
                        break
                header, chunks = line[1:].strip(), []
            else:
                chunks.append(line.strip())
    return records


@pytest.fixture(scope="module")
def laptop_run(resources, tmp_path_factory):
    """A laptop-preset model (3 layers, width 64, k = 1) pretrained for 3 steps on the bundled
    RNAcentral sample by `rnaret pretrain`'s code: the run folder."""
    from rnaret.data.shards import write_shards
    from rnaret.io.fasta import write_fasta
    from rnaret.train.config import preset
    from rnaret.train.pretrain import pretrain

    root = tmp_path_factory.mktemp("laptop")
    with open(root / "sample.fa", "w") as out:
        write_fasta(_sample_records(resources, 300), out)
    write_shards(root / "sample.fa", root / "k1", 1, tokens_per_shard=200_000, valid_fraction=0.1, seed=0,
                 show_progress=False)
    cfg = preset("laptop", 1, max_steps=3, eval_every=3, warmup_steps=1, valid_max_batches=1)
    pretrain(cfg, root / "k1", root / "run", threads=1, show_progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def clean_site_packages(tmp_path_factory):
    """A folder of links to every entry of this environment's site-packages except rnaret's own
    (its package, its metadata, its editable-install hooks): the packages a user without rnaret has."""
    return site_without_rnaret(tmp_path_factory.mktemp("site"))


def _run_client(site_dir, model_dir, ids, mask, out_dir, train_table=None):
    """hf_client.py in a fresh `python -S` with only site_dir and model_dir on sys.path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"input_ids": ids.contiguous(), "attention_mask": mask.contiguous()}, str(out_dir / "in.safetensors"))
    (out_dir / "sequences.json").write_text(json.dumps(SEQUENCES))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "TRANSFORMERS"))}
    env.update(HF_MODULES_CACHE=str(out_dir / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               HF_HOME=str(out_dir / "hf_home"))
    command = [sys.executable, "-S", str(CLIENT), str(site_dir), str(model_dir), str(out_dir / "in.safetensors"),
               str(out_dir / "sequences.json"), str(out_dir)]
    if train_table is not None:
        command += ["--train", str(train_table)]
    done = subprocess.run(command, cwd=out_dir, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return load_file(out_dir / "outputs.safetensors"), json.loads((out_dir / "results.json").read_text())


def _close(a, b, tol=TOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max() <= tol, float((a - b).abs().max())


def _check_against_encoder(encoder, ids, mask, outputs, results, k):
    """The folder's outputs equal rnaret's encoder's (fp32, <= 1e-5), rows alone equal padded rows."""
    assert not results["rnaret_importable"]
    assert results["model_module"].startswith("transformers_modules.")
    with torch.no_grad():
        ours = encoder(ids, padding_mask=mask.bool(), output_hidden_states=True)
    n_layers = encoder.config.retnet_layers
    _close(outputs["last_hidden_state"], ours.last_inner_state)
    if "logits" in outputs:
        _close(outputs["logits"], ours.logits)
    assert sorted(k_ for k_ in outputs if k_.startswith("hidden_states.")) == \
        sorted(f"hidden_states.{i}" for i in range(n_layers + 1))
    for i in range(n_layers + 1):
        state = outputs[f"hidden_states.{i}"]
        _close(state, ours.hidden_states[i])
        for row in range(ids.shape[0]):  # padding-invariant: each row as it is alone
            n = int(mask[row].sum())
            _close(state[row, :n], outputs[f"alone.{row}.hidden_states.{i}"])
            assert (state[row, n:] == 0).all()
    for i in range(n_layers):
        scores = outputs[f"attentions.{i}"]
        assert scores.shape == (ids.shape[0], encoder.config.retnet_retention_heads, ids.shape[1], ids.shape[1])
        _close(scores, layer_retention_scores(encoder, ours.hidden_states[i], i, mask.bool()), 1e-6)
    assert results["token_ids"] == [tokenize(s, k) for s in SEQUENCES]
    assert results["token_ids_default"] == results["token_ids"]
    ids_each = [tokenize(s, k) for s in SEQUENCES]
    longest = max(map(len, ids_each))
    assert results["batch_input_ids"] == [i + [PAD] * (longest - len(i)) for i in ids_each]


@pytest.mark.slow
def test_laptop_model_exports_loads_without_rnaret_and_fine_tunes(laptop_run, clean_site_packages, tmp_path, resources):
    out = tmp_path / "rnaret-laptop-hf"
    assert main(["export-hf", str(laptop_run), str(out)]) == 0
    encoder = load_encoder(laptop_run / "checkpoint")
    assert encoder.config.parallel_limit < 300  # the rows below run in the chunkwise form
    torch.manual_seed(0)
    ids = torch.randint(6, 10, (3, 300))
    ids[1, 231:] = PAD
    mask = (ids != PAD).long()
    table = tmp_path / "table.tsv"
    rows = _sample_records(resources, 8, types={"tRNA", "rRNA"}, max_len=120)
    assert {h.split()[-1] for h, _ in rows} == {"tRNA", "rRNA"}
    table.write_text("id\tsequence\tlabel\n" + "".join(f"{h.split()[0]}\t{s}\t{h.split()[-1]}\n" for h, s in rows))
    outputs, results = _run_client(clean_site_packages, out, ids, mask, tmp_path / "client", table)
    _check_against_encoder(encoder, ids, mask, outputs, results, k=1)

    # fill-mask: the top nucleotides with rnaret's own probabilities at the masked position
    answers = results["fill_mask"]
    masked = tokenize("GGGAAACACUUUCCC", 1)
    masked[7] = 4  # MASK
    with torch.no_grad():
        probs = encoder(torch.tensor([masked])).logits[0, 7].softmax(-1)
    assert [a["token"] for a in answers] == probs.topk(4).indices.tolist()
    assert {a["token_str"] for a in answers} == set("ACGT")
    for a in answers:
        assert a["score"] == pytest.approx(float(probs[a["token"]]), abs=1e-5)
        assert a["sequence"] == "GGGAAAC" + a["token_str"] + "CTTTCCC"

    # one Trainer step of AutoModelForSequenceClassification on the table
    train = results["train"]
    assert train["global_step"] == 1 and train["n_records"] == 8 and train["labels"] == ["rRNA", "tRNA"]
    assert train["classifier_class"] == "RnaretForSequenceClassification"
    assert 0 < train["loss"] < 10 and train["logits_shape"] == [8, 2]
    assert {"classifier.dense.weight", "classifier.out_proj.weight",
            "rnaret.encoder.layers.2.retention.q_proj.weight"} <= set(train["changed"])

    card = (out / "README.md").read_text()
    assert "rnaret pretrain" in card and "3 steps" in card and "doi:10.1038/s42003-026-09757-x" in card
    from rnaret.hf.export import sha256

    assert sha256(laptop_run / "checkpoint" / "weights.safetensors") in card


@pytest.fixture(scope="module")
def published_pth(reference, tmp_path_factory):
    """The reference model's weights (random, perturbed; published key names) saved as a
    released-style pretrained .pth."""
    path = tmp_path_factory.mktemp("pth") / "pretrain_3mer.pth"
    torch.save(load_file(reference / "official_vectors" / "weights.safetensors"), path)
    return path


@pytest.mark.slow
def test_published_pth_exports_to_the_published_outputs(published_pth, reference, root, clean_site_packages, tmp_path):
    out = tmp_path / "hf"
    assert main(["export-hf", str(published_pth), str(out)]) == 0
    vectors = load_file(reference / "official_vectors" / "io_parallel.safetensors")
    ids = vectors["tokens"]
    mask = (ids != PAD).long()
    assert mask[1].sum() == 150 and mask[[0, 2]].all()
    outputs, results = _run_client(clean_site_packages, out, ids, mask, tmp_path / "client")
    _check_against_encoder(load_encoder(published_pth), ids, mask, outputs, results, k=3)
    # the published model's outputs: unpadded rows as they are, the padded row as it is alone
    _close(outputs["logits"][[0, 2]], vectors["logits"][[0, 2]])
    _close(outputs["last_hidden_state"][[0, 2]], vectors["last_inner_state"][[0, 2]])
    _close(outputs["logits"][1, :150], vectors["logits_row1_first150_unpadded"])
    published = load_file(root / "tests" / "fixtures" / "published_retention" / "published_retention.safetensors")
    for i in range(3):
        _close(outputs[f"hidden_states.{i}"][0], published["inner_states_row0"][i])
        _close(outputs[f"hidden_states.{i}"][1, :150], published["inner_states_row1_first150"][i])
    for layer, head in ((0, 1), (1, 3)):
        _close(outputs[f"attentions.{layer}"][0, head], published[f"rttn_layer{layer}_head{head}_row0"], 1e-6)
        _close(outputs[f"attentions.{layer}"][1, head, :150, :150],
               published[f"rttn_layer{layer}_head{head}_row1_first150"], 1e-6)
    card = (out / "README.md").read_text()
    from rnaret.hf.export import sha256

    assert sha256(published_pth) in card and "released .pth" in card and "RNAcentral" in card
