"""`rnaret fold` writes every pair it predicts in every format, or refuses naming the record.

A laptop-size encoder with a small structure head, fine-tuned one epoch on bundled bpRNA
records, folds a 1,500-nt random sequence and a 1,598-nt rRNA of the bundled RNAcentral sample.
Such a barely trained model predicts hundreds of crossing pairs at a low threshold: more than
the 30 bracket pages of dot-bracket, so the .dbn must be refused, while the .ct, the bpseq
folder and the pair-score table hold them all.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from rnaret.cli import main
from rnaret.io.fasta import read_fasta
from rnaret.io.structure import pairs_to_dot_bracket, read_structures, write_structure_table
from rnaret.io.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")

RRNA = "URS0002165A56_942017"  # rRNA, 1,598 nt, ACGT only (resources/rnacentral index)


@pytest.fixture(scope="module")
def model_and_fasta(tmp_path_factory, resources):
    from rnaret.checkpoint import save_encoder
    from rnaret.model import build_encoder
    from rnaret.tasks.run import run_finetune
    from rnaret.train.config import preset

    root = tmp_path_factory.mktemp("fold_outputs")
    torch.manual_seed(0)
    save_encoder(build_encoder(preset("laptop", 1).encoder_config()), root / "encoder")
    records = [r for r in read_structures(resources / "structure" / "bprna_train.csv") if len(r.sequence) <= 90]
    write_structure_table(records[:16], root / "train.csv")
    write_structure_table(records[16:20], root / "valid.csv")
    entry = {"train": str(root / "train.csv"), "valid": str(root / "valid.csv"), "test": str(root / "valid.csv")}
    settings = {"preset": "laptop", "head_channels": 8, "head_blocks": 2, "epochs": 1, "batch_size": 4,
                "train_crop": 64, "lr": 3e-3, "warmup_steps": 0}
    run_finetune("structure", entry, str(root / "encoder"), root / "checkpoint", settings=settings,
                 progress=False)
    rrna = next(r for r in read_fasta(resources / "rnacentral" / "rnacentral_sample.fa.gz") if r.id == RRNA)
    random = "".join(np.random.default_rng(0).choice(list("ACGU"), 1500))
    fasta = root / "long.fa"
    fasta.write_text(f">random1500\n{random}\n>{rrna.id}\n{rrna.sequence}\n")
    return str(root / "checkpoint"), fasta


def fold(checkpoint, fasta, output, *extra):
    return main(["fold", str(fasta), "--checkpoint", checkpoint, "--output", str(output), "--quiet",
                 *map(str, extra)])


def summary_pairs(err: str) -> int:
    found = re.search(r"([\d,]+) base pairs? in ([\d,]+) structures? ->", err)
    assert found, err
    return int(found.group(1).replace(",", ""))


def test_every_format_holds_the_pairs_of_the_ct_or_the_dbn_is_refused(model_and_fasta, tmp_path, capsys):
    checkpoint, fasta = model_and_fasta
    lengths = {r.id: len(r.sequence) for r in read_fasta(fasta)}
    assert lengths == {"random1500": 1500, RRNA: 1598}
    outcomes = set()
    for threshold in ("0.3", "0.05"):
        assert fold(checkpoint, fasta, tmp_path / f"{threshold}.ct", "--threshold", threshold,
                    "--pair-scores", tmp_path / f"{threshold}.tsv") == 0
        err = capsys.readouterr().err
        ct = {r.id: r.pairs for r in read_structures(tmp_path / f"{threshold}.ct")}
        assert set(ct) == set(lengths)
        assert summary_pairs(err) == sum(len(p) for p in ct.values())   # the summary counts what was written
        scores = pd.read_csv(tmp_path / f"{threshold}.tsv", sep="\t")
        assert list(scores.columns) == ["id", "i", "j", "pair_score"]
        assert f"{len(scores):,} pair scores >= 0.01" in err
        listed = {(rid, i, j): s for rid, i, j, s in scores.itertuples(index=False)}
        for rid, pairs in ct.items():   # every predicted pair is in the table, above the threshold
            assert all(listed[(rid, i, j)] > float(threshold) - 1e-4 for i, j in pairs)

        if threshold == "0.05":  # the many pairs
            assert fold(checkpoint, fasta, tmp_path / "bpseq", "--format", "bpseq", "--threshold", threshold) == 0
            capsys.readouterr()
            for rid, pairs in ct.items():
                assert list(read_structures(tmp_path / "bpseq" / f"{rid}.bpseq"))[0].pairs == pairs

        dbn = tmp_path / f"{threshold}.dbn"
        rc = fold(checkpoint, fasta, dbn, "--threshold", threshold)
        err = capsys.readouterr().err
        if rc == 0:
            outcomes.add("written")
            assert {r.id: r.pairs for r in read_structures(dbn)} == ct
            assert summary_pairs(err) == sum(len(p) for p in ct.values())
        else:
            outcomes.add("refused")
            assert rc == 1 and not dbn.exists()
            named = re.search(r"record '([^']+)': dot-bracket cannot hold these (\d+) base pairs", err)
            assert named, err
            assert int(named.group(2)) == len(ct[named.group(1)]) > 30
            assert ".ct or .bpseq" in err and "base pairs in" not in err
    # a few confident pairs at 0.3 fit; hundreds of crossing pairs at 0.05 do not
    assert outcomes == {"written", "refused"}


def test_pair_scores_are_named_scores_and_the_old_option_is_refused(model_and_fasta, tmp_path, capsys):
    checkpoint, fasta = model_and_fasta
    assert fold(checkpoint, fasta, tmp_path / "x.ct", "--pair-probabilities", tmp_path / "p.tsv") == 1
    err = capsys.readouterr().err
    assert "--pair-scores" in err and "not pair probabilities" in err
    assert not (tmp_path / "x.ct").exists() and not (tmp_path / "p.tsv").exists()
    assert fold(checkpoint, fasta, tmp_path / "x.ct", "--pair-scores", tmp_path / "p.npz",
                "--threshold", "0.05") == 0
    assert "2 pair-score matrices" in capsys.readouterr().err
    matrices = np.load(tmp_path / "p.npz")
    # what makes them scores, not probabilities: a base's scores are not normalised
    assert max(float(matrices[k].sum(axis=1).max()) for k in matrices.files) > 1.0


def test_dot_bracket_refuses_31_crossing_pairs_and_holds_30():
    fan = [(k, 40 + k) for k in range(1, 32)]   # every pair crosses every other: one page each
    with pytest.raises(InputError, match="cannot hold these 31 base pairs"):
        pairs_to_dot_bracket(fan, 80)
    text = pairs_to_dot_bracket(fan[:30], 80)
    assert text[0] == "(" and text[29] == "Z" and text[69] == "z"


def test_one_sequence_is_counted_in_the_singular(model_and_fasta, tmp_path, capsys):
    checkpoint, _ = model_and_fasta
    fasta = tmp_path / "one.fa"
    fasta.write_text(">a\nGGGGAAAACCCC\n")
    assert fold(checkpoint, fasta, tmp_path / "one.ct", "--threshold", "0.3") == 0
    err = capsys.readouterr().err
    assert "1 sequence from" in err and "in 1 structure ->" in err
