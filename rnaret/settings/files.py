"""Config files and their schemas: reading YAML/JSON with errors that name the line, merging
files as Snakemake does, and validation that fills the schema's defaults.

The schemas are the workflow's own (``workflow/schemas/``, beside this source tree): the Snakefile
validates with Snakemake's ``validate(config, schema, set_default=True)``; ``validate_config`` here
does the same (the jsonschema recipe Snakemake uses: a ``properties`` keyword that first sets each
absent key to its ``default``), for the commands that read a pipeline config themselves
(``rnaret finetune --dataset-config config.yaml``).
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Iterable, Mapping

from rnaret.io.errors import InputError
from rnaret.io.mapping import read_mapping as read_config_file  # noqa: F401  (the one YAML/JSON mapping reader)
from rnaret.settings.errors import SettingsError, key_path

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"
CONFIG_SCHEMA = SCHEMA_DIR / "config.schema.yaml"
DATASET_SHEET_SCHEMA = SCHEMA_DIR / "datasets.schema.yaml"


def merge_config(base: dict, update: Mapping) -> dict:
    """``base`` updated by ``update`` in place, mappings merged key by key (Snakemake's rule for a
    ``--configfile`` given after ``config.yaml``); returns ``base``."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


@functools.lru_cache(maxsize=None)
def _schema(path: str) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _validator(schema_path, fragment: str | None = None):
    """A Draft 2020-12 validator for the schema file that fills defaults (as Snakemake's validate);
    with ``fragment`` (a name under the schema's ``definitions``), one that validates a value
    against that definition only (the command line checks its settings with it)."""
    return _cached_validator(str(schema_path), fragment)


@functools.lru_cache(maxsize=None)
def _cached_validator(schema_path: str, fragment: str | None):
    from jsonschema import Draft202012Validator, validators

    schema_path = Path(schema_path)
    if not schema_path.is_file():
        raise InputError(schema_path, "the config schema is missing: run rnaret from its source tree "
                                      "(the schemas live in workflow/schemas/)")
    schema = copy.deepcopy(_schema(str(schema_path)))
    properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, subschema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from properties(validator, props, instance, subschema)

    cls = validators.extend(Draft202012Validator, {"properties": set_defaults})
    if fragment is not None:
        if fragment not in schema.get("definitions", {}):
            raise KeyError(f"{schema_path} has no definition {fragment!r}")
        schema = {**schema, "$ref": f"#/definitions/{fragment}"}
        for key in ("type", "properties", "additionalProperties"):
            schema.pop(key, None)
    return cls(schema)


def _describe(error) -> tuple[list, str]:
    """(the key path, one line) of a jsonschema error: an unknown key is named with the nearest
    known one; a number written as text says why YAML read it so; never the schema itself."""
    import difflib
    import re

    keys = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in known and not any(
            re.search(p, k) for p in error.schema.get("patternProperties", {})))
        if unknown:
            guess = difflib.get_close_matches(str(unknown[0]), sorted(known), n=1)
            listed = ", ".join(sorted(known))
            if len(listed) > 160:  # one short line: a few, and where the rest stand
                listed = f"{', '.join(sorted(known)[:8])} ... ({len(known)} in {CONFIG_SCHEMA.name})"
            hint = f"; did you mean {guess[0]!r}?" if guess else f"; known keys: {listed}"
            return keys + [unknown[0]], f"unknown key {unknown[0]!r}{hint}"
    if error.validator == "type" and isinstance(error.instance, str):
        try:
            float(error.instance)
        except ValueError:
            pass
        else:
            return keys, (f"{error.instance!r} is text, not a number (YAML reads a number like 3e-4 "
                          f"as text: write 3.0e-4)")
    shown = repr(error.instance)
    if len(shown) > 60:  # a long value (a whole block) is clipped, so the message stays one short line
        return keys, error.message.replace(shown, shown[:50] + " ...")
    return keys, error.message


def _check(record, schema_path, path=None, line: int | None = None, prefix: str = "",
           fragment: str | None = None, label: str = "config key"):
    from jsonschema.exceptions import best_match

    validator = _validator(schema_path, fragment)
    # best_match descends into oneOf/anyOf to the branch that fits the value's type
    error = best_match(validator.iter_errors(record))
    if error is not None:
        keys, what = _describe(error)
        key = key_path(*([prefix] if prefix else []), *keys) or "(top level)"
        raise SettingsError(key, what, path=path, line=line, label=label)
    return record


def check_fragment(value, fragment: str, prefix: str = "", label: str = "setting", schema=CONFIG_SCHEMA):
    """Validate ``value`` against ``definitions.<fragment>`` of the config schema (the bounds of
    the task settings, for instance), without filling defaults into it; ``SettingsError`` naming
    ``prefix`` + the key otherwise. Returns ``value``."""
    _check(copy.deepcopy(value), schema, prefix=prefix, fragment=fragment, label=label)
    return value


def validate_config(config: dict, schema=CONFIG_SCHEMA, path=None) -> dict:
    """Validate a pipeline config against the schema, filling every default in place (nested
    blocks too); returns ``config``. Raises ``SettingsError`` naming the first bad key."""
    return _check(config, schema, path=path)


def validate_record(record: dict, schema, path=None, line: int | None = None) -> dict:
    """Validate one record (e.g. a dataset-sheet row) against ``schema``; ``SettingsError`` names
    the column, the file and the line."""
    return _check(record, schema, path=path, line=line)


def load_config(paths: Iterable, overrides: Mapping | None = None) -> dict:
    """Read config files in order, merge them (later files win key by key), then ``overrides``;
    validate and fill the defaults. Errors name the file and line (syntax) or the key (values)."""
    config: dict = {}
    paths = [Path(p) for p in paths]
    for path in paths:
        merge_config(config, read_config_file(path))
    if overrides:
        merge_config(config, overrides)
    return validate_config(config, path=paths[-1] if len(paths) == 1 else None)


def is_pipeline_config(data: Mapping[str, Any]) -> bool:
    """True for a mapping that is a pipeline config (it has the schema's required top-level keys
    or a dataset sheet), not a plain dataset entry or settings mapping."""
    return any(key in data for key in ("datasets", "dataset_sheet", "corpus", "finetune", "pretrain"))
