# Where jobs run on a SLURM cluster (snakemake --profile slurm): every rule's resources come from
# slurm_resources(), which adds to the job's memory, wall time and GPU count the site's values of
# the config's `slurm:` block (partition by GPU count, GPU model, account, QOS, constraint,
# slurm_extra) and grows memory and wall time with each retry (rnaret/cluster.py). Downloads,
# unpacking and the tiny summary rules run on the machine that runs Snakemake: compute nodes
# often have no internet access. Without a cluster these resources change nothing.

from rnaret.cluster import Site, job_resources, resource_names

SLURM_SITE = Site.from_config(config.get("slurm"))


localrules:
    download_corpus,
    download_dataset,
    corpus_summary,


def slurm_resources(base, resumable=False):
    """The `resources:` of a rule: {name: function(wildcards, attempt)} for every resource the
    site's jobs can get (rnaret.cluster.resource_names); a job's value None leaves it out.

    base: the job's needs, {mem_mb, runtime, gpu, nodes} (gpu and nodes optional), or a function
    of the wildcards returning them; resumable: the job continues from a checkpoint when it runs
    again (pretraining), so its wall time does not grow with the attempt.
    """

    def needs(wildcards):
        values = base(wildcards) if callable(base) else base
        return {
            "mem_mb": int(values["mem_mb"]),
            "runtime": int(values["runtime"]),
            "gpus": int(values.get("gpu", values.get("gpus", 0)) or 0),
            "nodes": int(values.get("nodes", 1) or 1),
        }

    def resource(name):
        def value(wildcards, attempt):
            return job_resources(
                SLURM_SITE, **needs(wildcards), attempt=attempt, resumable=resumable
            ).get(name)

        return value

    return {name: resource(name) for name in resource_names(SLURM_SITE)}
