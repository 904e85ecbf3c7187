"""The SLURM resources of a pipeline job: its base needs (GPUs, nodes, memory, wall time) and the
site's values (the config's ``slurm:`` block) -> the resources Snakemake's SLURM executor plugin
turns into ``sbatch`` options.

Why here and not in the profile: a profile's ``set-resources`` cannot see a rule's GPU count
(its expressions see only wildcards, input, threads and attempt), so it cannot send a ``gpus: 0``
job to the CPU partition, nor leave out ``gpu_model`` (which the plugin turns into
``--gpus=MODEL:0``). The rules therefore state every job's resources through ``rule_resources``
(``rnaret.settings.Plan.resources``), which calls ``job_resources`` for each job and attempt.

What a job gets, for attempt ``attempt`` (1, 2, ... as Snakemake retries it):

- ``mem_mb``: base x attempt (at most ``max_mem_mb`` when set): a job killed for memory gets more;
- ``runtime`` (minutes): base x attempt (at most ``max_runtime`` when set), except for a
  *resumable* job (pretraining): every job of its chain gets the base wall time, since each
  continues from the checkpoint the previous one wrote;
- GPUs > 0: the GPU partition, ``gpu`` = GPUs (``gpu_model`` when the site names one), the GPU
  QOS and constraint when set; GPUs = 0: the CPU partition and no GPU resource at all;
- nodes > 1 (GPUs per node x nodes): ``nodes``, one task per node (``tasks``), ``mpi`` so that
  the plugin runs the rule's command itself (which starts ``srun``, ``rnaret launch --nodes``),
  ``gres=gpu[:MODEL]:N`` (per node) instead of ``gpu`` (a job total), ``tasks_per_gpu`` 0;
- account, QOS, constraint and ``slurm_extra`` as the site sets them.

Empty site values are left out, so a partition or account set elsewhere (the cluster's default,
or a profile's ``default-resources``) applies.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

# the resources job_resources may return; RESOURCE_NAMES(site) says which a site's jobs can get
BASE_RESOURCES = ("mem_mb", "runtime")
GPU_RESOURCES = ("gpu", "gpu_model", "gres", "nodes", "tasks", "mpi", "tasks_per_gpu")


@dataclass(frozen=True)
class Site:
    """The site's SLURM values (the config's ``slurm:`` block); "" or 0 = not set."""

    cpu_partition: str = ""
    gpu_partition: str = ""
    gpu_model: str = ""
    account: str = ""
    qos: str = ""
    gpu_qos: str = ""
    constraint: str = ""
    gpu_constraint: str = ""
    slurm_extra: str = ""
    max_runtime: int = 0
    max_mem_mb: int = 0

    @classmethod
    def from_config(cls, block: Mapping[str, Any] | None) -> "Site":
        """A Site from the ``slurm:`` block (None/{} = nothing set); ValueError for an unknown key."""
        block = dict(block or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(block) - known)
        if unknown:
            raise ValueError(f"slurm: unknown key(s) {unknown}; known: {sorted(known)}")
        values = {k: (int(v) if k.startswith("max_") else str(v or "")) for k, v in block.items() if v is not None}
        site = cls(**values)
        if site.max_runtime < 0 or site.max_mem_mb < 0:
            raise ValueError("slurm: max_runtime and max_mem_mb must be >= 0 (0 = no cap)")
        return site


def resource_names(site: Site) -> list[str]:
    """Every resource some job of this site can get: a rule declares these (each job's value
    may be None, which Snakemake drops). Site values left empty are not among them."""
    names = list(BASE_RESOURCES) + ["slurm_partition"]
    names += [name for name in GPU_RESOURCES if name != "gpu_model" or site.gpu_model]
    for name, gpu_name in (("qos", "gpu_qos"), ("constraint", "gpu_constraint")):
        if getattr(site, name) or getattr(site, gpu_name):
            names.append(name)
    if site.account:
        names.append("slurm_account")
    if site.slurm_extra:
        names.append("slurm_extra")
    if not (site.cpu_partition or site.gpu_partition):
        names.remove("slurm_partition")
    return names


def job_resources(site: Site, *, mem_mb: int, runtime: int, gpus: int = 0, nodes: int = 1,
                  attempt: int = 1, resumable: bool = False) -> dict[str, Any]:
    """The SLURM resources of one attempt of one job (module docstring).

    mem_mb, runtime: the job's base memory (MB, per node) and wall time (minutes); gpus: GPUs per
    node (0 = a CPU job); nodes: nodes (> 1 needs gpus > 0: multi-node DDP); attempt: Snakemake's
    attempt number (1 first); resumable: the job continues from a checkpoint when rerun, so its
    wall time does not grow. Returns only the resources that apply (no None values).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if gpus < 0 or nodes < 1:
        raise ValueError(f"gpus must be >= 0 and nodes >= 1, got gpus={gpus}, nodes={nodes}")
    if nodes > 1 and gpus == 0:
        raise ValueError("a job on several nodes is multi-node DDP and needs gpus >= 1 per node")
    memory = int(mem_mb) * attempt
    wall = int(runtime) if resumable else int(runtime) * attempt
    if site.max_mem_mb:
        memory = min(memory, site.max_mem_mb)
    if site.max_runtime:
        wall = min(wall, site.max_runtime)
    out: dict[str, Any] = {"mem_mb": memory, "runtime": wall}
    gpu_job = gpus > 0
    partition = site.gpu_partition if gpu_job else site.cpu_partition
    if partition:
        out["slurm_partition"] = partition
    if gpu_job and nodes == 1:
        out["gpu"] = gpus
        if site.gpu_model:
            out["gpu_model"] = site.gpu_model
    elif gpu_job:
        out.update(nodes=nodes, tasks=nodes, mpi="srun", tasks_per_gpu=0,
                   gres=f"gpu:{site.gpu_model}:{gpus}" if site.gpu_model else f"gpu:{gpus}")
    qos = (site.gpu_qos or site.qos) if gpu_job else site.qos
    constraint = (site.gpu_constraint or site.constraint) if gpu_job else site.constraint
    for name, value in (("qos", qos), ("constraint", constraint), ("slurm_account", site.account),
                        ("slurm_extra", site.slurm_extra)):
        if value:
            out[name] = value
    return out


def gpus_per_node(resources: Mapping[str, Any]) -> int:
    """GPUs on each node of a job, read back from its resources: ``gpu`` (one node), or the count
    of ``gres`` ``gpu[:MODEL]:N`` (several nodes); 0 for a CPU job. The worker count of
    ``rnaret launch --nproc`` in a rule."""
    gpu = resources.get("gpu")
    if gpu:
        return int(gpu)
    gres = str(resources.get("gres") or "")
    for item in gres.split(","):
        parts = item.strip().split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            return int(parts[-1])
    return 0


def nodes_of(resources: Mapping[str, Any]) -> int:
    """Nodes of a job, read back from its resources (1 unless ``nodes`` says more)."""
    return int(resources.get("nodes") or 1)


def rule_resources(site: Site, base: Mapping[str, Any] | Callable[[Any], Mapping[str, Any]], *,
                   resumable: bool = False) -> dict[str, Callable]:
    """A rule's ``resources:`` for Snakemake: {name: function(wildcards, attempt)} for every
    resource the site's jobs can get (``resource_names``); a job whose value is None does not
    get that resource (Snakemake drops it).

    base: the job's needs, {mem_mb, runtime, gpu or gpus, nodes} (the last two optional), or a
    function of the wildcards returning them; resumable: as for ``job_resources``. Snakemake
    calls each function with the job's wildcards and attempt (1, 2, ... as it retries).
    """

    def needs(wildcards) -> dict[str, int]:
        values = base(wildcards) if callable(base) else base
        return {"mem_mb": int(values["mem_mb"]), "runtime": int(values["runtime"]),
                "gpus": int(values.get("gpu", values.get("gpus", 0)) or 0),
                "nodes": int(values.get("nodes", 1) or 1)}

    def resource(name: str) -> Callable:
        def value(wildcards, attempt):
            return job_resources(site, **needs(wildcards), attempt=attempt, resumable=resumable).get(name)

        value.__name__ = f"slurm_{name}"
        return value

    return {name: resource(name) for name in resource_names(site)}
