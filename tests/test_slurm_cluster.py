"""The pipeline on a real single-node SLURM cluster (Debian's slurmctld/slurmd + munge), brought
up by tests/slurm_cluster/start.sh for the test session and always stopped again.

`snakemake --profile slurm` runs the default pipeline's data stage and a pretraining with the
repository's own profile (only the site values the test cluster differs in are set, through the
profile's RNARET_SLURM_* variables); the pretraining job is scancelled once it has a checkpoint
and must resume from it; the results must equal those of a local run.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from slurm_cluster.cluster import SlurmCluster, SlurmJob, copy_repository, missing_binaries

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
_missing = missing_binaries()
if _missing:
    pytestmark.append(pytest.mark.skip(
        reason=f"SLURM test cluster: {', '.join(_missing)} not installed "
        "(install.sh installs slurmctld slurmd slurm-client munge)"))
elif os.geteuid() != 0:
    pytestmark.append(pytest.mark.skip(reason="SLURM test cluster: slurmd and munged must be started as root"))

# a hung snakemake ignores SIGTERM: every run is under `timeout -s KILL`
SNAKEMAKE_TIMEOUT_S = 300
# the plugin's first status check, shortened for the test: slurmctld's MinJobAge (300 s)
# stays above 3 x this, so the squeue status check is kept
INIT_SECONDS = 2
# What the runs build, sized for this file's budget (~4 min on 2 cores; each job once through
# SLURM and once locally): the default pipeline's data stage (download -> normalize -> dedupe ->
# leakage -> filter -> shards per k -> summary; `corpus_summary` needs all of it) and one
# pretraining (tiny preset, 150 steps, a checkpoint every 5) on one (fake) GPU, which the test
# cancels with scancel once it has written a checkpoint, as a preemption would.
TARGETS = ("corpus_summary", "results/pretrain/rnaret-k1/checkpoint")
PRETRAIN_CONFIG = """\
pretrain:
  preset: tiny
  models: [rnaret-k1]
  gpus: 1
  threads: 1
  overrides: {max_steps: 150, checkpoint_every: 5, eval_every: 1000}
"""
PRETRAIN_RUN = Path("results/pretrain/rnaret-k1")
PRETRAIN_STEPS = 150
# values that measure speed, not what was computed: TSV columns and keys of saved mappings
TIMING_KEYS = {"tokens_per_s"}


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


@pytest.fixture(scope="session")
def site_env(slurm_cluster):
    """Environment for `snakemake --profile slurm` on the test cluster: its site values."""
    node = slurm_cluster.node()
    env = dict(slurm_cluster.env)
    env.update({
        "RNARET_SLURM_PARTITION": "debug",
        "RNARET_SLURM_GPU_PARTITION": "debug",
        "RNARET_SLURM_GPU_MODEL": "fake",
        "RNARET_SLURM_MAX_THREADS": node["CPUTot"],
    })
    env.pop("RNARET_SLURM_ACCOUNT", None)
    return env


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
    config = slurm_cluster.run("scontrol", "show", "config")
    min_job_age = int(re.search(r"^MinJobAge\s*=\s*(\d+)", config, flags=re.M).group(1))
    # squeue must still show a finished job at the plugin's longest poll interval (180 s)
    # and at 3 x the profile's first-check delay, or the plugin falls back to sacct
    profile_init = int(re.search(r"^slurm-init-seconds-before-status-checks:\s*(\d+)",
                                 (Path(__file__).parents[1] / "slurm" / "config.yaml").read_text(),
                                 flags=re.M).group(1))
    assert min_job_age >= max(180, 3 * profile_init)


def test_gpu_job_starts_one_worker_per_allocated_gpu(slurm_cluster, tmp_path):
    """What the plugin does for a rule with gpu=2: sbatch --gpus, srun -n1 --gpus inside, and
    the rule's `rnaret launch --nproc auto` starts a torchrun worker per GPU of the step."""
    output = tmp_path / "ddp.json"
    inner = f"{sys.executable} -m rnaret launch --nproc auto -- ddp-check --output {output} --device cpu"
    job_id = slurm_cluster.run(
        "sbatch", "--parsable", "--gpus=fake:2", "--cpus-per-task=2", "--mem=2000",
        "--comment=rule_ddp_check", f"--output={tmp_path / 'job.log'}", f"-D{tmp_path}",
        f"--wrap=srun -n1 --cpus-per-task=2 --gpus=2 --nodes=1 {inner}",
    ).strip()
    job = slurm_cluster.wait_until_finished(job_id, timeout=150)
    log = (tmp_path / "job.log").read_text()
    assert job.state == "COMPLETED", log[-3000:]
    assert job.rule == "ddp_check"
    assert "rnaret launch: 2 worker(s)" in log
    result = json.loads(output.read_text())
    assert (result["world_size"], result["backend"], result["sum"]) == (2, "gloo", 3.0)
    # each worker sees the step's two (fake) GPUs, as SLURM exports them
    assert [r["cuda_visible_devices"] for r in result["ranks"]] == ["0,1", "0,1"]
    # more GPUs than the node has are refused at submission, so the fake GRES is real to SLURM
    refused = subprocess.run(["sbatch", "--gpus=3", "--wrap=true"], env=slurm_cluster.env,
                             capture_output=True, text=True)
    assert refused.returncode != 0
    assert "Requested node configuration is not available" in refused.stderr


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


def _content_digest(path: Path) -> str:
    """What a result file holds, as a digest, leaving out what may differ between two identical
    runs without a different result: values measuring speed (TIMING_KEYS, in TSV columns,
    JSON and the pickled training state), and the order safetensors happens to write its
    metadata in (a hash map). Everything else, gzip files included, is compared byte for byte."""
    if path.suffix == ".tsv":
        rows = [line.split("\t") for line in path.read_text().splitlines()]
        keep = [i for i, name in enumerate(rows[0]) if name not in TIMING_KEYS] if rows else []
        return _digest([[row[i] for i in keep if i < len(row)] for row in rows])
    if path.suffix == ".json":
        return _digest(_without_timing(json.loads(path.read_text())))
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            return _digest([fh.metadata() or {}, {name: fh.get_tensor(name) for name in fh.keys()}])
    if path.suffix == ".pt":
        import torch

        return _digest(_without_timing(torch.load(path, map_location="cpu", weights_only=False)))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _result_files(repo: Path) -> dict[str, str]:
    return {str(p.relative_to(repo)): _content_digest(p)
            for p in sorted((repo / "results").rglob("*")) if p.is_file()}


@dataclass
class PipelineRuns:
    """The SLURM run (with its pretraining cancelled once) and the local reference run."""

    slurm_repo: Path
    local_repo: Path
    slurm_rc: int
    local_rc: int
    slurm_log: str
    local_log: str
    slurm_seconds: float
    cancelled: SlurmJob | None
    cancelled_state: str
    cancel_error: str


@pytest.fixture(scope="module")
def pipeline_runs(slurm_cluster, site_env, root, tmp_path_factory) -> PipelineRuns:
    """Run TARGETS with `snakemake --profile slurm` on the test cluster and, meanwhile, with
    `snakemake --cores 2` locally, each in its own copy of the repository. During the SLURM run
    the pretraining job is scancelled as soon as it has written a checkpoint; the profile's
    retries resubmit it."""
    slurm_repo = copy_repository(root, tmp_path_factory.mktemp("slurm-run"))
    local_repo = copy_repository(root, tmp_path_factory.mktemp("local-run"))
    configfile = tmp_path_factory.mktemp("config") / "pretrain_test.yaml"
    configfile.write_text(PRETRAIN_CONFIG)
    snakemake = ["timeout", "-s", "KILL", str(SNAKEMAKE_TIMEOUT_S), sys.executable, "-m", "snakemake",
                 *TARGETS, "--configfile", str(configfile)]
    local_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}

    with open(local_repo / "snakemake.log", "w") as local_out, open(slurm_repo / "snakemake.log", "w") as slurm_out:
        local = subprocess.Popen(snakemake + ["--cores", "2"], cwd=local_repo, env=local_env,
                                 stdout=local_out, stderr=subprocess.STDOUT)
        started = time.monotonic()
        slurm = subprocess.Popen(
            snakemake + ["--profile", "slurm", "--slurm-init-seconds-before-status-checks", str(INIT_SECONDS),
                         "--slurm-keep-successful-logs"],
            cwd=slurm_repo, env=site_env, stdout=slurm_out, stderr=subprocess.STDOUT,
        )
        cancelled, cancelled_state, cancel_error = None, "", ""
        try:
            cancelled, cancelled_state = slurm_cluster.cancel_rule_when_running(
                "pretrain", timeout=SNAKEMAKE_TIMEOUT_S - 60,
                ready=lambda: any((slurm_repo / PRETRAIN_RUN / "train").glob("step-*")),
            )
        except (TimeoutError, RuntimeError) as exc:
            cancel_error = str(exc)
        slurm_rc = slurm.wait(timeout=SNAKEMAKE_TIMEOUT_S + 30)
        slurm_seconds = time.monotonic() - started
        local_rc = local.wait(timeout=SNAKEMAKE_TIMEOUT_S + 30)
    return PipelineRuns(
        slurm_repo=slurm_repo, local_repo=local_repo, slurm_rc=slurm_rc, local_rc=local_rc,
        slurm_log=(slurm_repo / "snakemake.log").read_text(), local_log=(local_repo / "snakemake.log").read_text(),
        slurm_seconds=slurm_seconds, cancelled=cancelled, cancelled_state=cancelled_state, cancel_error=cancel_error,
    )


def _succeeded(runs: PipelineRuns) -> None:
    assert runs.local_rc == 0, runs.local_log[-5000:]
    assert runs.slurm_rc == 0, runs.slurm_log[-5000:]


def test_every_job_went_through_sbatch(pipeline_runs, slurm_cluster):
    runs = pipeline_runs
    _succeeded(runs)
    # every job of the local run was an sbatch job of the same rule (the pretraining twice: the
    # cancelled attempt and its retry), which squeue still lists
    local_jobs = re.findall(r"^localrule (\w+):$", runs.local_log, flags=re.M)
    assert "pretrain" in local_jobs and len(local_jobs) > 2, runs.local_log[-3000:]
    submitted = dict(re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", runs.slurm_log))
    jobs = {job.job_id: job for job in slurm_cluster.jobs() if job.job_id in submitted}
    assert sorted(jobs) == sorted(submitted), "a submitted job is unknown to squeue"
    retried = ["pretrain"] if runs.cancelled else []
    assert sorted(job.rule for job in jobs.values()) == sorted(local_jobs + retried)
    for job_id, job in jobs.items():
        expected = "CANCELLED" if runs.cancelled and job_id == runs.cancelled.job_id else "COMPLETED"
        assert job.state == expected, job
        assert job.partition == "debug"
        # the plugin's SLURM log of the job, kept: the job's own Snakemake ran the rule
        assert f"rule {job.rule}:" in Path(submitted[job_id]).read_text()
    # the pretraining asked for its GPU: `--gpus=fake:1` reached srun inside the job
    pretrain_logs = [Path(submitted[i]).read_text() for i, job in jobs.items() if job.rule == "pretrain"]
    assert pretrain_logs and all("gpu=1" in log and "gpu_model=fake" in log for log in pretrain_logs)


def test_cancelled_pretraining_resumed_from_its_checkpoint(pipeline_runs, slurm_cluster):
    runs = pipeline_runs
    assert not runs.cancel_error, runs.cancel_error
    assert runs.cancelled_state == "CANCELLED"
    _succeeded(runs)
    # the profile's retries submitted it again, as a new job
    pretrain_jobs = [job for job in slurm_cluster.jobs() if job.rule == "pretrain"]
    assert [job.state for job in pretrain_jobs if job.job_id != runs.cancelled.job_id] == ["COMPLETED"]
    # the rerun continued from the newest checkpoint, not from step 0
    log = (runs.slurm_repo / "logs" / "pretrain" / "rnaret-k1.log").read_text()
    resumed = re.search(r"resuming from \S+ \(step (\d+)\)", log)
    assert resumed, log[-3000:]
    assert 5 <= int(resumed.group(1)) < PRETRAIN_STEPS
    summary = json.loads((runs.slurm_repo / PRETRAIN_RUN / "summary.json").read_text())
    assert summary["steps"] == PRETRAIN_STEPS


def test_results_equal_those_of_a_local_run(pipeline_runs):
    """The data stage byte for byte, and a pretraining cancelled and resumed on SLURM against
    one run without interruption: the same weights, optimizer and RNG state, losses
    (``_content_digest`` says what it leaves out)."""
    runs = pipeline_runs
    _succeeded(runs)
    slurm_files, local_files = _result_files(runs.slurm_repo), _result_files(runs.local_repo)
    assert sorted(slurm_files) == sorted(local_files)
    assert any(name.startswith(str(PRETRAIN_RUN / "checkpoint")) for name in local_files)
    differing = sorted(name for name in local_files if slurm_files[name] != local_files[name])
    hints = [
        f"{name}: same data, different gzip header (time stamp / temporary file name): "
        "write it with gzip.GzipFile(filename='', mtime=0)"
        for name in differing
        if name.endswith(".gz") and gzip.decompress((runs.slurm_repo / name).read_bytes())
        == gzip.decompress((runs.local_repo / name).read_bytes())
    ]
    assert not differing, f"results differ between the SLURM and the local run: {differing}; {hints}"
    print(f"SLURM run: {runs.slurm_seconds:.0f} s")
