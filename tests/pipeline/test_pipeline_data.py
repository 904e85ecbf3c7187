"""The real Snakemake on the bundled data in a temporary copy of the workflow: the data stages'
outputs checked against an independent recomputation; bad input; config errors; lint."""
from __future__ import annotations

import csv
import gzip
import hashlib
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from loopback import Server
from workflow_copy import SNAKEMAKE, make_workdir, snakemake
from rnaret.data.lengths import windows
from rnaret.data.shards import ShardCorpus
from rnaret.io.fasta import read_fasta
from rnaret.tokenizer import decode, encode

pytestmark = pytest.mark.slow  # runs the real Snakemake several times

# only the data stages' targets: later stages (pretraining, baselines) have their own tests
DATA_TARGETS = ["results/corpus/summary.tsv"]


def write_config(workdir, **changes):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    for dotted, value in changes.items():
        node = config
        *parents, key = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def revcomp(seq):
    return seq[::-1].translate(str.maketrans("ACGTacgt", "TGCAtgca"))


@pytest.fixture(scope="module")
def sample():
    return list(read_fasta(ROOT / "resources/rnacentral/rnacentral_sample.fa.gz"))


@pytest.fixture(scope="module")
def bprna_valid_seq():
    return pd.read_csv(ROOT / "resources/structure/bprna_valid.csv")["sequence"].iloc[5]


@pytest.fixture(scope="module")
def corpus_records(sample, bprna_valid_seq):
    """The bundled sample plus records each stage must handle: exact, U and lower-case
    duplicates (dedupe), a reverse complement (kept), downstream valid/test sequences (leakage),
    a too-short one (filter)."""
    injected = [
        ("dup_exact copy of record 0", sample[0].sequence),
        ("dup_u written in U", sample[1].sequence.replace("T", "U")),
        ("dup_lower", sample[2].sequence.lower()),
        ("revcomp_kept", revcomp(sample[3].sequence)),
        ("leak_bprna_valid", bprna_valid_seq.lower()),
        ("too_short", "ACGUACG"),
        ("leak_url_dataset", "GGGAAACCCTTTGGGAAACCCTTT"),  # the sequence of URL_DATASET, in T
    ]
    return [(r.description, r.sequence) for r in sample] + injected


URL_DATASET = b">extra_1\nGGGAAACCCUUUGGGAAACCCUUU\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus_records):
    workdir = make_workdir(tmp_path_factory.mktemp("pipeline"))
    corpus = workdir / "corpus.fa.gz"
    with gzip.open(corpus, "wt") as handle:
        for header, seq in corpus_records:
            handle.write(f">{header}\n{seq}\n")
    (workdir / "md5.txt").write_text(f"{hashlib.md5(corpus.read_bytes()).hexdigest()}  corpus.fa.gz\n")
    # a test-only dataset given as a URL: fetched by the download_dataset rule from 127.0.0.1
    with Server({"extra_test.fa": URL_DATASET}) as server:
        config = yaml.safe_load((workdir / "config.yaml").read_text())
        datasets = config["datasets"]
        datasets["coding"]["from_url"] = {"test": server.url("extra_test.fa"),
                                          "finetuned_on": "mouse"}
        # test-only datasets are checked for leakage too (dedupe.leakage_test_only), as the URL one
        config = write_config(workdir, **{"corpus.url": str(corpus), "corpus.md5": str(workdir / "md5.txt"),
                                          "shards": {"tokens_per_shard": 1_000_000, "run_tokens": 500_000},
                                          "dedupe": {"leakage_test_only": True}, "datasets": datasets})
        result = snakemake(workdir, "--cores", "2", *DATA_TARGETS)
    return workdir, config, result


def downstream_keys(config, splits=("valid", "test")):
    """Independent reading (pandas / FASTA) of every downstream valid/test sequence, U as T."""
    keys = {}
    for task, entries in config["datasets"].items():
        for name, entry in entries.items():
            for split in splits:
                if split not in entry:
                    continue
                value = entry[split]
                path, row = (value["path"], value.get("split")) if isinstance(value, dict) else (value, None)
                if path.startswith("http://"):  # the test-only URL dataset
                    keys[(task, name, split)] = {"GGGAAACCCTTTGGGAAACCCTTT"}
                    continue
                path = ROOT / path
                if str(path).endswith((".csv", ".tsv")):
                    table = pd.read_csv(path, sep="\t" if str(path).endswith(".tsv") else ",")
                    if row is not None:
                        table = table[table["split"] == row]
                    columns = [c for c in ("sequence", "mirna_seq", "target_seq") if c in table]
                    seqs = [s for c in columns for s in table[c].dropna()]
                else:
                    seqs = [r.sequence for r in read_fasta(path)]
                keys[(task, name, split)] = {s.upper().replace("U", "T") for s in seqs}
    return keys


def similar_removed(workdir):
    """Ids of the records the leakage stage's MMseqs2 pass removed (its hits table)."""
    with gzip.open(workdir / "results/corpus/leakage_hits.tsv.gz", "rt", newline="") as handle:
        return {r["corpus_record"] for r in csv.DictReader(handle, delimiter="\t") if r["removed"] == "yes"}


def expected_corpus(corpus_records, config, similar=frozenset()):
    """The data stages recomputed in plain Python: (records after each stage, final records);
    ``similar``: the ids the similarity pass removed (checked in test_data_leakage/test_similarity)."""
    seen, deduped = set(), []
    for header, seq in corpus_records:
        key = seq.upper().replace("U", "T")
        if key not in seen:
            seen.add(key)
            deduped.append((header.split()[0], seq.replace("U", "T").replace("u", "t")))
    leaked = set().union(*downstream_keys(config).values())
    identical_out = [(i, s) for i, s in deduped if s.upper() not in leaked]
    clean = [(i, s) for i, s in identical_out if i not in similar]
    final = []
    for rid, seq in clean:
        if len(seq) < 10:
            continue
        if len(seq) > 2000:
            final += [(f"{rid}/{a + 1}-{b}", seq[a:b]) for a, b in windows(len(seq), 2000, 200)]
        else:
            final.append((rid, seq))
    return deduped, clean, final


def read_tsv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_stage_counts_match_an_independent_recomputation(run, corpus_records):
    workdir, config, _ = run
    similar = similar_removed(workdir)
    deduped, clean, final = expected_corpus(corpus_records, config, similar)
    _, identical_out, _ = expected_corpus(corpus_records, config)
    summary = {row["stage"]: row for row in read_tsv(workdir / "results/corpus/summary.tsv")}
    assert int(summary["normalize"]["records_in"]) == len(corpus_records) == 16208
    assert int(summary["dedupe"]["records_removed"]) == 3 == len(corpus_records) - len(deduped)
    assert int(summary["dedupe"]["records_out"]) == len(deduped)
    assert int(summary["leakage identical"]["records_out"]) == len(identical_out)
    assert int(summary["leakage identical"]["records_removed"]) == len(deduped) - len(identical_out) >= 24
    assert int(summary["leakage similar"]["records_removed"]) == len(similar) > 0
    assert int(summary["leakage similar"]["records_out"]) == len(clean)
    assert int(summary["filter"]["records_out"]) == len(final)
    assert int(summary["filter"]["records_removed"]) == 1  # the injected 7-nt record
    assert int(summary["filter"]["nucleotides_out"]) == sum(len(s) for _, s in final)
    duplicates = (workdir / "results/corpus/duplicates.txt").read_text()
    assert "dup_exact" in duplicates and "dup_u" in duplicates and "dup_lower" in duplicates
    assert "revcomp_kept" not in duplicates
    filtered = [(r.id, r.sequence) for r in read_fasta(workdir / "results/corpus/filtered.fa.gz")]
    assert filtered == final


def test_leakage_table_matches_an_independent_count(run, corpus_records):
    workdir, config, _ = run
    deduped, _, _ = expected_corpus(corpus_records, config)
    corpus_keys = [s.upper() for _, s in deduped]
    rows = {(r["task"], r["dataset"], r["split"]): r for r in read_tsv(workdir / "results/corpus/leakage.tsv")}
    for key, sequences in downstream_keys(config).items():
        row = rows[key]
        assert int(row["unique_sequences"]) == len(sequences), key
        assert int(row["corpus_records_identical"]) == sum(k in sequences for k in corpus_keys), key
    assert int(rows[("structure", "bprna", "valid")]["corpus_records_identical"]) >= 1  # the injected one
    assert int(rows[("coding", "from_url", "test")]["corpus_records_identical"]) == 1
    assert (workdir / "results/datasets/coding/from_url/test/extra_test.fa").read_bytes() == URL_DATASET
    assert set(rows) >= {("interaction", "mirtar", "test"), ("coding", "mouse", "test"), ("all", "all", "all")}
    assert not any(k[2] == "train" for k in rows)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_shards_round_trip_to_the_filtered_sequences(run, corpus_records, k):
    workdir, config, _ = run
    _, _, final = expected_corpus(corpus_records, config, similar_removed(workdir))
    by_id = dict(final)
    root = workdir / "results" / "shards" / f"k{k}"
    seen = []
    for split in ("train", "valid"):
        corpus = ShardCorpus(root, split)
        assert corpus.k == k and np.all(np.diff(corpus.lengths) >= 0)
        for i in range(len(corpus)):
            rid = corpus.record_id(i)
            np.testing.assert_array_equal(corpus.tokens(i), encode(by_id[rid], k))
            if i % 25 == 0 and set(by_id[rid].upper()) <= set("ACGT"):  # UNK k-mers decode to N
                assert decode(corpus.tokens(i), k) == by_id[rid].upper()
            seen.append(rid)
    assert sorted(seen) == sorted(by_id)


def test_every_rule_logged_its_progress(run):
    workdir, _, _ = run
    logs = workdir / "logs" / "data"
    for name in ("download_corpus", "normalize_corpus", "dedupe_corpus", "remove_leakage",
                 "filter_lengths", "shard_tokens/k1", "shard_tokens/k3", "shard_tokens/k5"):
        text = (logs / f"{name}.log").read_text()
        assert text.strip(), name
    assert "normalize: 16.2krec" in (logs / "normalize_corpus.log").read_text()  # the tqdm display
    assert "(checked)" in (logs / "download_corpus.log").read_text()
    assert "duplicated records removed" in (logs / "dedupe_corpus.log").read_text()


def test_rerun_has_nothing_to_do(run):
    workdir, _, _ = run
    result = snakemake(workdir, "-n", "--cores", "1", *DATA_TARGETS)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_bad_corpus_fails_naming_the_record_and_leaves_no_output(tmp_path):
    workdir = make_workdir(tmp_path / "bad")
    corpus = workdir / "bad.fa"
    corpus.write_text(">good\nACGUACGUAC\n>URS_bad some rRNA\nACGU\nACJU\n")
    write_config(workdir, **{"corpus.url": str(corpus), "corpus.md5": ""})
    result = snakemake(workdir, "--cores", "1", *DATA_TARGETS, check=False)
    assert result.returncode != 0
    log = (workdir / "logs/data/normalize_corpus.log").read_text()
    assert "record 'URS_bad'" in log and "line 5, column 3" in log and "'J'" in log and "IUPAC" in log
    left = sorted(p.name for p in (workdir / "results/corpus").iterdir())
    assert left == ["download", "download.json"]  # nothing from the failed stage, no partial file


def test_wrong_checksum_stops_at_download(tmp_path):
    workdir = make_workdir(tmp_path / "md5")
    write_config(workdir, **{"corpus.md5": "0" * 32})
    result = snakemake(workdir, "--cores", "1", *DATA_TARGETS, check=False)
    assert result.returncode != 0
    assert "md5 mismatch" in (workdir / "logs/data/download_corpus.log").read_text()
    assert not (workdir / "results/corpus/download").exists() or not any(
        (workdir / "results/corpus/download").iterdir())


@pytest.mark.parametrize("changes, words", [
    ({"length_policy.long": "cut"}, ["length_policy", "long", "cut"]),
    ({"shards.k": [2]}, ["shards", "k"]),
    ({"corpus.url": 3}, ["corpus", "url"]),
])
def test_config_errors_name_the_key(tmp_path, changes, words):
    workdir = make_workdir(tmp_path / "cfg")
    write_config(workdir, **changes)
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    for word in words:
        assert word in text, (word, text[-2000:])


def test_unknown_top_level_key_is_an_error(tmp_path):
    workdir = make_workdir(tmp_path / "typo")
    with open(workdir / "config.yaml", "a") as handle:
        handle.write("\nlenght_policy: {min_length: 5}\n")
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0 and "lenght_policy" in result.stdout + result.stderr


def test_dry_run_and_lint_in_the_repository_root():
    env = dict(os.environ)
    dry = subprocess.run(SNAKEMAKE + ["-n", "--nolock", "--cores", "2"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    lint = subprocess.run(SNAKEMAKE + ["--lint", "--nolock"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
    assert "Congratulations" in lint.stdout + lint.stderr


def test_snakefiles_are_snakefmt_formatted():
    """The Snakefile and rules are as snakefmt writes them (CONVENTIONS: snakefmt formats them)."""
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_seqkit_wrapper_creates_every_declared_output(tmp_path):
    """Our wrapper, used as the official bio/seqkit one is: rmdup with no duplicates still
    yields the (empty) --dup-num-file, and the main output appears only when seqkit succeeded."""
    (tmp_path / "in.fa").write_text(">a x\nACGT\n>b\nACGA\n>c\nTCGT\n")
    wrapper = (ROOT / "workflow/wrappers/seqkit").as_uri()
    (tmp_path / "Snakefile").write_text(f'''
rule rmdup:
    input:
        fastx="in.fa",
    output:
        fastx="out/unique.fa.gz",
        dup_num="out/dup_num.txt",
    params:
        command="rmdup",
        extra="--by-seq --ignore-case --only-positive-strand",
    log:
        "logs/rmdup.log",
    threads: 1
    wrapper:
        "{wrapper}"
''')
    snakemake(tmp_path, "--cores", "1")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dup_num.txt", "unique.fa.gz"]
    assert (tmp_path / "out/dup_num.txt").read_text() == ""
    assert [r.id for r in read_fasta(tmp_path / "out/unique.fa.gz")] == ["a", "b", "c"]
    assert "0 duplicated records removed" in (tmp_path / "logs/rmdup.log").read_text()
