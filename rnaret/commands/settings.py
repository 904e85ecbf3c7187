"""`rnaret settings`: the pipeline's resolved settings, job by job, from config files.

    rnaret settings config.yaml                       # the default run
    rnaret settings config.yaml my.yaml               # my.yaml merged over config.yaml, as
                                                      # `snakemake --configfile my.yaml` does
    rnaret settings check config.yaml my.yaml         # only check them: one line, exit 0 or 1

Prints JSON: every pretraining's full config, every fine-tuning's settings and inputs, the
evaluations, the splits checked for leakage and the final targets, as the rules receive them
(``rnaret.settings.Plan``). A YAML syntax error names the file, line and column; a bad value
names its key (with the nearest known key for a typo). ``check`` prints one line either way and
writes nothing: the check to run before ``snakemake --configfile my.yaml``, whose own reader
names neither the file nor the line of a YAML error.
"""
from __future__ import annotations

HELP = "print the pipeline's resolved settings per job (JSON) from config files"


def add_arguments(parser) -> None:
    parser.add_argument("configs", nargs="+", metavar="CONFIG",
                        help="config files in order (later ones merged key by key over earlier ones); "
                             "'check CONFIG...' only checks them")
    from rnaret.cli import add_out_argument

    add_out_argument(parser, "write the JSON here instead of stdout", required=False)


def run(args) -> int:
    import json

    import sys

    from rnaret.io.atomic import atomic_open
    from rnaret.io.errors import InputError
    from rnaret.settings import Plan, load_config

    configs = list(args.configs)
    if configs[0] == "check":
        if len(configs) == 1:
            raise InputError(None, "settings check needs at least one config file")
        plan = Plan(load_config(configs[1:]))
        print(f"rnaret settings: {', '.join(configs[1:])}: valid ({len(plan.targets())} final targets)",
              file=sys.stderr)
        return 0
    text = json.dumps(Plan(load_config(configs)).describe(), indent=1, sort_keys=True) + "\n"
    if args.out:
        with atomic_open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        print(text, end="")
    return 0
