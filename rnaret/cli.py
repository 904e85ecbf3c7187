"""The `rnaret` command line: one subcommand per module under ``rnaret.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so `rnaret --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; add a line here when adding a command module
COMMANDS = {
    "embed": "rnaret.commands.embed",
    "finetune": "rnaret.commands.finetune",
    "evaluate": "rnaret.commands.evaluate",
    "classify": "rnaret.commands.classify",
    "vienna": "rnaret.commands.vienna",
    "launch": "rnaret.commands.launch",
    "ddp-check": "rnaret.commands.ddp_check",
    "pretrain": "rnaret.commands.pretrain",
    "download": "rnaret.commands.download",
    "unpack": "rnaret.commands.unpack",
    "normalize": "rnaret.commands.normalize",
    "leakage": "rnaret.commands.leakage",
    "homology": "rnaret.commands.homology",
    "leakage-report": "rnaret.commands.leakage_report",
    "filter": "rnaret.commands.filter",
    "shard": "rnaret.commands.shard",
    "corpus-summary": "rnaret.commands.corpus_summary",
    "scaling": "rnaret.commands.scaling",
    "tables": "rnaret.commands.tables",
    "structure-figures": "rnaret.commands.structure_figures",
    "analyses": "rnaret.commands.analyses",
    "serve": "rnaret.commands.serve",
    "fold": "rnaret.commands.fold",
    "settings": "rnaret.commands.settings",
    "export-hf": "rnaret.commands.export_hf",
}


def add_out_argument(parser: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    """``--out PATH`` (``args.out``), the one spelling of a command's output; ``--output`` is kept
    as a hidden alias for the rules and scripts written before."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--out", dest="out", metavar="PATH", help=help)
    group.add_argument("--output", dest="out", help=argparse.SUPPRESS)


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` (``args.quiet``): no progress bar; ``--no-progress``/``--progress`` are kept
    as hidden aliases for the scripts written before."""
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--progress", dest="quiet", action="store_false", help=argparse.SUPPRESS)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` (``args.threads``): CPU threads of torch (``rnaret.commands.finetune.set_threads``)."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads of torch (default: torch's)")


def add_model_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that runs a model shares, spelled the same everywhere:
    ``--device``, ``--precision``, ``--threads``, ``--quiet``."""
    from rnaret.device import add_device_argument
    from rnaret.precision import add_precision_argument

    add_device_argument(parser)
    add_precision_argument(parser)
    add_threads_argument(parser)
    add_quiet_argument(parser)


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 sequence"``, ``"2 sequences"`` (``words``: an irregular plural)."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def _command_help(module_name: str) -> str:
    try:
        return importlib.import_module(module_name).HELP
    except Exception as exc:  # a broken optional dependency must not hide the other commands
        return f"(unavailable: {exc})"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` given, only that command's module is imported, so one
    command's missing optional dependency never breaks another command."""
    parser = argparse.ArgumentParser(prog="rnaret", description="RNAret RNA language model tools")
    parser.add_argument("--version", action="version", version=f"rnaret {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name)
            continue
        if command is None:  # the full listing: a broken module shows as unavailable
            help_text = _command_help(module_name)
            if help_text.startswith("(unavailable"):
                sub.add_parser(name, help=help_text)
                continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def _version() -> str:
    from rnaret import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    from rnaret.io.errors import InputError

    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    message = device_problem(args)
    if message:
        print(f"rnaret {args.command}: error: {message}", file=sys.stderr)
        return 1
    try:
        return int(args._module.run(args) or 0)
    except InputError as exc:
        print(f"rnaret {args.command}: error: {exc}", file=sys.stderr)
        return 1


def device_problem(args: argparse.Namespace) -> str | None:
    """Why the command's ``--device`` cannot be used on this node, or None when it can (or the
    command takes no --device). Checked before the command starts, so a GPU job that finds no
    CUDA stops at once instead of loading data first (``rnaret.device.resolve_device``)."""
    device = getattr(args, "device", None)
    if not isinstance(device, str) or device in ("", "auto", "cpu"):
        return None
    from rnaret.device import DeviceError, resolve_device

    try:
        resolve_device(device)
    except DeviceError as exc:
        return str(exc)
    except RuntimeError as exc:  # torch.device() refuses the name itself
        return f"--device {device!r}: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
