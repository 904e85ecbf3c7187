"""Structure readers and writers on the bundled bpRNA records (pseudoknotted ones included), and
the bad inputs each reader rejects."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnaret.io.errors import InputError
from rnaret.io.structure import (
    StructureRecord,
    crossing_pairs,
    format_bpseq,
    format_ct,
    matrix_to_pairs,
    pairs_to_dot_bracket,
    pairs_to_matrix,
    parse_dot_bracket,
    read_bpseq,
    read_ct,
    read_dbn,
    read_structure_table,
    read_structures,
    write_bpseq_folder,
    write_ct,
    write_dbn,
    write_structure_table,
)


@pytest.fixture(scope="module")
def structure_dir(resources) -> Path:
    return resources / "structure"


@pytest.fixture(scope="module")
def test_records(structure_dir) -> list[StructureRecord]:
    return list(read_structures(structure_dir / "bprna_test.csv"))


@pytest.fixture(scope="module")
def sample(test_records) -> list[StructureRecord]:
    """Five pseudoknotted and five nested records of the bundled test set."""
    pk = [r for r in test_records if crossing_pairs(r.pairs)][:5]
    nested = [r for r in test_records if not crossing_pairs(r.pairs)][:5]
    assert len(pk) == 5 and len(nested) == 5
    return pk + nested


def _key(records):
    return [(r.id, r.sequence, r.pairs) for r in records]


def test_csv_dbn_and_bpseq_folder_hold_the_same_records(structure_dir, test_records):
    from_dbn = list(read_structures(structure_dir / "bprna_test.dbn"))
    from_bpseq = list(read_structures(structure_dir / "bpseq" / "bprna_test"))
    assert len(test_records) == 1266
    assert _key(from_dbn) == _key(test_records)
    # resources/ keeps the first 20 .bpseq files of the test set (resources/structure/SOURCE.md)
    assert len(from_bpseq) == 20
    assert [r.id for r in from_bpseq] == sorted(r.id for r in from_bpseq)  # read in file-name order
    by_id = {r.id: r for r in test_records}
    assert _key(from_bpseq) == _key(by_id[r.id] for r in from_bpseq)


def test_pairs_are_sorted_one_based_and_the_pk_column_matches_crossing_pairs(structure_dir, test_records):
    with open(structure_dir / "bprna_test.csv", newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    n_pk = 0
    for rec in test_records:
        assert rec.pairs == sorted(rec.pairs)
        assert all(1 <= i < j <= len(rec.sequence) for i, j in rec.pairs)
        assert rec.pairs == [tuple(p) for p in json.loads(rows[rec.id]["base_pairs"])]
        has_pk = bool(crossing_pairs(rec.pairs))
        assert has_pk == (rows[rec.id]["has_pseudoknot"] == "True"), rec.id
        n_pk += has_pk
    assert n_pk == 107  # SOURCE.md: 107 pseudoknotted test records


def test_dot_bracket_round_trip_keeps_pseudoknots(sample):
    for rec in sample:
        db = rec.dot_bracket
        assert len(db) == len(rec.sequence)
        assert parse_dot_bracket(db) == rec.pairs
        if crossing_pairs(rec.pairs):
            assert "[" in db and "]" in db
        else:
            assert set(db) <= set("().")


def test_dbn_bpseq_ct_and_table_files_round_trip(sample, tmp_path):
    write_dbn(sample, tmp_path / "s.dbn")
    write_ct(sample, tmp_path / "s.ct")
    write_structure_table(sample, tmp_path / "s.csv")
    write_structure_table(sample, tmp_path / "s.tsv")
    write_bpseq_folder(sample, tmp_path / "bpseq")
    for name in ("s.dbn", "s.ct", "s.csv", "s.tsv"):
        assert _key(read_structures(tmp_path / name)) == _key(sample), name
    assert _key(read_structures(tmp_path / "bpseq")) == sorted(_key(sample))
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary files


def test_ct_layout_is_standard(sample):
    rec = sample[0]
    lines = format_ct(rec).splitlines()
    n = len(rec.sequence)
    assert lines[0].split() == [str(n), rec.id]
    partner = dict(rec.pairs) | {j: i for i, j in rec.pairs}
    first = lines[1].split()
    assert first == ["1", rec.sequence[0], "0", "2", str(partner.get(1, 0)), "1"]
    last = lines[n].split()
    assert last == [str(n), rec.sequence[-1], str(n - 1), "0", str(partner.get(n, 0)), str(n)]


def test_greedy_page_assignment_uses_the_lowest_free_bracket():
    assert pairs_to_dot_bracket([(1, 5), (3, 8)], 8) == "(.[.)..]"
    assert pairs_to_dot_bracket([(1, 8), (2, 7), (4, 6)], 8) == "((.(.)))"
    # five mutually crossing pairs: the four bracket kinds, then the letter pages
    crossing = [(1, 6), (2, 7), (3, 8), (4, 9), (5, 10)]
    assert pairs_to_dot_bracket(crossing, 10) == "([{<A)]}>a"
    assert parse_dot_bracket("([{<A)]}>a") == crossing
    # a pair that closes before a later one opens reuses the page
    assert pairs_to_dot_bracket([(1, 4), (2, 6), (5, 8), (7, 9)], 9) == "([.)(][)]"


def test_page_assignment_on_a_known_h_type_knot():
    # two stems crossing each other: the 5' stem takes (), the other []
    pairs = [(1, 10), (2, 9), (5, 15), (6, 14)]
    assert pairs_to_dot_bracket(pairs, 16) == "((..[[..))...]]."
    assert crossing_pairs(pairs) == pairs
    assert crossing_pairs([(1, 10), (2, 9), (11, 20)]) == []


def test_base_pairs_column_wins_over_structure(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,sequence,structure,base_pairs\n'
                    'a,GGGGAAACCCC,((((...)))),"[[1, 11]]"\n'
                    'b,GGGGAAACCCC,((((...)))),\n'
                    'c,GGGGAAACCCC,not a structure,"[[2, 10], [10, 2]]"\n')
    recs = {r.id: r.pairs for r in read_structure_table(path)}
    assert recs == {"a": [(1, 11)], "b": [(1, 11), (2, 10), (3, 9), (4, 8)], "c": [(2, 10)]}


def test_table_split_column_selects_rows(structure_dir, tmp_path):
    rows = list(read_structures(structure_dir / "bprna_valid.csv", split="valid"))
    assert len(rows) == 265
    with pytest.raises(InputError, match="no rows of split 'test'"):
        list(read_structures(structure_dir / "bprna_valid.csv", split="test"))
    with pytest.raises(InputError, match="only be selected from a .csv/.tsv table"):
        read_structures(structure_dir / "bprna_valid.dbn", split="valid")


def test_bprna_dbn_layout_with_name_lines(tmp_path):
    path = tmp_path / "bprna.dbn"
    path.write_text("#Name: bpRNA_X_1\n#Length:  11\n#PageNumber: 1\nGGGGAAACCCC\n((((...))))\n"
                    "#Name: bpRNA_X_2\n#Length:  8\n#PageNumber: 2\nGGAGACCU\n(.[.)..]\n")
    recs = list(read_dbn(path))
    assert [r.id for r in recs] == ["bpRNA_X_1", "bpRNA_X_2"]
    assert recs[1].pairs == [(1, 5), (3, 8)]


def test_rnafold_style_energy_after_the_structure_is_ignored(tmp_path):
    path = tmp_path / "fold.dbn"
    path.write_text(">x some description\nGGGGAAACCCC\n((((...)))) (-4.50)\n")
    (rec,) = read_dbn(path)
    assert rec.id == "x" and rec.pairs == [(1, 11), (2, 10), (3, 9), (4, 8)]


def test_contact_matrix_round_trip_numpy_and_torch(sample):
    rec = sample[0]
    n = len(rec.sequence)
    mat = pairs_to_matrix(rec.pairs, n)
    assert mat.shape == (n, n) and mat.dtype == np.float32
    assert np.array_equal(mat, mat.T) and mat.sum() == 2 * len(rec.pairs)
    assert matrix_to_pairs(mat) == rec.pairs
    tmat = pairs_to_matrix(rec.pairs, n, as_torch=True)
    assert isinstance(tmat, torch.Tensor) and torch.equal(tmat, torch.from_numpy(mat))
    assert matrix_to_pairs(tmat) == rec.pairs
    assert matrix_to_pairs(pairs_to_matrix([], 5)) == []


def test_contact_matrix_with_a_base_paired_twice_is_rejected():
    mat = pairs_to_matrix([(1, 8), (2, 7)], 8)
    mat[0, 6] = mat[6, 0] = 1
    with pytest.raises(ValueError, match="partners"):
        matrix_to_pairs(mat)
    asym = pairs_to_matrix([(1, 8)], 8)
    asym[1, 6] = 1
    with pytest.raises(ValueError, match="symmetric"):
        matrix_to_pairs(asym)


BAD_FILES = [
    # (file name, content, words the message must contain)
    ("unclosed.dbn", ">r1\nGGGAAACCC\n(((...)).\n", ["r1", "unbalanced", "position 1", "never closed"]),
    ("closes.dbn", ">r1\nGGGAAACCC\n())......\n", ["r1", "unbalanced", "position 3", "closes nothing"]),
    ("length.dbn", ">r1\nGGGAAACCC\n(((...))\n", ["r1", "length mismatch", "9 nt", "8 characters"]),
    ("char.dbn", ">r1\nGGGAAACCC\n((x...)).\n", ["r1", "'x' at position 3"]),
    ("missing.dbn", ">r1\nGGGAAACCC\n>r2\nGGGAAACCC\n(((...)))\n", ["r1", "structure line"]),
    ("dup.dbn", ">r1\nGGGAAACCC\n(((...)))\n>r1\nGGGAAACCC\n(((...)))\n", ["r1", "duplicate id"]),
    ("before.dbn", "GGGAAACCC\n>r1\nGGGAAACCC\n(((...)))\n", ["text before the first"]),
    ("twice.csv", 'id,sequence,base_pairs\nr1,GGGAAACCC,"[[1, 9], [1, 8]]"\n', ["r1", "base 1 is paired twice"]),
    ("range.csv", 'id,sequence,base_pairs\nr1,GGGAAACCC,"[[1, 20]]"\n', ["r1", "outside positions 1..9"]),
    ("self.csv", 'id,sequence,base_pairs\nr1,GGGAAACCC,"[[4, 4]]"\n', ["r1", "paired with itself"]),
    ("float.csv", 'id,sequence,base_pairs\nr1,GGGAAACCC,"[[1.5, 9]]"\n', ["r1", "not two integers"]),
    ("json.csv", 'id,sequence,base_pairs\nr1,GGGAAACCC,"[[1, 9]"\n', ["r1", "not JSON"]),
    ("columns.csv", "name,sequence,structure\nr1,GGGAAACCC,(((...)))\n", ["missing column", "id"]),
    ("seq.csv", "id,sequence,structure\nr1,GGG-AACCC,(((...)))\n", ["r1", "'-' at position 4"]),
    ("dupid.tsv", "id\tsequence\tstructure\nr1\tGGGAAACCC\t(((...)))\nr1\tGGGAAACCC\t(((...)))\n",
     ["r1", "duplicate id"]),
    ("asym.bpseq", "1 G 9\n2 G 0\n3 G 0\n4 A 0\n5 A 0\n6 A 0\n7 C 0\n8 C 0\n9 C 0\n",
     ["asym", "not symmetric", "base 1 pairs with 9", "base 9 pairs with nothing"]),
    ("number.bpseq", "1 G 9\n2 G x\n", ["number", "expected integers", "line 2"]),
    ("order.bpseq", "1 G 0\n3 G 0\n", ["order", "position 3 where 2 was expected"]),
    ("partner.bpseq", "1 G 12\n2 G 0\n", ["partner", "partner 12 outside 1..2"]),
    ("cols.bpseq", "1 G 0\n2 G\n", ["cols", "expected 3 columns"]),
    ("trunc.ct", "3 r1\n1 G 0 2 0 1\n2 G 1 3 0 2\n", ["r1", "truncated record", "3 nt"]),
    ("header.ct", "abc r1\n1 G 0 2 0 1\n", ["header.ct", "sequence length"]),
    ("asym.ct", "3 r1\n1 G 0 2 3 1\n2 A 1 3 0 2\n3 C 2 0 0 3\n", ["r1", "not symmetric"]),
    ("bad.ct", "2 r1\n1 G 0 2 0 1\n2 G one 0 0 2\n", ["r1", "expected integers", "line 3"]),
    ("empty.dbn", "", ["the file is empty"]),
    ("x.fold", ">r1\nGGGAAACCC\n(((...)))\n", ["unknown structure format"]),
    # mismatched brackets: the closing one and the open one of another kind it meets
    ("mismatch.dbn", ">r1\nGGGAAACCC\n(((...]]]\n",
     ["r1", "line 3", "mismatched brackets", "']' at position 7", "'(' at position 3"]),
    ("pair.dbn", ">r1\nGGAAACC\n(]..[).\n", ["r1", "mismatched", "']' at position 2", "'(' at position 1"]),
    ("empty.bpseq", "", ["the file is empty"]),
    ("headeronly.bpseq", "Filename: x.bpseq\nOrganism: none\n", ["headeronly", "no 'i base j' lines"]),
    ("letter.bpseq", "1 G 0\n2 \u00e9 0\n", ["letter", "base '\u00e9' is not one letter", "line 2"]),
    # a CT whose header count disagrees with its base lines, either way
    ("long.ct", "3 r1\n1 G 0 2 0 1\n2 G 1 3 0 2\n3 C 2 4 0 3\n4 C 3 0 0 4\n",
     ["r1", "goes on past the 3 nt its header gives", "line 5"]),
    ("short.ct", "5 r1\n1 G 0 2 0 1\n2 G 1 3 0 2\n3 r2\n1 G 0 2 0 1\n2 G 1 3 0 2\n3 C 2 0 0 3\n",
     ["r1", "ends after 2 of the 5 nt its header gives", "line 4"]),
    ("headeronly.csv", "id,sequence,structure\n", ["the table has no rows"]),
    ("headeronly.tsv", "id\tsequence\tstructure\n\n\n", ["the table has no rows"]),
    ("more.csv", "id,sequence,structure\nr1,GGGAAACCC,(((...))),extra\n", ["more fields than the header's 3", "line 2"]),
    ("fewer.tsv", "id\tsequence\tstructure\nr1\tGGGAAACCC\n", ["fewer fields (2) than the header's 3", "line 2"]),
    ("deep.csv", 'id,sequence,base_pairs\nr1,GGGAAACCC,"' + "[" * 100000 + '"\n', ["r1", "line 2", "base_pairs"]),
    ("bigint.csv", 'id,sequence,base_pairs\nr1,GGGAAACCC,"[[1' + "0" * 5000 + ', 2]]"\n', ["r1", "not JSON"]),
    ("nul.csv", "id,sequence,structure\nr1,GGG\x00AAACCC,(((...)))\n", ["line 2, column 7", "NUL"]),
]


@pytest.mark.parametrize("name,content,words", [b for b in BAD_FILES if b[2]], ids=[b[0] for b in BAD_FILES if b[2]])
def test_bad_input_names_file_record_and_problem(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        list(read_structures(path))
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, (word, message)


def test_folder_without_structure_files_and_missing_path(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here\n")
    with pytest.raises(InputError, match="no .bpseq or .ct files"):
        list(read_structures(tmp_path))
    with pytest.raises(InputError, match="no such file"):
        read_structures(tmp_path / "absent.csv")


def test_single_bpseq_and_ct_readers(sample, tmp_path):
    rec = sample[0]
    (tmp_path / "one.bpseq").write_text("Filename: one.bpseq\nOrganism: test\n" + format_bpseq(rec))
    got = read_bpseq(tmp_path / "one.bpseq")
    assert (got.id, got.sequence, got.pairs) == ("one", rec.sequence, rec.pairs)
    (tmp_path / "energy.ct").write_text(format_ct(rec).replace(f"\t{rec.id}\n", f"  ENERGY = -12.3  {rec.id}\n", 1))
    (got,) = read_ct(tmp_path / "energy.ct")
    assert (got.id, got.pairs) == (rec.id, rec.pairs)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_any_line_ending_and_a_gz_name_holding_plain_text(tmp_path, sample, ending):
    import gzip

    text = "".join(f">{r.id}\n{r.sequence}\n{r.dot_bracket}\n" for r in sample).encode().replace(b"\n", ending)
    (tmp_path / "s.dbn").write_bytes(text)
    (tmp_path / "plain.dbn.gz").write_bytes(text)
    (tmp_path / "real.dbn.gz").write_bytes(gzip.compress(text))
    for name in ("s.dbn", "plain.dbn.gz", "real.dbn.gz"):
        assert _key(read_structures(tmp_path / name)) == _key(sample), name
    bad = text.replace(sample[1].dot_bracket.encode(), b")" + sample[1].dot_bracket[1:].encode(), 1)
    (tmp_path / "bad.dbn").write_bytes(bad)
    with pytest.raises(InputError) as err:
        list(read_structures(tmp_path / "bad.dbn"))
    assert (err.value.record, err.value.line) == (sample[1].id, 6)


def test_a_structure_file_that_is_not_utf8_names_line_and_column(tmp_path):
    path = tmp_path / "x.bpseq"
    path.write_bytes(b"Filename: caf\xe9\n1 G 0\n")
    with pytest.raises(InputError, match="byte 0xE9 is not UTF-8") as err:
        list(read_structures(path))
    assert (err.value.line, err.value.column) == (1, 14)
