"""One place that resolves the pipeline's settings: the validated config in, every job's fully
resolved settings out. The Snakefile's rules and the commands that read a pipeline config
(``rnaret finetune --dataset-config config.yaml --dataset x``) both go through it.

- ``files``: config files (YAML errors that name the line), merging, schema validation that fills
  every default (``workflow/schemas/config.schema.yaml`` holds them all);
- ``sources``: a file named in the config -> what a command reads and what the job depends on
  (local path, download, archive member);
- ``dataset_sources``: the downstream datasets (``datasets:`` and the optional dataset sheet) resolved to
  local files and row selections;
- ``plan``: the jobs (``Plan``): the config checks that span stages, and one object per stage;
- ``stages``: one module per stage (archives, data, pretrain, finetune, baselines, report,
  analyses), each with its ``results/`` path templates (the only place they are written), its
  jobs' inputs and command options built from the resolved settings, and its targets.

Free of torch and Snakemake: the Snakemake DAG is built on every ``snakemake`` call.
"""
from rnaret.settings.errors import SettingsError
from rnaret.settings.files import load_config, read_config_file, validate_config
from rnaret.settings.plan import Plan


def resolve(config) -> Plan:
    """The ``Plan`` of a validated config (``validate_config`` or Snakemake's ``validate`` with
    ``set_default=True`` filled its defaults)."""
    return Plan(config)


__all__ = ["Plan", "SettingsError", "load_config", "read_config_file", "resolve", "validate_config"]
