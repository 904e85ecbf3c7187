"""docs/settings-reference.md is generated from workflow/schemas/config.schema.yaml
(rnaret.settings.reference) and must equal what the schema generates now, so it cannot drift."""
from __future__ import annotations

import yaml

from conftest import ROOT
from rnaret.settings import reference

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def test_the_page_is_what_the_schema_generates():
    page = (ROOT / "docs/settings-reference.md").read_text(encoding="utf-8")
    assert page == reference.render(SCHEMA), "docs/settings-reference.md is out of date: run python -m rnaret.settings.reference"


def test_every_key_of_the_schema_is_on_the_page():
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    page = reference.render(SCHEMA)

    def keys(prefix, node):
        node = reference._resolve(node, schema)
        for name, child in (node.get("properties") or {}).items():
            yield f"{prefix}.{name}" if prefix else name
            yield from keys(f"{prefix}.{name}" if prefix else name, child)

    listed = list(keys("", schema))
    assert len(listed) > 50
    for key in listed:
        assert f"`{key}`" in page, key


def test_defaults_types_and_bounds_come_from_the_schema():
    page = reference.render(SCHEMA).splitlines()
    row = next(line for line in page if line.startswith("| `pretrain.preset` |"))
    assert '`"laptop"`' in row and '`"paper"`' in row and '`"tiny"`' in row
    row = next(line for line in page if line.startswith("| `leakage.min_identity` |"))
    assert "`0.8`" in row and "<= 1" in row and "> 0" in row


def test_a_changed_default_shows_and_the_check_fails(tmp_path):
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    schema["properties"]["leakage"]["properties"]["min_identity"]["default"] = 0.75
    changed = tmp_path / "schema.yaml"
    changed.write_text(yaml.safe_dump(schema, sort_keys=False), encoding="utf-8")
    row = next(line for line in reference.render(changed).splitlines() if line.startswith("| `leakage.min_identity` |"))
    assert "`0.75`" in row
    page = tmp_path / "page.md"
    page.write_text(reference.render(SCHEMA), encoding="utf-8")
    assert reference.main(["--schema", str(SCHEMA), "--output", str(page), "--check"]) == 0
    assert reference.main(["--schema", str(changed), "--output", str(page), "--check"]) == 1
