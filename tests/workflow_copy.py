"""Helpers of the tests that run the real Snakemake on a temporary copy of the workflow: the copy
itself, a small run of the whole pipeline on subsets of the bundled data, and the jobs a dry run
plans (read from the dry run's job listing)."""
from __future__ import annotations

import copy
import csv
import gzip
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "envs")


def make_workdir(path: Path) -> Path:
    """A copy of the workflow with resources/ and this rnaret/ linked in (read-only inputs; the
    rules and the Snakefile's settings resolver run this source tree)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, path / name)
    (path / "resources").symlink_to(ROOT / "resources")
    (path / "rnaret").symlink_to(ROOT / "rnaret")
    return path


def snakemake(workdir: Path, *args, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the workflow copy's Snakemake; AssertionError with its output when it fails and ``check``."""
    result = subprocess.run(SNAKEMAKE + ["--directory", str(workdir), "--snakefile", str(workdir / "Snakefile"),
                                         *map(str, args)],
                            cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(map(str, args))} failed:\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-6000:]}")
    return result


def merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in key by key (a ``--configfile`` over another)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def planned_jobs(workdir: Path, *args) -> set[tuple[str, str]]:
    """(rule, first output) of every job a dry run plans (the rule `all` aside), read from the
    dry run's job listing; an empty set when there is nothing to be done."""
    result = snakemake(workdir, "--dry-run", "--nolock", "--cores", "1", *args)
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        name = re.match(r"(?:local)?rule (\w+):", block.strip())
        outputs = re.search(r"^\s+output: (.+)$", block, flags=re.M)
        if name and outputs:
            jobs.add((name.group(1), outputs.group(1).split(", ")[0]))
    return jobs


# ---------------------------------------------------------------- a small whole-pipeline run

def _subset_tsv(src: Path, dst: Path, keep) -> None:
    with open(src, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = [row for row in reader]
        fields = reader.fieldnames
    with open(dst, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(keep(rows))


def _balanced(rows, per_split: dict) -> list:
    """The first n rows of each split, half of each label."""
    out = []
    for split, n in per_split.items():
        for label in ("0", "1"):
            out += [r for r in rows if r["split"] == split and r["label"] == label][: n // 2]
    return out


def _fasta_records(path: Path) -> list[tuple[str, str]]:
    records, header, seq = [], None, []
    with gzip.open(path, "rt") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith(">"):
                if header is not None:
                    records.append((header, "".join(seq)))
                header, seq = line[1:], []
            else:
                seq.append(line)
    if header is not None:
        records.append((header, "".join(seq)))
    return records


def _write_fasta_gz(path: Path, records) -> None:
    with gzip.open(path, "wt") as handle:
        for header, seq in records:
            handle.write(f">{header}\n{seq}\n")


def _coding_subset(records, n_each: int) -> list:
    coding = [r for r in records if "CDS:" in r[0] and len(r[1]) < 1500][:n_each]
    noncoding = [r for r in records if "CDS:" not in r[0] and len(r[1]) < 1500][:n_each]
    return coding + noncoding


def make_small_run(workdir: Path) -> dict:
    """Subsets of the bundled data in ``workdir/data`` and a configfile ``small.yaml`` that runs
    every stage of the pipeline in a few minutes on 2 cores (tiny pretraining, a few fine-tuning
    steps); returns the config of ``small.yaml``."""
    data = workdir / "data"
    data.mkdir()
    resources = ROOT / "resources"
    corpus = _fasta_records(resources / "rnacentral/rnacentral_sample.fa.gz")
    _write_fasta_gz(data / "corpus.fa.gz", [r for r in corpus if len(r[1]) <= 600][:300])
    lines = (resources / "structure/bprna_train.csv").read_text().splitlines(True)
    (data / "bprna_train.csv").write_text("".join(lines[:41]))
    lines = (resources / "structure/bprna_valid.csv").read_text().splitlines(True)
    (data / "bprna_valid.csv").write_text("".join(lines[:9]))
    lines = (resources / "structure/bprna_test.csv").read_text().splitlines(True)
    (data / "bprna_test.csv").write_text("".join(lines[:7]))
    _subset_tsv(resources / "mirna_target/mirtar_deepmirtar_miraw.tsv", data / "mirtar.tsv",
                lambda rows: _balanced(rows, {"train": 60, "valid": 20, "test": 20}))
    _subset_tsv(resources / "mirna_target/mirtar_deepmirtar_indtest.tsv", data / "indtest.tsv",
                lambda rows: [r for r in rows if r["label"] == "0"][:10] + [r for r in rows if r["label"] == "1"][:10])
    _write_fasta_gz(data / "mouse_train.fa.gz", _coding_subset(_fasta_records(resources / "mrna_lncrna/mouse_train.fa.gz"), 15))
    _write_fasta_gz(data / "mouse_test.fa.gz", _coding_subset(_fasta_records(resources / "mrna_lncrna/mouse_test.fa.gz"), 5))
    # ncRNA families (a generic task): 4 rows of each class in train, 2 in valid and test
    _subset_tsv(resources / "ncrna/mncr_families.tsv", data / "mncr.tsv",
                lambda rows: [r for s, n in (("train", 4), ("valid", 2), ("test", 2))
                              for label in sorted({r["label"] for r in rows})
                              for r in [r for r in rows if r["split"] == s and r["label"] == label][:n]])
    quick = {"epochs": 1, "max_steps": 2, "valid_max_examples": 8, "train_samples_per_epoch": 16,
             "evals_per_epoch": 1}
    config = {
        "corpus": {"url": "data/corpus.fa.gz", "md5": "", "release": "small test corpus"},
        "datasets": {
            "structure": {"bprna": {"train": "data/bprna_train.csv", "valid": "data/bprna_valid.csv",
                                    "test": "data/bprna_test.csv"}},
            "interaction": {"mirtar": {s: {"path": "data/mirtar.tsv", "split": s} for s in ("train", "valid", "test")},
                            "mirtar_indtest": {"test": "data/indtest.tsv", "finetuned_on": "mirtar"}},
            "coding": {"mouse": {"train": "data/mouse_train.fa.gz", "test": "data/mouse_test.fa.gz"}},
            "sequence-classification": {"mncr": {s: {"path": "data/mncr.tsv", "split": s}
                                                 for s in ("train", "valid", "test")}},
        },
        "shards": {"k": [1, 5], "tokens_per_shard": 20000, "run_tokens": 10000},
        "pretrain": {"preset": "tiny", "models": ["rnaret-k1", "rnaret-k5"],
                     "overrides": {"max_steps": 4, "eval_every": 2, "checkpoint_every": 2}},
        "finetune": {
            "interaction": {"models": ["rnaret-k5"], "settings": dict(quick)},
            "coding": {"models": ["rnaret-k5"], "settings": {**quick, "train_crop": 256, "max_tokens": 2048}},
            "structure": {"models": ["rnaret-k1"], "settings": {**quick, "train_crop": 64}},
            "sequence-classification": {"models": ["rnaret-k5"], "settings": dict(quick)},
        },
        "baselines": {"vienna": {"threads": 1}},
        "report": {"length_scaling": {"models": ["rnaret-chunkwise"], "presets": ["tiny"], "lengths": [32],
                                      "repeats": 1, "threads": 1}},
    }
    write_yaml(workdir / "small.yaml", config)
    return config
