"""`rnaret embed`: real FASTA in, documented safetensors out; bad input leaves no file."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

from rnaret.checkpoint import load_encoder
from rnaret.cli import main
from rnaret.embed import embed_sequences, length_batches
from rnaret.io.fasta import read_fasta, write_fasta
from rnaret.tokenizer import encode


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(reference):
    """The reference encoder (k = 3, published-style config + safetensors folder)."""
    return reference / "official_vectors"


@pytest.fixture(scope="module")
def records(resources):
    """Real RNAcentral records of varied lengths from the bundled sample."""
    picked, lengths = [], set()
    for record in read_fasta(resources / "rnacentral" / "rnacentral_sample.fa.gz"):
        bucket = len(record.sequence) // 100
        if bucket not in lengths and len(record.sequence) <= 1500:
            lengths.add(bucket)
            picked.append((record.id, record.sequence))
        if len(picked) == 7:
            break
    return picked + [("short_2nt", "GU")]


@pytest.fixture
def fasta(tmp_path, records):
    path = tmp_path / "input.fa"
    with open(path, "w") as handle:
        write_fasta(records, handle)
    return path


def _embed(fasta, checkpoint, output, *extra):
    return main(["embed", str(fasta), "--checkpoint", str(checkpoint), "--output", str(output),
                 "--no-progress", *extra])


def test_embed_end_to_end_matches_each_sequence_alone(tmp_path, fasta, checkpoint, records, capsys):
    output = tmp_path / "emb.safetensors"
    assert _embed(fasta, checkpoint, output, "--batch-tokens", "3000", "--precision", "fp32") == 0
    assert "1 sequence shorter than k=3 gives only FILL tokens" in capsys.readouterr().err
    arrays = load_file(str(output))
    with safe_open(str(output), "np") as handle:
        metadata = handle.metadata()
    ids = json.loads(metadata["ids"])
    assert ids == [name for name, _ in records]
    assert metadata["k"] == "3" and metadata["pool"] == "mean" and metadata["representation"] == "last_inner_state"
    assert metadata["precision"] == "fp32"
    lengths = [len(seq) for _, seq in records]
    assert arrays["lengths"].tolist() == lengths
    assert arrays["offsets"].tolist() == [0, *np.cumsum(lengths).tolist()]
    assert arrays["per_sequence"].shape == (len(records), 64) and arrays["per_sequence"].dtype == np.float32
    assert arrays["per_nucleotide"].shape == (sum(lengths), 64)
    model = load_encoder(checkpoint)
    for i, (_, sequence) in enumerate(records):
        with torch.no_grad():
            alone = model(torch.from_numpy(encode(sequence, 3))[None]).last_inner_state[0].numpy()
        rows = arrays["per_nucleotide"][arrays["offsets"][i]:arrays["offsets"][i + 1]]
        if len(sequence) >= 3:  # one token per nucleotide
            assert np.allclose(rows, alone, atol=2e-5)
            assert np.allclose(arrays["per_sequence"][i], rows.mean(axis=0), atol=1e-5)
        else:  # shorter than k: the k - 1 FILL tokens
            assert np.allclose(rows, alone[:len(sequence)], atol=2e-5)


def test_options_gzip_pool_and_no_per_nucleotide(tmp_path, fasta, checkpoint):
    plain = tmp_path / "plain.safetensors"
    assert _embed(fasta, checkpoint, plain, "--batch-tokens", "100000", "--precision", "fp32") == 0
    packed = tmp_path / "input.fa.gz"
    packed.write_bytes(gzip.compress(fasta.read_bytes()))
    compact = tmp_path / "compact.safetensors"
    assert _embed(packed, checkpoint, compact, "--batch-tokens", "500", "--no-per-nucleotide", "--pool", "max",
                  "--precision", "fp32") == 0
    a, b = load_file(str(plain)), load_file(str(compact))
    assert "per_nucleotide" not in b
    for i in range(len(a["lengths"])):
        rows = a["per_nucleotide"][a["offsets"][i]:a["offsets"][i + 1]]
        expected = rows.max(axis=0) if a["lengths"][i] >= 3 else None
        if expected is not None:
            assert np.allclose(b["per_sequence"][i], expected, atol=2e-5)
    hidden = tmp_path / "hidden.safetensors"
    assert _embed(fasta, checkpoint, hidden, "--representation", "hidden") == 0
    assert not np.allclose(load_file(str(hidden))["per_sequence"], a["per_sequence"])


def test_default_precision_is_resolved_recorded_and_close_to_fp32(tmp_path, fasta, checkpoint):
    """``--precision auto`` (the default) is bf16 where the CPU has bf16 matrix instructions;
    the file records what was used, and bf16 embeddings stay close to the fp32 ones."""
    from rnaret.precision import resolve_precision

    exact, default = tmp_path / "fp32.safetensors", tmp_path / "auto.safetensors"
    assert _embed(fasta, checkpoint, exact, "--precision", "fp32") == 0
    assert _embed(fasta, checkpoint, default) == 0
    with safe_open(str(default), "np") as handle:
        assert handle.metadata()["precision"] == resolve_precision("auto", "cpu")
    assert _embed(fasta, checkpoint, default, "--precision", "bf16") == 0
    a, b = load_file(str(exact))["per_nucleotide"], load_file(str(default))["per_nucleotide"]
    assert np.isfinite(b).all()
    # bf16 keeps 8 bits of mantissa: per row, 3% of the row's largest entry
    scale = np.abs(a).max(axis=1, keepdims=True)
    assert (np.abs(b - a) <= 0.03 * scale + 1e-3).all()


def test_command_line_entry_point(tmp_path, fasta, checkpoint):
    output = tmp_path / "cli.safetensors"
    done = subprocess.run([sys.executable, "-m", "rnaret", "embed", str(fasta), "--checkpoint", str(checkpoint),
                           "--output", str(output)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "nt" in done.stderr  # the progress bar and summary go to stderr
    assert output.exists() and done.stdout == ""


def test_a_100k_nt_sequence_is_embedded_chunkwise(records, checkpoint):
    unit = "".join(seq for _, seq in records if len(seq) > 50)
    long_sequence = (unit * (100_000 // len(unit) + 1))[:100_000]
    model = load_encoder(checkpoint)
    result = embed_sequences(model, ["long"], [long_sequence], progress=False, precision="fp32")
    assert result.per_nucleotide.shape == (100_000, 64) and np.isfinite(result.per_nucleotide).all()
    # another chunk size on a 30,000-nt prefix: rows 10,000 nt away from the cut (beyond any
    # decay: 0.996**10000 ~ 1e-17) must agree, whatever the chunking
    model.config.chunk_size = 96
    other = embed_sequences(model, ["long"], [long_sequence[:30_000]], progress=False, precision="fp32")
    model.config.chunk_size = 128
    assert np.allclose(other.per_nucleotide[:20_000], result.per_nucleotide[:20_000], atol=1e-4)


def test_length_batches_respect_the_budget_and_padding():
    lengths = [5, 300, 40, 41, 1000, 2, 299, 280, 39, 38]
    batches = length_batches(lengths, 1000, max_padding=0.25)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or longest * len(batch) <= 1000
        assert sum(lengths[i] for i in batch) >= 0.75 * longest * len(batch)
    assert batches[0] == [4]  # longest first
    assert [sorted(b) for b in batches] == [[4], [1, 6, 7], [0, 2, 3, 8, 9], [5]]
    with pytest.raises(ValueError):
        length_batches(lengths, 0)


def _bad_inputs(tmp_path, records):
    name, sequence = records[0]
    cases = {}
    (tmp_path / "empty.fa").write_bytes(b"")
    cases["empty.fa"] = ("the file is empty", None)
    (tmp_path / "no_records.fa").write_text("just some text\nno header\n")
    cases["no_records.fa"] = ("no FASTA records", None)
    (tmp_path / "no_sequence.fa").write_text(f">{name}\n{sequence}\n>hollow_record\n>{name}_b\nACGU\n")
    cases["no_sequence.fa"] = ("has no sequence", "hollow_record")
    (tmp_path / "binary.fa").write_bytes(f">{name}\n".encode() + bytes(range(256)) * 4)
    cases["binary.fa"] = ("binary data|not a text FASTA", None)
    whole = gzip.compress(f">{name}\n{sequence}\n".encode() * 50)
    (tmp_path / "truncated.fa.gz").write_bytes(whole[:len(whole) // 2])
    cases["truncated.fa.gz"] = ("truncated or corrupt gzip", None)
    (tmp_path / "letters.fa").write_text(f">{name}\n{sequence}\n>protein_like\nMKVLQEEF\n")
    cases["letters.fa"] = ("not an IUPAC nucleotide", "protein_like")
    return cases


def test_bad_input_exits_1_naming_file_and_record_and_leaves_no_output(tmp_path, records, checkpoint, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for filename, (message, record) in _bad_inputs(tmp_path, records).items():
        output = out_dir / f"{filename}.safetensors"
        assert _embed(tmp_path / filename, checkpoint, output) == 1, filename
        err = capsys.readouterr().err
        assert "rnaret embed: error:" in err and filename in err, err
        assert any(m in err for m in message.split("|")), err
        if record:
            assert record in err, err
        assert not output.exists()
    assert list(out_dir.iterdir()) == []  # no temporary files either


def test_bad_checkpoint_exits_1_and_leaves_no_output(tmp_path, fasta, capsys):
    output = tmp_path / "emb.safetensors"
    assert _embed(fasta, tmp_path / "missing_ckpt", output) == 1
    assert "missing_ckpt: no such checkpoint" in capsys.readouterr().err
    assert not output.exists()
