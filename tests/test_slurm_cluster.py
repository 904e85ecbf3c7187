"""The pipeline on a real single-node SLURM cluster (Debian's slurmctld/slurmd + munge), brought
up by tests/slurm_cluster/start.sh for the test session and always stopped again.

`snakemake --profile slurm` runs the default target with the repository's own profile; only the
site values the test cluster differs in are set, through the profile's RNARET_SLURM_* variables.
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
from pathlib import Path

import pytest
from slurm_cluster.cluster import SlurmCluster, copy_repository, missing_binaries

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
# The default pipeline's data stage (download -> normalize -> dedupe -> leakage -> filter ->
# shards per k -> summary: 9 jobs; `corpus_summary` needs every other one): what fits this
# file's budget (~4 min on 2 cores, each job once through SLURM and once locally). The later
# stages' rules go through the same profile and plugin; pretraining gets its own test (scancel a
# running job, check that the retry resumed from the checkpoint).
TARGET_RULE = "corpus_summary"
# the plugin's first status check, shortened for the test: slurmctld's MinJobAge (300 s)
# stays above 3 x this, so the squeue status check is kept
INIT_SECONDS = 2


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
        assert not Path("/etc/slurm/slurm.conf").is_symlink() or cluster.state.name not in os.readlink(
            "/etc/slurm/slurm.conf"), "stop.sh left the /etc/slurm/slurm.conf link"


@pytest.fixture(scope="session")
def site_env(slurm_cluster):
    """Environment for `snakemake --profile slurm` on the test cluster: its site values."""
    node = slurm_cluster.node()
    env = dict(slurm_cluster.env)
    env.update({
        "RNARET_SLURM_PARTITION": "debug",
        "RNARET_SLURM_GPU_PARTITION": "debug",
        "RNARET_SLURM_GPU_MODEL": "fake",
        "RNARET_SLURM_CPUS_PER_GPU": "1",
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
        "sbatch", "--parsable", "--gpus=fake:2", "--cpus-per-gpu=1", "--mem=2000",
        "--comment=rule_ddp_check", f"--output={tmp_path / 'job.log'}", f"-D{tmp_path}",
        f"--wrap=srun -n1 --gpus=2 --cpus-per-gpu=1 {inner}",
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _result_files(repo: Path) -> dict[str, str]:
    return {str(p.relative_to(repo)): _sha256(p) for p in sorted((repo / "results").rglob("*")) if p.is_file()}


def test_pipeline_data_stage_through_slurm_equals_a_local_run(slurm_cluster, site_env, root, tmp_path_factory):
    slurm_repo = copy_repository(root, tmp_path_factory.mktemp("slurm-run"))
    local_repo = copy_repository(root, tmp_path_factory.mktemp("local-run"))
    local_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    snakemake = ["timeout", "-s", "KILL", str(SNAKEMAKE_TIMEOUT_S), sys.executable, "-m", "snakemake", TARGET_RULE]

    # the local reference run meanwhile (the SLURM run mostly waits for its polls)
    with open(local_repo / "snakemake.log", "w") as local_log:
        local = subprocess.Popen(snakemake + ["--cores", "2"], cwd=local_repo, env=local_env,
                                 stdout=local_log, stderr=subprocess.STDOUT)
    started = time.monotonic()
    slurm = subprocess.run(
        snakemake + ["--profile", "slurm",
                     "--slurm-init-seconds-before-status-checks", str(INIT_SECONDS),
                     "--slurm-keep-successful-logs"],
        cwd=slurm_repo, env=site_env, capture_output=True, text=True,
    )
    slurm_seconds = time.monotonic() - started
    local_rc = local.wait(timeout=SNAKEMAKE_TIMEOUT_S + 30)
    slurm_log = slurm.stdout + slurm.stderr
    local_text = (local_repo / "snakemake.log").read_text()
    assert slurm.returncode == 0, slurm_log[-5000:]
    assert local_rc == 0, local_text[-5000:]

    # the same jobs as the local run; all but the workflow's local rules (none up to here) went
    # through sbatch, each a SLURM job of its rule that squeue saw complete
    local_jobs = re.findall(r"^localrule (\w+):$", local_text, flags=re.M)
    remote_jobs = re.findall(r"^rule (\w+):$", slurm_log, flags=re.M)
    login_node_jobs = re.findall(r"^localrule (\w+):$", slurm_log, flags=re.M)
    assert sorted(remote_jobs + login_node_jobs) == sorted(local_jobs)
    assert TARGET_RULE in remote_jobs and len(remote_jobs) > 1, remote_jobs
    submitted = dict(re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", slurm_log))
    jobs = {job.job_id: job for job in slurm_cluster.jobs() if job.job_id in submitted}
    assert sorted(jobs) == sorted(submitted), "a submitted job is unknown to squeue"
    assert sorted(job.rule for job in jobs.values()) == sorted(remote_jobs)
    for job_id, job in jobs.items():
        assert job.state == "COMPLETED", job
        assert job.partition == "debug"
        # the plugin's SLURM log of the job, kept: the job's own Snakemake ran the rule
        assert f"rule {job.rule}:" in Path(submitted[job_id]).read_text()

    # the same results, byte for byte
    slurm_files, local_files = _result_files(slurm_repo), _result_files(local_repo)
    assert sorted(slurm_files) == sorted(local_files)
    differing = sorted(name for name in local_files if slurm_files[name] != local_files[name])
    hints = [
        f"{name}: same data, different gzip header (time stamp / temporary file name): "
        "write it with gzip.GzipFile(filename='', mtime=0)"
        for name in differing
        if name.endswith(".gz")
        and gzip.decompress((slurm_repo / name).read_bytes()) == gzip.decompress((local_repo / name).read_bytes())
    ]
    assert not differing, f"results differ between the SLURM and the local run: {differing}; {hints}"
    print(f"SLURM run: {len(jobs)} jobs in {slurm_seconds:.0f} s")
