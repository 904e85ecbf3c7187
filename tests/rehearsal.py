"""The whole pipeline with tiny settings, for the SLURM rehearsal and the archive pipeline test:
a configfile that runs every rule type (data stages, pretraining with 2 DDP workers,
fine-tuning, every evaluation, the released fine-tuned weights, ViennaRNA, tables and report
figures) in a few minutes on 2 CPU cores. It is .test/config.yaml (the smoke run a user starts
with `snakemake --cores 2 --configfile .test/config.yaml`) with what only a test can add:

a subset of the bundled corpus sample; the downstream datasets and the released weights as the
stand-in published archives (tests/published_archives.py) served from 127.0.0.1, so the run also
downloads, checks and unpacks them; 2 DDP workers and GPU requests for the SLURM run.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from published_archives import make_datasets_tree, make_model_tree, pack

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
TEST_CONFIG = Path(__file__).resolve().parents[1] / ".test" / "config.yaml"
CORPUS_RECORDS = 1500
PRETRAIN_STEPS = 40


def write_corpus(folder: Path) -> tuple[Path, Path]:
    """The first CORPUS_RECORDS records of the bundled sample as corpus.fa.gz, and its md5 file."""
    folder.mkdir(parents=True, exist_ok=True)
    lines, records = [], 0
    with gzip.open(RESOURCES / "rnacentral" / "rnacentral_sample.fa.gz", "rt") as fh:
        for line in fh:
            if line.startswith(">"):
                records += 1
                if records > CORPUS_RECORDS:
                    break
            lines.append(line)
    fasta = folder / "corpus.fa.gz"
    with open(fasta, "wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write("".join(lines).encode())
    md5 = folder / "md5.txt"
    md5.write_text(f"{hashlib.md5(fasta.read_bytes()).hexdigest()}  corpus.fa.gz\n")
    return fasta, md5


def make_archives(folder: Path) -> dict[str, bytes]:
    """The stand-in datasets.tar.gz and model.tar.gz: file name -> bytes."""
    tree = folder / "tree"
    make_datasets_tree(tree, rows_per_file=60)
    make_model_tree(tree)
    return {name: pack(tree, folder / name, top).read_bytes()
            for name, top in (("datasets.tar.gz", "data"), ("model.tar.gz", "model"))}


def config(corpus: Path, corpus_md5: Path, urls: dict[str, str], archives: dict[str, bytes],
           *, slurm: dict | None = None, pretrain_gpus: int = 2, finetune_gpus: int = 1) -> dict:
    """The rehearsal configfile (a dict): .test/config.yaml's tiny settings, merged with the
    archives, the corpus subset, the worker counts and the released weights.

    urls: archive file name -> the URL it is served at; slurm: the site block (None = none).
    """
    from rnaret.settings.files import merge_config

    def member(archive: str, path: str) -> dict:
        return {"archive": archive, "path": path}

    rehearsal = {
        "corpus": {"url": str(corpus), "md5": str(corpus_md5), "release": "rehearsal subset"},
        "archives": {
            "paper_data": {"url": urls["datasets.tar.gz"],
                           "md5": hashlib.md5(archives["datasets.tar.gz"]).hexdigest()},
            "paper_models": {"url": urls["model.tar.gz"],
                             "md5": hashlib.md5(archives["model.tar.gz"]).hexdigest()},
        },
        "allow_cpu": True,  # the test cluster's GPUs are fake: the jobs run on the CPU
        "pretrain": {"gpus": pretrain_gpus, "threads": 2, "mem_mb": 2000, "runtime": 30},
        # the published layouts, as datasets.tar.gz ships them: RNAStrAlign's .bpseq files nested
        # by family, ArchiveII's .ct files, bpRNA's VL0 folder, the headerless miRNA .txt files,
        # GENCODE FASTA with CDS:a-b headers
        "datasets": {
            "structure": {
                "archiveii": {"train": member("paper_data", "data/RNAStrAlign"),
                              "valid": member("paper_data", "data/bpRNA/VL0"),
                              "test": member("paper_data", "data/archiveII")},
                "bprna": None,  # config.yaml's datasets are not part of this run
            },
            "interaction": {
                "deepmirtar_miraw": {"train": member("paper_data", "data/data_DeepMirTar_miRAW_noRepeats_3folds_train.txt"),
                                     "test": member("paper_data", "data/data_DeepMirTar_miRAW_noRepeats_3folds_test.txt")},
                # a test-only dataset, evaluated with the models fine-tuned on deepmirtar_miraw
                "indtest": {"test": member("paper_data", "data/data_DeepMirTar_IndTest_noRepeats_3folds.txt"),
                            "finetuned_on": "deepmirtar_miraw"},
                # config.yaml's sets, dropped: a file merges key by key into an entry of the same
                # name, so their row selections would stay
                "mirtar": None,
                "mirtar_indtest": None,
            },
            "coding": {
                "lnc_m": {"train": member("paper_data", "data/lncRNA_M/train.fa"),
                          "test": member("paper_data", "data/lncRNA_M/test.fa")},
                "mouse": None,
            },
            "sequence-classification": {"mncr": None},
        },
        "finetune": {
            "gpus": finetune_gpus, "threads": 2, "mem_mb": 2000, "runtime": 30,
            # each released file on the test sets of the data it was trained on
            "structure": {"models": ["rnaret-k1", "onehot"],
                          "released": {"RNAStrAlign_1mer": {
                              "file": member("paper_models", "model/ssp/RNAStrAlign_1mer.pth"),
                              "datasets": ["archiveii"]}}},
            "interaction": {"models": ["rnaret-k5"],
                            "released": {"MirTar_5mer": {
                                "file": member("paper_models", "model/rri/MirTar_5mer.pth"),
                                "datasets": ["deepmirtar_miraw", "indtest"]}}},
            "coding": {"models": ["rnaret-k5"],
                       "released": {"lnc_M_5mer": {"file": member("paper_models", "model/lnc/lnc_M_5mer.pth"),
                                                   "datasets": ["lnc_m"]}}},
        },
        "baselines": {"vienna": {"mem_mb": 1000, "runtime": 30}},
    }
    if slurm is not None:
        rehearsal["slurm"] = slurm
    out = merge_config(yaml.safe_load(TEST_CONFIG.read_text()), rehearsal)
    assert out["pretrain"]["overrides"]["max_steps"] == PRETRAIN_STEPS, ".test/config.yaml's steps changed"
    return out


def write_config(path: Path, values: dict) -> Path:
    """Write a configfile; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


# ------------------------------------------------------------------ running it

# a hung snakemake ignores SIGTERM: every run is under `timeout -s KILL`; generous, since the
# machine may be loaded (a run takes ~6 min on 2 busy cores)
SNAKEMAKE_TIMEOUT_S = 2400
# rules that run where Snakemake runs (localrules: no sbatch job)
LOCAL_RULES = {"all", "download_corpus", "download_dataset", "unpack_archive", "corpus_summary"}


@dataclasses.dataclass
class Run:
    """One run of the rehearsal: the repository copy it ran in, its exit code and log."""

    repo: Path
    returncode: int
    log: str

    def check(self) -> None:
        """Raise with the log's end when the run failed."""
        assert self.returncode == 0, self.log[-6000:]


def prepare(repo: Path, urls: dict[str, str], archives: dict[str, bytes], slurm: dict | None) -> Path:
    """Write the corpus subset into the copy ``repo`` and the configfile beside it; returns the
    configfile (its paths relative to the copy, so two copies run the same commands)."""
    corpus, md5 = write_corpus(repo / "rehearsal_data")
    values = config(corpus.relative_to(repo), md5.relative_to(repo), urls, archives, slurm=slurm)
    return write_config(repo / "rehearsal.yaml", values)


def run(repo: Path, configfile: Path, *extra: str, env: dict | None = None) -> Run:
    """`snakemake --configfile` in ``repo`` (``extra``: --cores or --profile ...), logged to
    repo/snakemake.log; waits for it (SNAKEMAKE_TIMEOUT_S at most)."""
    cmd = ["timeout", "-s", "KILL", str(SNAKEMAKE_TIMEOUT_S), sys.executable, "-m", "snakemake",
           "--configfile", str(configfile), *extra]
    with open(repo / "snakemake.log", "w") as out:
        proc = subprocess.run(cmd, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Run(repo=repo, returncode=proc.returncode, log=(repo / "snakemake.log").read_text())


def local_env() -> dict[str, str]:
    """This environment without SLURM's variables, Python printing every import of every
    process (PYTHONPROFILEIMPORTTIME) into the rules' logs, for the conda-environment check."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    return env


@pytest.fixture(scope="session")
def rehearsal_archives(tmp_path_factory) -> dict[str, bytes]:
    """The stand-in published archives (file name -> bytes)."""
    return make_archives(tmp_path_factory.mktemp("published"))


@pytest.fixture(scope="session")
def rehearsal_server(rehearsal_archives):
    """A loopback server of the archives for the whole session: every run sees the same URLs
    (they are recorded in the unpacked archives' manifests, which two runs must agree on)."""
    from loopback import Server

    with Server(rehearsal_archives) as server:
        yield server


def urls(server, archives: dict[str, bytes]) -> dict[str, str]:
    """Archive file name -> its URL on ``server``."""
    return {name: server.url(name) for name in archives}


@pytest.fixture(scope="session")
def local_rehearsal(root, rehearsal_archives, rehearsal_server, tmp_path_factory) -> Run:
    """The rehearsal run locally (`snakemake --cores 2`) in a copy of the repository, with the
    archives served from 127.0.0.1: the reference the SLURM run must equal, and the import
    record the environment check reads."""
    from slurm_cluster.cluster import copy_repository

    repo = copy_repository(root, tmp_path_factory.mktemp("local-run"))
    configfile = prepare(repo, urls(rehearsal_server, rehearsal_archives), rehearsal_archives, slurm=None)
    return run(repo, configfile, "--cores", "2", env=local_env())
