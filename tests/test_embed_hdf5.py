"""`rnaret embed --out X.h5`: every layer, pooled or per nucleotide, streamed into HDF5; a run
stopped part-way resumes without recomputing the records it had finished."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from rnaret.checkpoint import load_encoder, save_encoder
from rnaret.cli import main
from rnaret.embed import read_embeddings
from rnaret.io.fasta import read_fasta
from rnaret.model import build_encoder
from rnaret.train.config import preset
import rnaret.embed_hdf5 as embed_hdf5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, resources):
    root = tmp_path_factory.mktemp("embed_hdf5")
    torch.manual_seed(0)
    save_encoder(build_encoder(preset("tiny", 3).encoder_config()), root / "encoder")
    records = [r for r in read_fasta(resources / "rnacentral" / "rnacentral_sample.fa.gz") if len(r.sequence) < 200][:40]
    records.append(type(records[0])("short", "short", "GU", 0))   # shorter than k
    fasta = root / "in.fa"
    fasta.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    return root, fasta, records


def embed(setup, out, *extra):
    root, fasta, _ = setup
    return main(["embed", str(fasta), "--checkpoint", str(root / "encoder"), "--out", str(out), "--quiet",
                 "--precision", "fp32", *extra])


def test_every_layer_per_nucleotide_and_pooled_match_the_encoder(setup, tmp_path):
    root, fasta, records = setup
    assert embed(setup, tmp_path / "ref.safetensors") == 0
    ids, ref, _ = read_embeddings(tmp_path / "ref.safetensors")
    assert embed(setup, tmp_path / "all.h5", "--layers", "all", "--pool", "none") == 0
    assert embed(setup, tmp_path / "mean.h5", "--pool", "mean") == 0
    encoder = load_encoder(root / "encoder")
    n_layers = encoder.config.retnet_layers
    with h5py.File(tmp_path / "all.h5") as f, h5py.File(tmp_path / "mean.h5") as g:
        assert [x.decode() for x in f["ids"][:]] == ids == [r.id for r in records]
        assert f.attrs["complete"] and f.attrs["n_done"] == len(records)
        assert sorted(f) == sorted(["ids", "lengths", "offsets", *(f"layer_{l}" for l in range(n_layers + 1))])
        np.testing.assert_array_equal(f["offsets"][:], ref["offsets"])
        # the last layer is last_inner_state, what the .safetensors output holds
        np.testing.assert_allclose(f[f"layer_{n_layers}"][:], ref["per_nucleotide"], atol=2e-5)
        np.testing.assert_allclose(g[f"layer_{n_layers}"][:], ref["per_sequence"], atol=2e-5)
        assert sorted(g) == sorted(["ids", "lengths", f"layer_{n_layers}"])
        # every layer, as the encoder gives it for each sequence alone
        from rnaret.tokenizer import encode

        for i in (0, 7, len(records) - 1):
            tokens = torch.from_numpy(encode(records[i].sequence, 3)).unsqueeze(0)
            with torch.no_grad():
                states = encoder(tokens, return_logits=False, output_hidden_states=True).hidden_states
            a, b = f["offsets"][i], f["offsets"][i + 1]
            for layer in range(n_layers + 1):
                np.testing.assert_allclose(f[f"layer_{layer}"][a:b], states[layer][0, :b - a].numpy(), atol=2e-5)


def test_cls_is_the_first_token_and_layers_are_chosen(setup, tmp_path):
    assert embed(setup, tmp_path / "cls.h5", "--layers", "0,2", "--pool", "cls") == 0
    assert embed(setup, tmp_path / "none.h5", "--layers", "0,2", "--pool", "none") == 0
    with h5py.File(tmp_path / "cls.h5") as f, h5py.File(tmp_path / "none.h5") as g:
        assert sorted(k for k in f if k.startswith("layer_")) == ["layer_0", "layer_2"]
        np.testing.assert_array_equal(f["layer_2"][:], g["layer_2"][:][g["offsets"][:-1]])


def test_a_stopped_run_resumes_without_recomputing(setup, tmp_path, monkeypatch, capsys):
    _, _, records = setup
    monkeypatch.setattr(embed_hdf5, "CHUNK_RECORDS", 8)
    calls = []
    real = embed_hdf5.embed_chunk

    def stopping(model, sequences, *args, **kwargs):
        calls.append(len(sequences))
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a kill between two chunks
        return real(model, sequences, *args, **kwargs)

    monkeypatch.setattr(embed_hdf5, "embed_chunk", stopping)
    out = tmp_path / "big.h5"
    with pytest.raises(KeyboardInterrupt):
        embed(setup, out, "--layers", "all", "--pool", "none")
    partial = tmp_path / "big.h5.partial"
    assert not out.exists() and partial.exists()
    with h5py.File(partial) as f:
        assert f.attrs["n_done"] == 16 and not f.attrs["complete"]
    calls.clear()
    monkeypatch.setattr(embed_hdf5, "embed_chunk", lambda *a, **k: (calls.append(len(a[1])), real(*a, **k))[1])
    assert embed(setup, out, "--layers", "all", "--pool", "none") == 0
    err = capsys.readouterr().err
    assert sum(calls) == len(records) - 16 and calls[0] == 8      # the first 16 records were not recomputed
    assert f"(16 found done, {len(records) - 16} embedded now)" in err
    assert embed(setup, tmp_path / "whole.h5", "--layers", "all", "--pool", "none") == 0
    with h5py.File(out) as f, h5py.File(tmp_path / "whole.h5") as g:
        assert sorted(f) == sorted(g) and list(f["ids"][:]) == list(g["ids"][:])
        for key in g:
            if key != "ids":
                np.testing.assert_allclose(f[key][:], g[key][:], atol=1e-6)


@pytest.mark.parametrize("extra, words", [
    (["--layers", "9"], "9 is out of range"),
    (["--layers", "first"], "--layers must be all, last or a list"),
    (["--per-nucleotide"], "with .h5, --pool none"),
])
def test_bad_choices_are_refused(setup, tmp_path, capsys, extra, words):
    assert embed(setup, tmp_path / "x.h5", *extra) == 1
    assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_safetensors_output_refuses_hdf5_only_choices(setup, tmp_path, capsys):
    assert embed(setup, tmp_path / "x.safetensors", "--layers", "all") == 1
    assert "give an --out ending in .h5" in capsys.readouterr().err


def test_a_partial_file_of_other_settings_is_not_resumed(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(embed_hdf5, "CHUNK_RECORDS", 8)
    real = embed_hdf5.embed_chunk
    calls = []

    def stopping(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(embed_hdf5, "embed_chunk", stopping)
    with pytest.raises(KeyboardInterrupt):
        embed(setup, tmp_path / "x.h5", "--pool", "mean")
    monkeypatch.setattr(embed_hdf5, "embed_chunk", real)
    assert embed(setup, tmp_path / "x.h5", "--pool", "max") == 1
    err = capsys.readouterr().err
    assert "holds a run with other settings" in err and "pool 'mean', now 'max'" in err


def test_retention_scores_of_one_layer_and_head(setup, tmp_path, capsys):
    from rnaret.model.scores import retention_scores
    from rnaret.tokenizer import encode

    root, _, records = setup
    one = tmp_path / "one.fa"
    one.write_text(f">{records[3].id}\n{records[3].sequence}\n")
    assert main(["embed", str(one), "--checkpoint", str(root / "encoder"), "--out", str(tmp_path / "r.npy"),
                 "--retention", "2,1", "--quiet"]) == 0
    got = np.load(tmp_path / "r.npy")
    encoder = load_encoder(root / "encoder")
    tokens = torch.from_numpy(encode(records[3].sequence, 3)).unsqueeze(0)
    np.testing.assert_allclose(got, retention_scores(encoder, tokens, 1, 0)[0].numpy(), atol=1e-6)
    assert got.shape == (len(records[3].sequence),) * 2
    _, fasta, _ = setup
    assert main(["embed", str(fasta), "--checkpoint", str(root / "encoder"), "--out", str(tmp_path / "x.npy"),
                 "--retention", "2,1", "--quiet"]) == 1
    assert "a FASTA of one sequence" in capsys.readouterr().err and not (tmp_path / "x.npy").exists()
    assert main(["embed", str(one), "--checkpoint", str(root / "encoder"), "--out", str(tmp_path / "x.npy"),
                 "--retention", "9,1", "--quiet"]) == 1
    assert "the encoder has layers 1.." in capsys.readouterr().err


def test_python_api_gives_what_the_command_line_writes(setup, tmp_path, capsys):
    """``rnaret.embed.embed_layers`` / ``retention_map``: the .h5 rows and the --retention matrix
    of `rnaret embed`, and its refusals with the same messages (one validation function)."""
    from rnaret.embed import embed_layers, retention_map
    from rnaret.io.errors import InputError

    root, _, records = setup
    encoder = load_encoder(root / "encoder")
    sequences = [r.sequence for r in records]
    for pool in ("none", "cls"):
        assert embed(setup, tmp_path / f"{pool}.h5", "--layers", "0,2", "--pool", pool) == 0
        got = embed_layers(encoder, sequences, "0,2", pool)
        assert sorted(got) == [0, 2]
        with h5py.File(tmp_path / f"{pool}.h5") as f:
            for layer in (0, 2):
                rows = np.concatenate(got[layer]) if pool == "none" else got[layer]
                assert rows.shape == f[f"layer_{layer}"].shape and rows.shape[0] >= len(records)
                np.testing.assert_allclose(rows, f[f"layer_{layer}"][:], atol=1e-5)
    one = tmp_path / "one.fa"
    one.write_text(f">{records[5].id}\n{records[5].sequence}\n")
    assert main(["embed", str(one), "--checkpoint", str(root / "encoder"), "--out", str(tmp_path / "r.npy"),
                 "--retention", "2,2", "--quiet"]) == 0
    np.testing.assert_array_equal(retention_map(encoder, records[5].sequence, 2, 2), np.load(tmp_path / "r.npy"))
    capsys.readouterr()
    for layers in ("first", "9"):
        with pytest.raises(InputError) as api:
            embed_layers(encoder, sequences[:2], layers, "mean")
        assert embed(setup, tmp_path / "x.h5", "--layers", layers) == 1
        assert str(api.value) in capsys.readouterr().err
    with pytest.raises(InputError, match="--pool must be one of mean, max, cls, none, got 'avg'"):
        embed_layers(encoder, sequences[:2], "all", "avg")
    with pytest.raises(InputError, match=r"--retention 3,1: the encoder has layers 1\.\.2 and heads 1\.\.2"):
        retention_map(encoder, records[5].sequence, 3, 1)
    with pytest.raises(InputError, match="alignment gap"):
        embed_layers(encoder, ["ACG-U"], "all", "mean")
