"""`rnaret settings`: the pipeline's resolved settings, job by job, from config files.

    rnaret settings config.yaml                       # the default run
    rnaret settings config.yaml my.yaml               # my.yaml merged over config.yaml, as
                                                      # `snakemake --configfile my.yaml` does

Prints JSON: every pretraining's full config, every fine-tuning's settings and inputs, the
evaluations, the splits checked for leakage and the final targets, as the rules receive them
(``rnaret.settings.Plan``). A YAML syntax error names the file, line and column; a bad value
names its key.
"""
from __future__ import annotations

HELP = "print the pipeline's resolved settings per job (JSON) from config files"


def add_arguments(parser) -> None:
    parser.add_argument("configs", nargs="+", metavar="CONFIG",
                        help="config files in order (later ones merged key by key over earlier ones)")
    parser.add_argument("--output", default=None, help="write the JSON here instead of stdout")


def run(args) -> int:
    import json

    from rnaret.io.atomic import atomic_open
    from rnaret.settings import Plan, load_config

    text = json.dumps(Plan(load_config(args.configs)).describe(), indent=1, sort_keys=True) + "\n"
    if args.output:
        with atomic_open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        print(text, end="")
    return 0
