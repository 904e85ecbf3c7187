# Command: `rnaret unpack`
# Module:  rnaret/settings/stages/archives.py (jobs and paths), rnaret/data/archive.py
# Tests:   tests/data/test_archive.py, tests/pipeline/test_archive_pipeline.py
#
# Archives: each entry of the config's `archives:` block, {NAME: {url: URL-or-path, md5: hex or
# checksum file}}, is downloaded (or read where it is), md5-checked and unpacked by
# `rnaret unpack` into results/archives/NAME/ (rnaret/data/archive.py: members checked against
# path traversal, links outside, device files; the folder appears only when complete, with the
# manifest .rnaret-archive.json). A path in the config given as {archive: NAME, path: MEMBER}
# stands for results/archives/NAME/MEMBER, and its job depends on results/archives/NAME.
# The rule runs on the machine that runs Snakemake (localrules): compute nodes often have no
# internet access.


localrules:
    unpack_archive,


rule unpack_archive:
    input:
        PLAN.archives.inputs,
    output:
        directory(PLAN.archives.OUTPUT),
    log:
        "logs/archives/{archive}.log",
    wildcard_constraints:
        archive=PLAN.archives.pattern(),
    conda:
        conda_env("data")
    threads: 1
    resources:
        **PLAN.resources(mem_mb=1000, runtime=240),
    params:
        source=PLAN.archives.source,
    shell:
        "python -m rnaret unpack {params.source[url]:q} --output-dir {output:q}"
        " --md5={params.source[md5]:q} > {log:q} 2>&1"
