"""One alphabet for every command and the page: gaps refused naming the line and column where
they stand, other IUPAC letters accepted, anything else refused the same way (rnaret.io.fasta)."""
from __future__ import annotations

import pytest

from rnaret.cli import main
from rnaret.io.errors import InputError
from rnaret.io.fasta import check_sequence_letters, read_sequences
from rnaret.serve.config import Limits
from rnaret.serve.inputs import BadInput, parse_fasta_text

# the gap stands on line 5, column 6: the second line of record "b"'s sequence
GAPPED = ">a first\nGGGGAAAACCCC\n>b second\nACGUACGUAC\nACGUA-CGUA\n"
IUPAC = ">n\nGGGNNRYSWKMBDHVAAACCCC\n>t\nacgtacgtTTTT\n"
COMMANDS = {
    "fold": ["--output", "out.dbn"],
    "embed": ["--output", "out.safetensors"],
    "classify": ["--output", "out.tsv"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("text, words", [
    (GAPPED, ["record 'b'", "line 5, column 6", "'-' at position 16 is an alignment gap"]),
    (GAPPED.replace("-", "."), ["record 'b'", "line 5, column 6", "'.' at position 16 is an alignment gap"]),
    (GAPPED.replace("-", "Z"), ["record 'b'", "line 5, column 6", "'Z' at position 16 is not an IUPAC"]),
])
def test_every_command_refuses_gaps_naming_the_line_and_column(tmp_path, capsys, command, text, words):
    fasta = tmp_path / "in.fa"
    fasta.write_text(text)
    output = tmp_path / COMMANDS[command][1]
    # the input is checked before the model is looked for: a missing checkpoint is never reached
    assert main([command, str(fasta), "--checkpoint", str(tmp_path / "no_model"), "--output", str(output)]) == 1
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err
    assert "no_model" not in err and not output.exists()


def test_the_page_reads_the_same_alphabet(tmp_path):
    limits = Limits()
    with pytest.raises(BadInput, match=r"record 'b': line 5, column 6: '-' at position 16 is an alignment gap"):
        parse_fasta_text(GAPPED, tmp_path, limits)
    # a pasted bare sequence with a gap is refused for its gap, not as "not FASTA"
    with pytest.raises(BadInput, match="alignment gap"):
        parse_fasta_text("GGGG-CCCC", tmp_path, limits)
    read = parse_fasta_text(IUPAC, tmp_path, limits)
    assert [r.sequence for r in read] == ["GGGNNRYSWKMBDHVAAACCCC", "ACGUACGUUUUU"]


def test_other_iupac_letters_are_accepted_by_the_reader_and_the_api(tmp_path):
    path = tmp_path / "iupac.fa"
    path.write_text(IUPAC)
    assert [r.sequence for r in read_sequences(path)] == ["GGGNNRYSWKMBDHVAAACCCC", "acgtacgtTTTT"]
    check_sequence_letters("GGGNNRYSWKMBDHVAAACCCC")
    for bad, what in (("GG-CC", "alignment gap"), ("GG.CC", "alignment gap"), ("GGXCC", "not an IUPAC"),
                      ("", "empty"), (None, "must be a string")):
        with pytest.raises(InputError, match=what):
            check_sequence_letters(bad, record="r")


def test_the_python_apis_refuse_gaps_naming_the_record():
    import torch

    from rnaret.embed import embed_sequences
    from rnaret.fold import predict_structure
    from rnaret.model import build_encoder
    from rnaret.train.config import preset

    encoder = build_encoder(preset("tiny", 1).encoder_config())
    with pytest.raises(InputError, match=r"record 'two': '-' at position 3 is an alignment gap"):
        embed_sequences(encoder, ["one", "two"], ["GGGCCC", "GG-CCC"], progress=False)
    with pytest.raises(InputError, match=r"record '#2': '\.' at position 3 is an alignment gap"):
        predict_structure(torch.nn.Linear(1, 1), ["GGGCCC", "GG.CCC"])
