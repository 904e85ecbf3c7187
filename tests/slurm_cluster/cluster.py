"""Python side of the single-node SLURM test cluster (start.sh / stop.sh beside this file).

Used by tests/slurm/test_slurm_cluster.py through a session-scoped fixture: bring the cluster up,
run Snakemake against it, look at its jobs (squeue and scontrol keep finished jobs for MinJobAge,
7200 s here) and at the plugin's own record of them (the Snakemake log's submission lines), wait
for a rule's job to run and scancel it, and always stop it again.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
START = HERE / "start.sh"
STOP = HERE / "stop.sh"

# every program start.sh and the tests call
REQUIRED_BINARIES = (
    "munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun", "setpriv",
)


def missing_binaries() -> list[str]:
    """Names of the SLURM/munge programs not on PATH (empty when the cluster can start)."""
    return [name for name in REQUIRED_BINARIES if shutil.which(name) is None]


# states after which a job runs no more
FINISHED_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE",
})


@dataclass
class SlurmJob:
    """One row of ``squeue --states=all``: id, state, rule (from the plugin's job comment),
    job name, partition, CPUs and memory as squeue prints them (e.g. "4000M")."""

    job_id: str
    state: str
    rule: str | None
    name: str
    partition: str = ""
    cpus: int = 0
    memory: str = ""
    wildcards: str | None = None


@dataclass
class SlurmCluster:
    """A running test cluster whose files are all in ``state``; ``env`` points clients at it."""

    state: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, state: Path | None = None, timeout: float = 90) -> "SlurmCluster":
        """Run start.sh in ``state`` (default: a new directory under /tmp, which the munge user
        can reach) and return the cluster once its node is idle. Raises RuntimeError with the
        script's output when it fails (start.sh then has stopped what it started)."""
        made = state is None
        if state is None:
            state = Path(tempfile.mkdtemp(prefix="rnaret-slurm-", dir="/tmp"))
        proc = subprocess.run(
            ["bash", str(START), str(state)],
            capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            if made:  # start.sh stopped what it started; the state directory is ours to remove
                shutil.rmtree(state, ignore_errors=True)
            raise RuntimeError(f"start.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        env = dict(os.environ)
        env["SLURM_CONF"] = str(state / "slurm.conf")
        return cls(state=state, env=env)

    def stop(self, clean: bool = True) -> None:
        """Run stop.sh: kill exactly the daemons start.sh recorded; remove the state dir if clean."""
        args = ["bash", str(STOP), str(self.state)] + (["--clean"] if clean else [])
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"stop.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def pids(self) -> dict[str, int]:
        """Daemon name -> PID as recorded by start.sh."""
        return {p.stem: int(p.read_text()) for p in sorted((self.state / "pids").glob("*.pid"))}

    def run(self, *args: str, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster; its stdout (raises on failure)."""
        proc = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def node(self) -> dict[str, str]:
        """``scontrol show node`` of the single node, as key -> value."""
        fields: dict[str, str] = {}
        for token in self.run("scontrol", "show", "node", "-o").split():
            if "=" in token:
                key, value = token.split("=", 1)
                fields[key] = value
        return fields

    def jobs(self) -> list[SlurmJob]:
        """Every job slurmctld still knows (running, pending, or finished < MinJobAge ago).

        The rule comes from the comment the Snakemake plugin gives each job:
        ``rule_<name>`` or ``rule_<name>_wildcards_<values>``.
        """
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%T|%P|%C|%m|%k|%j")
        jobs = []
        for line in out.splitlines():
            if not line.strip():
                continue
            job_id, state, partition, cpus, memory, comment, name = line.split("|", 6)
            rule = wildcards = None
            if comment.startswith("rule_"):
                rule, _, wildcards = comment[len("rule_"):].partition("_wildcards_")
            jobs.append(SlurmJob(
                job_id=job_id.strip(), state=state.strip(), rule=rule, name=name.strip(),
                partition=partition.strip(), cpus=int(cpus), memory=memory.strip(),
                wildcards=wildcards or None,
            ))
        return jobs

    def job_details(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` of one job as key -> value (e.g. Partition, NumNodes, TresPerJob
        = "gres:gpu:fake:2" for --gpus=fake:2, TresPerNode for --gres, MinMemoryNode, TimeLimit)."""
        fields: dict[str, str] = {}
        for token in self.run("scontrol", "show", "job", "--oneliner", job_id).split():
            if "=" in token:
                key, value = token.split("=", 1)
                fields.setdefault(key, value)
        return fields

    def job(self, job_id: str) -> SlurmJob | None:
        """The job with this id, or None once slurmctld has forgotten it (after MinJobAge)."""
        return next((j for j in self.jobs() if j.job_id == job_id), None)

    def wait_until_finished(self, job_id: str, timeout: float = 120, poll: float = 0.5) -> SlurmJob:
        """Wait until a job reaches one of FINISHED_STATES; returns it (TimeoutError if not)."""
        deadline = time.monotonic() + timeout
        job = None
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job is not None and job.state in FINISHED_STATES:
                return job
            time.sleep(poll)
        raise TimeoutError(f"job {job_id} not finished after {timeout:g} s: {job}")

    def wait_for_rule(self, rule: str, state: str = "RUNNING", timeout: float = 120,
                      exclude: set[str] | frozenset[str] = frozenset(), poll: float = 0.5,
                      wildcards: str | None = None) -> SlurmJob:
        """Wait until a job of Snakemake rule ``rule`` is in ``state`` (default RUNNING).

        exclude: job ids to ignore (e.g. the job cancelled before, when waiting for its retry);
        wildcards: only the job whose wildcard values are these (as the plugin's comment has
        them, e.g. "rnaret-k1").
        Returns that job; raises TimeoutError listing the jobs seen when none gets there in time.
        """
        deadline = time.monotonic() + timeout
        seen: list[SlurmJob] = []
        while time.monotonic() < deadline:
            seen = self.jobs()
            for job in seen:
                if job.rule == rule and job.state == state and job.job_id not in exclude \
                        and (wildcards is None or job.wildcards == wildcards):
                    return job
            time.sleep(poll)
        raise TimeoutError(f"no job of rule {rule!r} reached {state} within {timeout:g} s; jobs: {seen}")

    def scancel(self, job_id: str, wait: float = 30) -> str:
        """Cancel a job and wait until it has left RUNNING/COMPLETING; its final state."""
        self.run("scancel", job_id)
        return self.wait_until_finished(job_id, timeout=wait, poll=0.3).state

    def cancel_rule_when_running(self, rule: str, timeout: float = 120, after: float = 0.0,
                                 ready: Callable[[], bool] | None = None,
                                 wildcards: str | None = None) -> tuple[SlurmJob, str]:
        """Wait for a job of ``rule`` to run, then for ``ready()`` to hold (e.g. "a checkpoint
        file exists") or ``after`` seconds, and scancel it, as a preemption would end it.

        Returns the job and its final state (CANCELLED). For the preemption test of pretraining:
        cancel once a checkpoint exists, let the profile's retry resubmit it (a new job id:
        ``wait_for_rule(rule, exclude={job.job_id})``), check it resumed from the checkpoint.
        Raises TimeoutError when the job does not run, or ``ready()`` stays false, in time.
        """
        deadline = time.monotonic() + timeout
        job = self.wait_for_rule(rule, "RUNNING", timeout=timeout, wildcards=wildcards)
        if ready is not None:
            while not ready():
                current = self.job(job.job_id)
                if current is None or current.state in FINISHED_STATES:
                    raise RuntimeError(f"job {job.job_id} of {rule!r} ended before it was ready: {current}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job.job_id} of {rule!r} not ready within {timeout:g} s")
                time.sleep(0.1)
        if after:
            time.sleep(after)
        return job, self.scancel(job.job_id)


def submitted_jobs(snakemake_log: str) -> dict[str, Path]:
    """The plugin's own record of a run: SLURM job id -> the job's SLURM log file, from the
    "... has been submitted with SLURM jobid N (log: PATH)." lines Snakemake prints."""
    return {job_id: Path(log) for job_id, log in
            re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", snakemake_log)}


def repository_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files of the git repository at root (relative)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout
    return [name for name in out.split("\0") if name and (root / name).is_file()]


def copy_repository(root: Path, dest: Path) -> Path:
    """Copy the repository's files (as `repository_files`) into dest; returns dest."""
    for name in repository_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return dest
