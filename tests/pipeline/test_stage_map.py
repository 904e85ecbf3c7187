"""The README's stage map (rule -> command -> module -> tests) and the three-line header of every
workflow/rules/*.smk file: every rule of the workflow is in the map, each rule's command is the
one its rule runs, and every file or folder the map and the headers name exists."""
from __future__ import annotations

import re

from conftest import ROOT

RULE = re.compile(r"^(?:rule|checkpoint)\s+(\w+)\s*:", re.MULTILINE)
CODE = re.compile(r"`([^`]+)`")
WORKFLOW_FILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]


def workflow_rules() -> dict[str, str]:
    """Rule name -> the text of its block in the Snakefile or a .smk file."""
    rules = {}
    for path in WORKFLOW_FILES:
        text = path.read_text(encoding="utf-8")
        starts = [(m.start(), m.group(1)) for m in RULE.finditer(text)]
        for (start, name), end in zip(starts, [s for s, _ in starts[1:]] + [len(text)]):
            rules[name] = text[start:end]
    return rules


def stage_map() -> list[tuple[list[str], str, list[str], list[str]]]:
    """The README's stage map: (rules, command cell, modules, tests) per row."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Stage map\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a stage map row needs 4 cells: {line}"
        rules, command, modules, tests = cells
        rows.append((CODE.findall(rules), command, CODE.findall(modules), CODE.findall(tests)))
    return rows


def named_paths(text: str) -> list[str]:
    """The repository paths in a header line: the comma-separated words holding a '/'."""
    return [word.split(" (")[0].strip() for word in text.split(",") if "/" in word.split(" (")[0]]


def test_every_rule_is_in_the_stage_map_once():
    rules = workflow_rules()
    assert len(rules) >= 20, sorted(rules)
    mapped = [rule for row in stage_map() for rule in row[0]]
    assert sorted(set(rules) - set(mapped)) == [], "rules missing from the README's stage map"
    assert sorted(set(mapped) - set(rules)) == [], "the stage map names rules the workflow does not have"
    assert len(mapped) == len(set(mapped)), "a rule appears twice in the stage map"


def test_every_file_the_stage_map_names_exists():
    rows = stage_map()
    for rules, _, modules, tests in rows:
        assert modules and tests, f"{rules}: a row needs a module and a test file"
        for path in modules + tests:
            assert (ROOT / path).exists(), f"{rules}: {path} does not exist"
        assert all(path.startswith("tests/") and path.endswith(".py") for path in tests), rules


def test_each_rule_runs_the_command_the_map_names():
    rules = workflow_rules()
    for names, command, _, _ in stage_map():
        for subcommand in re.findall(r"`rnaret ([a-z-]+)", command):
            for name in names:
                assert f"python -m rnaret {subcommand}" in rules[name], \
                    f"rule {name} does not run `rnaret {subcommand}`"
        if "wrapper" in command:
            for name in names:
                assert "wrapper:" in rules[name], f"rule {name} runs no wrapper"


def test_every_rules_file_opens_with_command_module_tests():
    for path in sorted((ROOT / "workflow/rules").glob("*.smk")):
        head = path.read_text(encoding="utf-8").splitlines()[:3]
        labels = [line.split(":", 1)[0] for line in head]
        assert labels == ["# Command", "# Module", "# Tests"], f"{path.name}: {head}"
        for line in head[1:]:
            paths = named_paths(line.split(":", 1)[1])
            assert paths, f"{path.name}: {line}"
            for named in paths:
                assert (ROOT / named).exists(), f"{path.name}: {named} does not exist"
        for subcommand in re.findall(r"`rnaret ([a-z-]+(?:\|[a-z-]+)*)", head[0]):
            for name in subcommand.split("|"):
                assert f"rnaret {name}" in path.read_text(encoding="utf-8").split("\n", 3)[3], \
                    f"{path.name}: its header names `rnaret {name}`, which none of its rules runs"
