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


def _validator(schema_path):
    """A Draft 2020-12 validator for the schema file that fills defaults (as Snakemake's validate)."""
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
    return cls(schema)


def _check(record: dict, schema_path, path=None, line: int | None = None, prefix: str = "") -> dict:
    from jsonschema.exceptions import best_match

    validator = _validator(schema_path)
    # best_match descends into oneOf/anyOf to the branch that fits the value's type
    error = best_match(validator.iter_errors(record))
    if error is not None:
        key = key_path(*([prefix] if prefix else []), *error.absolute_path) or "(top level)"
        raise SettingsError(key, error.message, path=path, line=line)
    return record


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
