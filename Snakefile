# rnaret: RNAret pretraining corpus -> pretraining -> fine-tuning -> evaluation -> report.
# Run `snakemake --cores 2` (defaults: the small real data in resources/), or
# `snakemake --profile slurm` on a cluster. Stages live in workflow/rules/<stage>.smk.

from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"


configfile: check_config_file("config.yaml")


# validates against workflow/schemas/config.schema.yaml and fills every default of the schema,
# nested blocks included (the schema holds them all); a bad value stops with one line
PLAN = plan_of(config)


rule all:
    default_target: True
    input:
        PLAN.targets(),


include: "workflow/rules/archives.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/analyses.smk"
