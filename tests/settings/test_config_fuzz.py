"""Property-based tests of the config checks: each key of a valid config is mutated (a value of
the wrong type, a number out of its bounds, null, an unknown key beside it) and the config goes
through what `snakemake` and `rnaret settings` run on it, in process: the schema with its
defaults (``validate_config``) and the resolver (``Plan``). Every mutation that the schema does
not allow must be refused with a ``SettingsError`` naming the key: never another exception (a
traceback), never accepted (a silent nonsense run). The command line's ``--set`` goes through
the same bounds (``resolve_task_settings``), checked the same way.

Derandomized (the same cases on every run); 2,400 cases in all (``RNARET_FUZZ_EXAMPLES``
scales them).
"""
from __future__ import annotations

import copy
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from rnaret.settings import Plan, SettingsError, read_config_file, validate_config
from rnaret.settings.errors import key_path
from rnaret.settings.files import CONFIG_SCHEMA, _schema
from rnaret.tasks.settings import TASK_DEFAULTS, resolve_task_settings

from conftest import ROOT

SCALE = int(os.environ.get("RNARET_FUZZ_EXAMPLES", "2000")) / 2000


def fuzz(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


SCHEMA = _schema(str(CONFIG_SCHEMA))
BASE = read_config_file(ROOT / "config.yaml")


def resolve_ref(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SCHEMA["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def leaf_schemas(schema: dict, value, path: tuple):
    """(path, schema) of every key the filled config holds, at every depth, as the schema sees it."""
    schema = resolve_ref(schema)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            if sub_schema is None:
                for pattern, candidate in schema.get("patternProperties", {}).items():
                    sub_schema = candidate
            if sub_schema is None:
                continue
            yield path + (key,), sub_schema
            yield from leaf_schemas(sub_schema, sub, path + (key,))


def filled(config: dict) -> dict:
    return validate_config(copy.deepcopy(config))


# every task setting and pretraining field set explicitly, so that each one is mutated too
EXPLICIT = copy.deepcopy(BASE)
for _task in TASK_DEFAULTS:
    _block = EXPLICIT.setdefault("finetune", {}).setdefault(_task, {})
    _block["settings"] = {k: v for k, v in resolve_task_settings(_task, {"preset": "laptop"}).items()
                          if k in SCHEMA["definitions"]["task_settings"]["properties"]}
    _block["model_settings"] = {"onehot": {"batch_size": 4}}
EXPLICIT.setdefault("pretrain", {})["overrides"] = {"max_steps": 10, "lr": 1.0e-3, "mask_prob": 0.15, "seed": 1,
                                                    "max_rows": None, "keep_last": 2}
FILLED = filled(EXPLICIT)
LEAVES = [(p, s) for p, s in leaf_schemas(SCHEMA, FILLED, ()) if resolve_ref(s).get("description", "")[:13]
          != "refused here:"]
NUMERIC = [(p, resolve_ref(s)) for p, s in LEAVES
           if any(b in resolve_ref(s) for b in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"))]
OBJECTS = [(p, resolve_ref(s)) for p, s in LEAVES if resolve_ref(s).get("additionalProperties") is False]


def allowed(schema: dict, value) -> bool:
    return Draft202012Validator({"definitions": SCHEMA["definitions"], **resolve_ref(schema)}).is_valid(value)


def set_at(config: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(config)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)   # validation fills defaults into mappings
    return out


def check(config: dict, path: tuple, should_fail: bool) -> None:
    """Validate and resolve ``config``: refused naming ``path`` when ``should_fail``."""
    try:
        Plan(validate_config(config))
    except SettingsError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 400, message
        if should_fail:
            assert key_path(*path) in message, (key_path(*path), message)
        else:   # the schema allows it; the resolver's own checks (files, presets, k) refuse it
            assert any(key_path(*path[:n]) in message for n in range(len(path), 0, -1)), message
        return
    assert not should_fail, f"{key_path(*path)}: accepted a value the schema refuses"


def test_the_fuzzed_config_is_valid_and_covers_every_bounded_key():
    Plan(validate_config(copy.deepcopy(EXPLICIT)))
    bounded = {p[-1] for p, _ in NUMERIC}
    for key in ("epochs", "lr", "batch_size", "valid_fraction", "threshold", "mask_prob", "threads", "mem_mb",
                "min_identity", "tokens_per_shard"):
        assert key in bounded, key
    assert len(LEAVES) > 150 and len(NUMERIC) > 80 and len(OBJECTS) > 15


def test_every_numeric_key_of_the_schema_has_a_bound():
    def walk(schema, where):
        schema = resolve_ref(schema)
        types = schema.get("type", [])
        types = [types] if isinstance(types, str) else types
        if {"integer", "number"} & set(types) and where[-1] != "items" or schema.get("items", {}).get("type") in (
                "integer", "number"):
            target = schema if {"integer", "number"} & set(types) else schema["items"]
            assert any(b in target for b in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                                              "enum")), where
        for key, sub in schema.get("properties", {}).items():
            walk(sub, where + (key,))
        for key in ("additionalProperties", "items"):
            if isinstance(schema.get(key), dict):
                walk(schema[key], where + (key,))
        for key in ("oneOf", "anyOf"):
            for sub in schema.get(key, []):
                walk(sub, where + (key,))
    walk(SCHEMA, ("(top)",))
    for name, definition in SCHEMA["definitions"].items():
        walk(definition, (name,))


WRONG_TYPES = st.sampled_from(["text", "3e-4", 3.5, -7, 0, True, [1, 2], {"a": 1}, "", 10**12])


@fuzz(900)
@given(st.sampled_from(LEAVES), WRONG_TYPES)
def test_a_value_of_another_type_is_refused_naming_the_key(leaf, value):
    path, schema = leaf
    check(set_at(FILLED, path, value), path, should_fail=not allowed(schema, value))


@st.composite
def out_of_range(draw):
    path, schema = draw(st.sampled_from(NUMERIC))
    integer = "integer" in (schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")])
    step = draw(st.integers(1, 10**6)) if integer else draw(st.floats(1e-9, 1e6))
    candidates = []
    for bound, sign in (("minimum", -1), ("maximum", 1)):
        if bound in schema:
            candidates.append(schema[bound] + sign * step)
        exclusive = "exclusive" + bound[0].upper() + bound[1:]
        if exclusive in schema:   # the bound itself is out, and so is anything beyond it
            candidates += [schema[exclusive], schema[exclusive] + sign * step]
    value = draw(st.sampled_from(candidates))
    return path, schema, int(value) if integer and float(value).is_integer() else value


@fuzz(700)
@given(out_of_range())
def test_a_number_out_of_its_bounds_is_refused_naming_the_key(case):
    path, schema, value = case
    assert not allowed(schema, value), (path, value)   # the strategy leaves the bounds every time
    check(set_at(FILLED, path, value), path, should_fail=True)


@fuzz(300)
@given(st.sampled_from(LEAVES))
def test_null_is_refused_naming_the_key_unless_the_schema_allows_it(leaf):
    path, schema = leaf
    check(set_at(FILLED, path, None), path, should_fail=not allowed(schema, None))


@fuzz(300)
@given(st.sampled_from(OBJECTS), st.from_regex(r"[a-z][a-z_]{1,12}", fullmatch=True))
def test_an_unknown_key_is_refused_naming_it(block, name):
    path, schema = block
    if name in schema.get("properties", {}):
        return
    config = set_at(FILLED, path + (name,), 1) if path else {**copy.deepcopy(FILLED), name: 1}
    check(config, path + (name,), should_fail=True)


TASK_KEYS = sorted(SCHEMA["definitions"]["task_settings"]["properties"])


@fuzz(200)
@given(st.sampled_from(sorted(TASK_DEFAULTS)), st.sampled_from(TASK_KEYS),
       st.one_of(WRONG_TYPES, st.integers(-10**6, 0), st.floats(-1e6, 0), st.none()))
def test_the_command_line_settings_go_through_the_same_bounds(task, key, value):
    """`rnaret finetune --set KEY=VALUE` (``resolve_task_settings``, the resolver of the run)."""
    schema = SCHEMA["definitions"]["task_settings"]["properties"][key]
    known = key in resolve_task_settings(task, {})
    try:
        resolve_task_settings(task, {key: value, **({"preset": "laptop"} if key != "preset" else {})})
    except SettingsError as exc:
        assert f"setting {key}:" in str(exc), str(exc)
        # out of bounds, or a key this task does not know (the schema holds every task's keys)
        assert not allowed(schema, value) or (not known and f"unknown {task} setting" in str(exc)), str(exc)
        return
    assert allowed(schema, value) and known, (task, key, value)


@pytest.mark.parametrize("text, words", [
    ("finetune:\n  coding:\n    settings: {epochs: -3}\n", ["finetune.coding.settings.epochs", "minimum of 1"]),
    ("finetune:\n  coding:\n    settings: {lr: 3e-4}\n", ["finetune.coding.settings.lr", "write 3.0e-4"]),
    ("pretrain:\n  overrides: {lrr: 1}\n", ["pretrain.overrides.lrr", "did you mean 'lr'"]),
    ("finetun: {}\n", ["unknown key 'finetun'", "did you mean 'finetune'"]),
    ("finetune:\n  coding:\n    settings: {epochs: 3\n", ["extra.yaml", "line 4, column 1", "not valid YAML"]),
])
def test_settings_check_names_the_key_or_the_line(tmp_path, capsys, text, words):
    from rnaret.cli import main

    extra = tmp_path / "extra.yaml"
    extra.write_text(text)
    assert main(["settings", "check", str(ROOT / "config.yaml"), str(extra)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


def test_settings_check_passes_a_good_config(capsys):
    from rnaret.cli import main

    assert main(["settings", "check", str(ROOT / "config.yaml")]) == 0
    assert "config.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("setting, words", [("epochs=-3", "setting epochs: -3 is less than the minimum of 1"),
                                            ("lr=0", "setting lr: 0 is less than or equal to the minimum of 0"),
                                            ("valid_fraction=1.5", "setting valid_fraction: 1.5"),
                                            ("epoch=3", "did you mean 'epochs'")])
def test_finetune_set_is_refused_naming_the_key_and_writes_nothing(tmp_path, capsys, setting, words):
    from rnaret.cli import main

    out = tmp_path / "model"
    assert main(["finetune", "--task", "coding", "--init", "onehot", "--out", str(out), "--set", setting,
                 "--dataset-config", str(ROOT / "config.yaml"), "--dataset", "mouse", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []
