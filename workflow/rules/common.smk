# Command: none (shared by every stage: rnaret from this source tree, the settings resolver)
# Module:  rnaret/settings/plan.py, rnaret/settings/stages/ (one module per stage)
# Tests:   tests/settings/test_settings.py, tests/pipeline/test_settings_workflow.py
#
# Shared by every stage: rnaret from this source tree, and the calls into its settings resolver.
# Every dataset lookup, default and settings merge is rnaret.settings.Plan (built once, in the
# Snakefile, from the validated config: PLAN); the rules call its stage objects only
# (PLAN.data, PLAN.finetune, ...: rnaret/settings/stages/, where every results/ path is defined).

import os
import sys

# the resolver and the rules' commands come from this source tree, not from an installed rnaret
sys.path.insert(0, workflow.basedir)
from rnaret import settings as rnaret_settings

# The rules run `python -m rnaret ...` from this source tree, with or without --use-conda
# (the conda envs pin rnaret's dependencies; rnaret itself is not installed into them).
shell.prefix(
    f"export PYTHONPATH='{workflow.basedir}'${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)

SEQKIT_WRAPPER = f"file://{workflow.basedir}/workflow/wrappers/seqkit"
MMSEQS2_WRAPPER = f"file://{workflow.basedir}/workflow/wrappers/mmseqs2"


def check_config_file(path):
    """``path`` once it reads as YAML (a syntax error names its line here, before Snakemake's
    own reader, whose message names neither file nor line)."""
    if os.path.exists(path):
        rnaret_settings.read_config_file(path)
    return path


def plan_of(config):
    """The jobs of the config (rnaret.settings.Plan), once it is validated with every schema
    default filled in (as Snakemake's validate(..., set_default=True) does). A bad value stops
    the run with one line naming its key (and file), not a traceback or a schema dump;
    `rnaret settings check FILE` gives the same line without Snakemake."""
    try:
        rnaret_settings.validate_config(config)
        return rnaret_settings.resolve(config)
    except rnaret_settings.SettingsError as exc:
        sys.exit(f"rnaret: error in the configuration: {exc}")


def conda_env(name):
    """Path of a stage's conda environment file, envs/<name>.yaml."""
    return os.path.join(workflow.basedir, "envs", f"{name}.yaml")


# the paper's analyses (analyses.smk): their output files (PLAN.analyses) and the options naming them


def analysis_outputs(kind, caption):
    """The rule's outputs: every file of the kind, in the report (category "Paper analyses")."""
    return {
        name.replace(".", "_"): report(
            f"{PLAN.analyses.DIR}/{name}",
            caption=f"../report/{caption}",
            category="Paper analyses",
            subcategory="{task}",
            labels={"dataset": "{dataset}", "model": "{model}", "file": name},
        )
        for name in PLAN.analyses.FILES[kind]
    }


def analysis_options(kind):
    """`--<option> {output.<name>}` for every output file of the kind (option = file stem)."""
    options = {
        "structure": ("per-sequence-tsv", "family-tsv", "family-png", "length-png"),
        "pca": ("points-tsv", "variance-tsv", "png"),
        "cls-retention": (
            "profile-tsv",
            "example-tsv",
            "map-tsv",
            "bars-png",
            "map-png",
        ),
        "transcripts": (
            "profile-tsv",
            "map-tsv",
            "mrna-png",
            "lncrna-png",
            "codons-tsv",
            "kmers-tsv",
            "codons-png",
        ),
    }[kind]
    names = [n.replace(".", "_") for n in PLAN.analyses.FILES[kind]]
    return " ".join(f"--{o} {{output.{n}:q}}" for o, n in zip(options, names))
