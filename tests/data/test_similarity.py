"""The MMseqs2 search behind the leakage stage, on the bundled data: short and long test
sequences found inside longer records, with mismatches, at chunk boundaries; coordinates right
with several threads; a missing binary named with the environment to use."""
from __future__ import annotations

import random

import pytest

from rnaret.data.sequence_key import normalized
from rnaret.io.dataset_readers import iter_sequences
from rnaret.data.similarity import (LENGTH_CLASSES, MMSEQS_ENV, Hit, MMseqsError, Thresholds,
                                    best_per_test, group_by_searched, mmseqs_binary, parse_hits,
                                    search, workspace, write_search_fasta)
from rnaret.io.fasta import read_fasta

SWAP = str.maketrans("ACGT", "CGTA")


def mismatched(sequence: str, count: int) -> str:
    """``sequence`` with ``count`` substitutions evenly spaced: the hardest case for exact seeds."""
    letters = list(sequence)
    for j in range(1, count + 1):
        p = round(j * len(letters) / (count + 1)) - 1
        letters[p] = letters[p].translate(SWAP)
    return "".join(letters)


def revcomp(sequence: str) -> str:
    return sequence[::-1].translate(str.maketrans("ACGT", "TGCA"))


@pytest.fixture(scope="module")
def corpus_records(resources):
    return [r.sequence.upper().replace("U", "T") for r in
            read_fasta(resources / "rnacentral/rnacentral_sample.fa.gz")][:300]


@pytest.fixture(scope="module")
def test_sequences(resources):
    """Real test sequences: bpRNA structures (27-499 nt) and miRNA-target pairs (miRNAs ~22 nt)."""
    bprna = [normalized(s) for _, s in iter_sequences(str(resources / "structure/bprna_test.csv"))]
    mirtar = resources / "mirna_target/mirtar_deepmirtar_miraw.tsv"
    mirna = [normalized(s) for r, s in iter_sequences(mirtar, "test", task="interaction") if r.endswith(":mirna_seq")]
    return sorted(set(bprna[:200]) | set(mirna[:200]))


def run_search(tmp_path, searched, tests, threads=2, thresholds=Thresholds()):
    fasta = tmp_path / "searched.fa"
    write_search_fasta(fasta, enumerate(searched))
    work = tmp_path / "work"
    work.mkdir()
    hits, plan = search(fasta, tests, work, thresholds=thresholds,
                        searched_nucleotides=sum(map(len, searched)), threads=threads)
    return {key: best_per_test(group) for key, group in group_by_searched(hits)}, plan


def passing(found, key, test_index, nt, thresholds=Thresholds()):
    return [h for h in found.get(key, []) if h.test == test_index and thresholds.passes(h, nt)]


def test_contained_and_mismatched_test_sequences_are_found_short_and_long(tmp_path, corpus_records,
                                                                          test_sequences):
    rng = random.Random(0)
    short = [i for i, s in enumerate(test_sequences) if len(s) < 30]
    long = [i for i, s in enumerate(test_sequences) if 60 <= len(s) <= 200]
    assert len(short) >= 20 and len(long) >= 20
    picked = rng.sample(short, 12) + rng.sample(long, 12)
    searched, expect = list(corpus_records), {}
    for i in picked:
        flank = rng.choice(corpus_records)
        cut = rng.randrange(len(flank))
        seq = test_sequences[i]
        for kind, planted in (("inside", flank[:cut] + seq + flank[cut:]),
                              ("two_mismatches", mismatched(seq, 2)),
                              ("two_mismatches_inside", flank[:cut] + mismatched(seq, 2) + flank[cut:])):
            expect[len(searched)] = (kind, i)
            searched.append(planted)
    found, plan = run_search(tmp_path, searched, test_sequences)
    nt = sum(map(len, searched))
    missed = [(kind, len(test_sequences[i])) for key, (kind, i) in expect.items()
              if not passing(found, key, i, nt)]
    assert missed == []
    assert set(plan.classes) == {"short", "long"}
    assert plan.classes["short"]["kmer"] == 7 and plan.classes["long"]["kmer"] == 11
    assert "--strand" in plan.classes["long"]["options"] and plan.version


def test_reported_positions_are_the_aligned_letters_with_two_threads(tmp_path, corpus_records,
                                                                     test_sequences):
    """MMseqs2 14 mirrors some target coordinates when multi-threaded; the parsed hits must point
    at the letters that really align (exact containments: the two slices are equal)."""
    rng = random.Random(1)
    searched, planted = [], {}
    for i in rng.sample(range(len(test_sequences)), 60):
        flank = rng.choice(corpus_records)
        cut = rng.randrange(len(flank))
        planted[len(searched)] = i
        searched.append(flank[:cut] + test_sequences[i] + flank[cut:])
    found, _ = run_search(tmp_path, searched, test_sequences, threads=2)
    checked = 0
    for key, i in planted.items():
        for hit in found[key]:
            if hit.test == i and hit.identity == 1.0 and hit.test_coverage == 1.0:
                assert searched[key][hit.searched_start - 1:hit.searched_end] == \
                    test_sequences[i][hit.test_start - 1:hit.test_end]
                checked += 1
    assert checked == len(planted)


def test_mirrored_target_coordinates_are_mapped_back():
    # query 7..41 aligned to target 7..41 of an 86-nt target, reported as 80..46
    line = "\t".join(["3", "5", "0.857", "35", "5", "0", "7", "41", "80", "46", "200", "86", "50"])
    hit = parse_hits(line + "\n")
    assert (hit.test_start, hit.test_end, hit.searched_start, hit.searched_end) == (7, 41, 7, 41)
    assert hit.test_coverage == pytest.approx(35 / 86)


def test_a_test_sequence_across_a_chunk_boundary_is_found_whole(tmp_path, corpus_records, test_sequences):
    """MMseqs2 cuts long records into 10 kb chunks; the overlap keeps a contained sequence whole."""
    long_seq = max(test_sequences, key=len)
    filler = "".join(corpus_records)[:30_000]
    record = filler[:10_000 - len(long_seq) // 2] + long_seq + filler[10_000:]
    found, plan = run_search(tmp_path, [record], test_sequences)
    index = test_sequences.index(long_seq)
    best = [h for h in found[0] if h.test == index]
    assert best and best[0].test_coverage == 1.0 and best[0].identity == 1.0
    assert plan.classes["long"]["options"][plan.classes["long"]["options"].index("--sequence-overlap") + 1] \
        == str(max(len(s) for s in test_sequences))


def test_reverse_complements_and_shuffles_are_not_hits(tmp_path, test_sequences):
    rng = random.Random(2)
    picked = [i for i, s in enumerate(test_sequences) if len(s) >= 60][:10]
    searched = [revcomp(test_sequences[i]) for i in picked]
    searched += ["".join(rng.sample(test_sequences[i], len(test_sequences[i]))) for i in picked]
    found, _ = run_search(tmp_path, searched, test_sequences)
    nt = sum(map(len, searched))
    assert not any(Thresholds().passes(h, nt) for hits in found.values() for h in hits)


def test_evalue_is_against_the_whole_searched_set():
    hit = Hit(searched=0, test=0, identity=1.0, aligned_length=22, mismatches=0, gap_opens=0,
              searched_start=1, searched_end=22, test_start=1, test_end=22, searched_length=100,
              test_length=22, bits=41)
    small, large = 8_693_052, 30_000_000_000
    assert hit.evalue(small) == pytest.approx(22 * small * 2.0 ** -41)
    assert Thresholds().passes(hit, small) and Thresholds().passes(hit, large)
    assert not Thresholds(max_evalue=0.1).passes(hit, large)  # E = 0.30 at RNAcentral's size


@pytest.mark.parametrize("key, value", [("min_identity", 0.0), ("min_identity", 1.5),
                                        ("min_test_coverage", -0.1), ("max_evalue", 0)])
def test_bad_thresholds_are_refused_naming_the_key(key, value):
    with pytest.raises(ValueError, match=f"leakage.{key}"):
        Thresholds(**{key: value})


def test_a_missing_mmseqs_names_the_environment_to_use(tmp_path, monkeypatch):
    monkeypatch.delenv("RNARET_MMSEQS", raising=False)
    with pytest.raises(MMseqsError) as error:
        mmseqs_binary("mmseqs-not-installed")
    message = str(error.value)
    assert MMSEQS_ENV in message and "mmseqs2" in message and "apt-get install mmseqs2" in message
    with workspace(tmp_path) as work:
        fasta = work / "s.fa"
        write_search_fasta(fasta, [(0, "ACGT" * 10)])
        with pytest.raises(MMseqsError, match="envs/data.yaml"):
            search(fasta, ["ACGTACGTAC"], work, thresholds=Thresholds(), searched_nucleotides=40,
                   binary="mmseqs-not-installed")
    assert not any(tmp_path.iterdir())  # the workspace is gone


def test_length_classes_cover_every_length():
    for length in (1, 7, 22, 29, 30, 31, 76, 3000, 100_000):
        assert sum(c.holds(length) for c in LENGTH_CLASSES) == 1


def test_the_named_environment_pins_the_mmseqs2_version_the_message_gives(root):
    from rnaret.data.similarity import MMSEQS_CONDA_PIN

    import yaml

    for env in (root / MMSEQS_ENV, root / "workflow/wrappers/mmseqs2/environment.yaml"):
        assert MMSEQS_CONDA_PIN in yaml.safe_load(env.read_text())["dependencies"], env
