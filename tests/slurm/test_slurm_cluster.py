"""The whole pipeline on a real single-node SLURM cluster (Debian's slurmctld/slurmd + munge),
brought up by tests/slurm_cluster/start.sh for the test session and always stopped again.

`snakemake --profile slurm` runs the rehearsal (tests/rehearsal.py: every rule type with tiny
settings, pretraining with 2 DDP workers on the node's two fake GPUs, the stand-in published
archives downloaded from 127.0.0.1) with the repository's own profile; the only site values are
the rehearsal config's `slurm:` block (partitions cpu and gpu, GPU model fake). One pretraining
job is scancelled once it has a checkpoint, as a preemption would, and must resume from it.
Then the same run goes locally, after the SLURM run (never beside it), and the results must be
equal. squeue keeps finished jobs for 2 hours (MinJobAge), and the plugin's own record (the
Snakemake log's submissions, the kept SLURM logs) is checked beside it.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from rehearsal import LOCAL_RULES, PRETRAIN_STEPS, Run, prepare, run, urls
from slurm_cluster.cluster import SlurmCluster, SlurmJob, copy_repository, missing_binaries, submitted_jobs

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
if os.geteuid() != 0:
    # first: an ordinary user's PATH lacks /usr/sbin, where slurmctld lives
    pytestmark.append(pytest.mark.skip(reason="SLURM test cluster: slurmd and munged must be started as root"))
elif missing_binaries():
    pytestmark.append(pytest.mark.skip(
        reason=f"SLURM test cluster: {', '.join(missing_binaries())} not installed "
        "(install.sh installs slurmctld slurmd slurm-client munge)"))

# the plugin's first status check, shortened for the test (MinJobAge 7200 s stays above 3 x it)
INIT_SECONDS = 2
SITE = {"cpu_partition": "cpu", "gpu_partition": "gpu", "gpu_model": "fake"}
# rules whose jobs ask for GPUs in the rehearsal (pretrain.gpus 2, finetune.gpus 1; the analyses
# that run a model take the fine-tuning stage's resources)
GPU_RULES = {"pretrain": 2, "finetune": 1, "evaluate_classifier": 1, "evaluate_structure": 1, "analyses_pca": 1,
             "analyses_cls_retention": 1, "analyses_transcripts": 1}
CANCELLED_MODEL = "rnaret-k1"
# values that measure speed, not what was computed: TSV columns and keys of saved mappings
TIMING_KEYS = {"tokens_per_s", "seconds"}
# measurements of time and memory (the length-scaling benchmark): compared by their shape only
MEASUREMENTS = ("results/tables/length_scaling.",)


def _alive(pid: int, name: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except OSError:
        return False


@pytest.fixture(scope="session")
def slurm_cluster():
    """The running test cluster (session-wide: one bring-up, ~2 s, for every SLURM test).

    Teardown stops exactly the daemons start.sh recorded and checks they are gone.
    """
    cluster = SlurmCluster.start()
    pids = cluster.pids()
    try:
        yield cluster
    finally:
        cluster.stop(clean=True)
        left = [f"{name} ({pid})" for name, pid in pids.items() if _alive(pid, name)]
        assert not left, f"stop.sh left running: {left}"
        link = Path("/etc/slurm/slurm.conf")
        assert not (link.is_symlink() and os.readlink(link) == str(cluster.state / "slurm.conf")), \
            "stop.sh left the /etc/slurm/slurm.conf link"


def test_cluster_node_matches_the_machine_and_has_two_fake_gpus(slurm_cluster):
    node = slurm_cluster.node()
    detected = dict(
        token.split("=", 1)
        for token in subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True)
        .stdout.split() if "=" in token
    )
    assert node["State"] == "IDLE"
    assert node["CPUTot"] == detected["CPUs"]
    assert node["RealMemory"] == detected["RealMemory"]
    assert node["Gres"] == "gpu:fake:2"
    assert sorted(node["Partitions"].split(",")) == ["cpu", "gpu"]
    config = slurm_cluster.run("scontrol", "show", "config")
    min_job_age = int(re.search(r"^MinJobAge\s*=\s*(\d+)", config, flags=re.M).group(1))
    # squeue must still show a finished job at the plugin's longest poll interval (180 s), at
    # 3 x the profile's first-check delay (or the plugin falls back to sacct), and when the
    # tests look at a run's jobs after the run and the local run that follows it
    profile_init = int(re.search(r"^slurm-init-seconds-before-status-checks:\s*(\d+)",
                                 (Path(__file__).parents[2] / "slurm" / "config.yaml").read_text(),
                                 flags=re.M).group(1))
    assert min_job_age >= max(3600, 3 * profile_init)


def test_gpu_job_starts_one_worker_per_allocated_gpu(slurm_cluster, tmp_path):
    """What the plugin does for a rule with gpu=2: sbatch --gpus, srun -n1 --gpus inside, and
    the rule's `rnaret launch --nproc auto` starts a torchrun worker per GPU of the step."""
    output = tmp_path / "ddp.json"
    inner = f"{sys.executable} -m rnaret launch --nproc auto -- ddp-check --output {output} --device cpu"
    job_id = slurm_cluster.run(
        "sbatch", "--parsable", "-p", "gpu", "--gpus=fake:2", "--cpus-per-task=2", "--mem=2000",
        "--comment=rule_ddp_check", f"--output={tmp_path / 'job.log'}", f"-D{tmp_path}",
        f"--wrap=srun -n1 --cpus-per-task=2 --gpus=2 --nodes=1 {inner}",
    ).strip()
    job = slurm_cluster.wait_until_finished(job_id, timeout=300)
    log = (tmp_path / "job.log").read_text()
    assert job.state == "COMPLETED", log[-3000:]
    assert job.rule == "ddp_check"
    assert "rnaret launch: 2 worker(s)" in log
    result = json.loads(output.read_text())
    assert (result["world_size"], result["backend"], result["sum"]) == (2, "gloo", 3.0)
    # each worker sees the step's two (fake) GPUs, as SLURM exports them
    assert [r["cuda_visible_devices"] for r in result["ranks"]] == ["0,1", "0,1"]
    # more GPUs than the node has never run, so the fake GRES is real to SLURM: sbatch refuses
    # the job, or (the node belonging to two partitions) accepts it and fails it unscheduled
    refused = subprocess.run(["sbatch", "--parsable", "-p", "gpu", "--gpus=3", "--wrap=true"],
                             env=slurm_cluster.env, capture_output=True, text=True)
    if refused.returncode != 0:
        assert "Requested node configuration is not available" in refused.stderr
    else:
        never = slurm_cluster.wait_until_finished(refused.stdout.strip(), timeout=120)
        details = slurm_cluster.job_details(never.job_id)
        assert (never.state, details["Reason"], details["NodeList"]) == ("FAILED", "BadConstraints", ""), details


# ------------------------------------------------------------------ the rehearsal


def _without_timing(value):
    """``value`` (a loaded JSON/pickle structure) with TIMING_KEYS removed from every mapping."""
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_timing(v) for v in value)
    return value


def _digest(value) -> str:
    """A digest of a loaded structure: mappings in key order, tensors by dtype, shape and bytes."""
    import torch

    def canonical(v):
        if isinstance(v, dict):
            return ["dict", sorted(([repr(k), canonical(x)] for k, x in v.items()), key=lambda kv: kv[0])]
        if isinstance(v, (list, tuple)):
            return [type(v).__name__, [canonical(x) for x in v]]
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            return ["tensor", str(t.dtype), list(t.shape), hashlib.sha256(raw).hexdigest()]
        return [type(v).__name__, repr(v)]

    return hashlib.sha256(json.dumps(canonical(value)).encode()).hexdigest()


def _content_digest(path: Path, name: str) -> str:
    """What a result file holds, as a digest, leaving out what may differ between two identical
    runs without a different result: values measuring speed (TIMING_KEYS, in TSV columns,
    JSON and the pickled training state), the order safetensors happens to write its metadata
    in (a hash map), and the length-scaling measurements (their rows and columns only).
    Everything else, gzip files included, is compared byte for byte."""
    if name.startswith(MEASUREMENTS):
        if path.suffix == ".tsv":
            rows = [line.split("\t") for line in path.read_text().splitlines()]
            return _digest([rows[0], [row[:2] for row in rows[1:]]]) if rows else _digest([])
        return "measurement"
    if path.suffix == ".tsv":
        rows = [line.split("\t") for line in path.read_text().splitlines()]
        keep = [i for i, col in enumerate(rows[0]) if col not in TIMING_KEYS] if rows else []
        return _digest([[row[i] for i in keep if i < len(row)] for row in rows])
    if path.suffix == ".json":
        return _digest(_without_timing(json.loads(path.read_text())))
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            return _digest([fh.metadata() or {}, {key: fh.get_tensor(key) for key in fh.keys()}])
    if path.suffix == ".pt":
        import torch

        return _digest(_without_timing(torch.load(path, map_location="cpu", weights_only=False)))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _result_files(repo: Path) -> dict[str, str]:
    files = {}
    for path in sorted((repo / "results").rglob("*")):
        if path.is_file():
            name = str(path.relative_to(repo))
            files[name] = _content_digest(path, name)
    return files


@dataclass
class Rehearsal:
    """The SLURM run (with one pretraining cancelled once), and the local reference run."""

    slurm: Run
    local: Run
    cancelled: SlurmJob | None
    cancelled_state: str
    cancel_error: str


@pytest.fixture(scope="module")
def rehearsal(slurm_cluster, root, rehearsal_archives, rehearsal_server, local_rehearsal,
              tmp_path_factory) -> Rehearsal:
    """The rehearsal through `snakemake --profile slurm` in a copy of the repository; its
    pretraining of CANCELLED_MODEL is scancelled as soon as it has written a checkpoint, and
    the profile's retries resubmit it. The local run (``local_rehearsal``) runs before or after
    it, never beside it."""
    local_rehearsal.check()
    repo = copy_repository(root, tmp_path_factory.mktemp("slurm-run"))
    configfile = prepare(repo, urls(rehearsal_server, rehearsal_archives), rehearsal_archives, slurm=SITE)
    cancelled, cancelled_state, cancel_error = None, "", ""
    train = repo / "results" / "pretrain" / CANCELLED_MODEL / "train"
    log = open(repo / "snakemake.log", "w")
    cmd = ["timeout", "-s", "KILL", "2400", sys.executable, "-m", "snakemake", "--configfile", str(configfile),
           "--profile", "slurm", "--slurm-init-seconds-before-status-checks", str(INIT_SECONDS),
           "--slurm-keep-successful-logs"]
    proc = subprocess.Popen(cmd, cwd=repo, env=slurm_cluster.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        cancelled, cancelled_state = slurm_cluster.cancel_rule_when_running(
            "pretrain", timeout=1800, wildcards=CANCELLED_MODEL, ready=lambda: any(train.glob("step-*")))
    except (TimeoutError, RuntimeError) as exc:
        cancel_error = str(exc)
    returncode = proc.wait(timeout=2500)
    log.close()
    slurm = Run(repo=repo, returncode=returncode, log=(repo / "snakemake.log").read_text())
    return Rehearsal(slurm=slurm, local=local_rehearsal, cancelled=cancelled,
                     cancelled_state=cancelled_state, cancel_error=cancel_error)


def test_every_job_went_through_sbatch_to_the_partition_its_gpus_ask_for(rehearsal, slurm_cluster):
    runs = rehearsal
    runs.local.check()
    runs.slurm.check()
    # every job of the local run is an sbatch job of the same rule (the cancelled pretraining
    # twice: the cancelled attempt and its retry), except the localrules
    local_jobs = re.findall(r"^localrule (\w+):$", runs.local.log, flags=re.M)
    assert {"pretrain", "finetune", "evaluate_structure", "evaluate_classifier", "vienna", "tables",
            "unpack_archive", "shard_tokens", "length_scaling"} <= set(local_jobs), sorted(set(local_jobs))
    # (the SLURM log also quotes failed jobs' logs, whose own Snakemake ran a rule as a
    # localrule inside the job: only the LOCAL_RULES count here)
    ran_here = [rule for rule in re.findall(r"^localrule (\w+):$", runs.slurm.log, flags=re.M) if rule in LOCAL_RULES]
    assert sorted(ran_here) == sorted(job for job in local_jobs if job in LOCAL_RULES)
    submitted = submitted_jobs(runs.slurm.log)
    jobs = {job.job_id: job for job in slurm_cluster.jobs() if job.job_id in submitted}
    assert sorted(jobs) == sorted(submitted), "a submitted job is unknown to squeue"
    retried = ["pretrain"] if runs.cancelled else []
    assert sorted(job.rule for job in jobs.values()) == \
        sorted([job for job in local_jobs if job not in LOCAL_RULES] + retried)
    for job_id, job in jobs.items():
        expected = "CANCELLED" if runs.cancelled and job_id == runs.cancelled.job_id else "COMPLETED"
        assert job.state == expected, job
        details = slurm_cluster.job_details(job_id)
        if job.rule in GPU_RULES:
            assert job.partition == "gpu", job
            assert details.get("TresPerJob") == f"gres:gpu:fake:{GPU_RULES[job.rule]}", (job, details)
        else:
            assert job.partition == "cpu", job
            assert "gpu" not in details.get("TresPerJob", "") + details.get("TresPerNode", ""), (job, details)
        # the plugin's own record: the job's SLURM log, kept; the job's Snakemake ran the rule
        assert f"rule {job.rule}:" in submitted[job_id].read_text()


def test_pretraining_ran_two_ddp_workers(rehearsal):
    rehearsal.slurm.check()
    for run_ in (rehearsal.slurm, rehearsal.local):
        for model in ("rnaret-k1", "rnaret-k5"):
            log = (run_.repo / "logs" / "pretrain" / f"{model}.log").read_text()
            assert "rnaret launch: 2 worker(s)" in log, log[-2000:]


def test_cancelled_pretraining_resumed_from_its_checkpoint(rehearsal, slurm_cluster):
    runs = rehearsal
    assert not runs.cancel_error, runs.cancel_error
    assert runs.cancelled_state == "CANCELLED"
    runs.slurm.check()
    # the profile's retries submitted it again, as a new job
    again = [job for job in slurm_cluster.jobs() if job.rule == "pretrain" and job.job_id != runs.cancelled.job_id
             and job.job_id in submitted_jobs(runs.slurm.log)]
    assert sorted(job.state for job in again) == ["COMPLETED", "COMPLETED"]
    # the rerun continued from the newest checkpoint, not from step 0
    log = (runs.slurm.repo / "logs" / "pretrain" / f"{CANCELLED_MODEL}.log").read_text()
    resumed = re.search(r"resuming from \S+ \(step (\d+)\)", log)
    assert resumed, log[-3000:]
    assert 5 <= int(resumed.group(1)) < PRETRAIN_STEPS
    summary = json.loads((runs.slurm.repo / "results" / "pretrain" / CANCELLED_MODEL / "summary.json").read_text())
    assert summary["steps"] == PRETRAIN_STEPS


def test_results_equal_those_of_a_local_run(rehearsal):
    """Every result byte for byte (``_content_digest`` says what it leaves out): the data
    stages, a 2-worker pretraining cancelled and resumed on SLURM against one without
    interruption (weights, optimizer and RNG state, losses), fine-tuning, every evaluation."""
    runs = rehearsal
    runs.slurm.check()
    slurm_files, local_files = _result_files(runs.slurm.repo), _result_files(runs.local.repo)
    assert sorted(slurm_files) == sorted(local_files)
    assert any(name.startswith(f"results/pretrain/{CANCELLED_MODEL}/checkpoint") for name in local_files)
    differing = sorted(name for name in local_files if slurm_files[name] != local_files[name])
    hints = [
        f"{name}: same data, different gzip header (time stamp / temporary file name): "
        "write it with gzip.GzipFile(filename='', mtime=0)"
        for name in differing
        if name.endswith(".gz") and gzip.decompress((runs.slurm.repo / name).read_bytes())
        == gzip.decompress((runs.local.repo / name).read_bytes())
    ]
    assert not differing, f"results differ between the SLURM and the local run: {differing}; {hints}"


def test_the_archives_were_downloaded_checked_unpacked_and_evaluated(rehearsal, rehearsal_archives):
    rehearsal.slurm.check()
    repo = rehearsal.slurm.repo
    for name, file in (("paper_data", "datasets.tar.gz"), ("paper_models", "model.tar.gz")):
        manifest = json.loads((repo / "results" / "archives" / name / ".rnaret-archive.json").read_text())
        assert manifest["md5_checked"] and manifest["md5"] == hashlib.md5(rehearsal_archives[file]).hexdigest()
        assert manifest["source"].startswith("http://127.0.0.1:")
    for evaluation in ("structure/archiveii/released-RNAStrAlign_1mer",
                       "interaction/deepmirtar_miraw/released-MirTar_5mer",
                       "interaction/indtest/released-MirTar_5mer", "coding/lnc_m/released-lnc_M_5mer",
                       "structure/archiveii/vienna"):
        metrics = (repo / "results" / evaluation / "metrics.tsv").read_text().splitlines()
        assert metrics[0] == "metric\tvalue" and len(metrics) > 2, evaluation
