"""seqkit wrapper (same interface as the official snakemake-wrappers ``bio/seqkit``).

params: ``command`` (seqkit subcommand, e.g. "rmdup"), ``extra`` (its options).
input: the first is the main input; further named inputs become ``--<name>-file`` options
(``bed``/``gtf`` become ``--bed``/``--gtf``). output: the first is ``--out-file``; further named
outputs become ``--<name>-file`` (e.g. ``dup_num`` -> ``--dup-num-file``).
Unlike the official wrapper the main output is written under a temporary name and renamed
when seqkit succeeds, and side outputs that seqkit skips when empty (``rmdup`` writes no
``--dup-num-file`` if nothing is duplicated) are created empty, so the rule's outputs exist.
"""
__author__ = "rnaret"
__license__ = "MIT"

import os
from pathlib import Path

from snakemake.shell import shell

command = snakemake.params.command
extra = snakemake.params.get("extra", "")
log = snakemake.log_fmt_shell(stdout=True, stderr=True)

if command in ("concat", "common"):
    main_input = " ".join(f"'{path}'" for path in snakemake.input)
else:
    main_input = f"'{snakemake.input[0]}'"


def option(key: str, value: str, plain: tuple) -> str:
    name = key.replace("_", "-")
    return f"--{name} '{value}'" if key in plain else f"--{name}-file '{value}'"


extra_input = " ".join(option(k, v, ("bed", "gtf")) for k, v in list(snakemake.input.items())[1:])
side_outputs = list(snakemake.output.items())[1:]
extra_output = " ".join(option(k, v, ("read1", "read2")) for k, v in side_outputs)

final = Path(snakemake.output[0])
partial = final.with_name(f".partial.{final.name}")  # keeps the suffix: seqkit gzips '*.gz'
try:
    shell(
        "seqkit {command}"
        " --threads {snakemake.threads}"
        " {extra_input}"
        " {extra_output}"
        " {extra}"
        " --out-file '{partial}'"
        " {main_input}"
        " {log}"
    )
    for _key, path in side_outputs:
        Path(path).touch(exist_ok=True)
    os.replace(partial, final)
finally:
    partial.unlink(missing_ok=True)
