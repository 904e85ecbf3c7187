"""MMseqs2 clustering wrapper: ``mmseqs easy-linclust`` (or ``easy-cluster``) on one FASTA.

params: ``command`` ("easy-linclust" or "easy-cluster"), ``extra`` (its options, e.g.
"--min-seq-id 0.9 -c 0.8 --cov-mode 1"). input: the FASTA (plain or gzip).
output: ``rep`` the representative sequences (FASTA, headers kept), ``clusters`` the
"representative<TAB>member" table (one line per input record).
MMseqs2 writes ``<prefix>_rep_seq.fasta``, ``<prefix>_cluster.tsv`` and ``<prefix>_all_seqs.fasta``
into a scratch folder (``resources.tmpdir``); the two kept files are moved onto the outputs only
when MMseqs2 succeeded, so a failed job leaves nothing that looks finished.
"""
__author__ = "rnaret"
__license__ = "MIT"

import os
import shutil
import tempfile
from pathlib import Path

from snakemake.shell import shell

command = snakemake.params.command
if command not in ("easy-linclust", "easy-cluster"):
    raise ValueError(f"mmseqs2 wrapper: command must be easy-linclust or easy-cluster, got {command!r}")
extra = snakemake.params.get("extra", "")
mem_mb = snakemake.resources.get("mem_mb")
# MMseqs2 takes all the memory it finds unless told: keep it inside the job's allocation
memory = f"--split-memory-limit {int(mem_mb * 0.8)}M" if mem_mb else ""
log = snakemake.log_fmt_shell(stdout=True, stderr=True)
rep, clusters = Path(snakemake.output.rep), Path(snakemake.output.clusters)
scratch = Path(tempfile.mkdtemp(prefix="mmseqs2-", dir=snakemake.resources.get("tmpdir")))
try:
    prefix = scratch / "result"
    shell(
        "mmseqs {command} '{snakemake.input[0]}' '{prefix}' '{scratch}/tmp'"
        " --threads {snakemake.threads} {memory} {extra} {log}"
    )
    for made, final in ((Path(f"{prefix}_rep_seq.fasta"), rep), (Path(f"{prefix}_cluster.tsv"), clusters)):
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(f".partial.{final.name}")
        shutil.move(made, partial)
        os.replace(partial, final)
finally:
    shutil.rmtree(scratch, ignore_errors=True)
