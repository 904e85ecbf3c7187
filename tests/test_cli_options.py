"""Every option of every command has help, and the options commands share are spelled alike."""
from __future__ import annotations

import argparse

import pytest

from rnaret.cli import COMMANDS, build_parser, main


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_of_every_command_has_help():
    missing = []
    commands = subparsers()
    assert set(commands) == set(COMMANDS)
    for name, parser in commands.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            # argparse.SUPPRESS marks a hidden alias of an old spelling, kept on purpose
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


@pytest.mark.parametrize("command", ["fold", "embed", "classify"])
def test_model_commands_share_one_spelling(command):
    parser = subparsers()[command]
    options = {s for a in parser._actions for s in a.option_strings if a.help != argparse.SUPPRESS}
    assert {"--out", "--quiet", "--device", "--precision", "--threads"} <= options
    assert not {"--output", "--no-progress", "--progress"} & options   # old spellings: hidden aliases only
    old = parser.parse_args(["x.fa", "--checkpoint", "c", "--output", "o", "--no-progress"])
    new = parser.parse_args(["x.fa", "--checkpoint", "c", "--out", "o", "--quiet"])
    assert (old.out, old.quiet) == (new.out, new.quiet) == ("o", True)


def test_out_is_required_once(capsys):
    with pytest.raises(SystemExit):
        main(["fold", "x.fa", "--checkpoint", "c"])
    assert "--out" in capsys.readouterr().err
