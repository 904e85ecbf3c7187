"""YAML/JSON files holding a mapping: the settings and dataset files the commands take, and the
JSON of checkpoints (config.json, task.json). Read through :func:`rnaret.io.text.text_lines`
(missing, folder, unreadable, empty, not UTF-8 and binary files are refused there); a syntax
error names the line and column the parser stopped at."""
from __future__ import annotations

import json
import os

from rnaret.io.errors import InputError
from rnaret.io.text import text_lines


def _text(path) -> str:
    return "".join(line for _, line in text_lines(path))


def read_mapping(path) -> dict:
    """A YAML (or JSON, which is YAML) file holding a mapping -> dict; ``InputError`` naming the
    file (and the line and column of a syntax error) otherwise."""
    import yaml

    path = os.fspath(path)
    text = _text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(path, f"not valid YAML/JSON: {exc.problem or exc.context}",
                         line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML/JSON: {exc}") from None
    except RecursionError:
        raise InputError(path, "not valid YAML/JSON: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for values it parsed but cannot build (a date
        # 2024-13-45, an integer of more than 4,300 digits)
        raise InputError(path, f"not valid YAML/JSON: a value cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(path, f"must hold a mapping (key: value lines), found {type(data).__name__}")
    return data


def read_json_object(path) -> dict:
    """A JSON file holding an object -> dict; ``InputError`` naming the file (and the line and
    column of a syntax error) otherwise."""
    path = os.fspath(path)
    text = _text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON: {exc.msg}", line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise InputError(path, "not valid JSON: nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise InputError(path, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(path, f"must hold a JSON object ({{...}}), found {type(data).__name__}")
    return data
