"""The results layout is written once: every ``results/`` path template of the code is a string
literal in ``rnaret/settings/`` (the stage modules, and the two file resolvers), each folder defined
once, and the workflow files take every path from there.

What is counted: in ``rnaret/**/*.py``, every string literal (f-strings included) whose text
starts with ``results/``, docstrings excepted (their examples are documentation, not paths the
code uses); in ``Snakefile`` and ``workflow/rules/*.smk``, every string literal holding
``results/`` anywhere (a shell command or an ``output:`` naming a path itself). Comments are not
string literals, so they are not counted."""
from __future__ import annotations

import ast
import io
import re
import tokenize

import pytest
import yaml

from conftest import ROOT
from rnaret.settings import Plan, validate_config

PREFIX = "results/"
WORKFLOW_FILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
PACKAGE_FILES = sorted((ROOT / "rnaret").rglob("*.py"))
LAYOUT = ROOT / "rnaret" / "settings"


def literal_text(token: str) -> str:
    """The text of a string token without its prefix letters and quotes (``f"results/{x}"`` ->
    ``results/{x}``)."""
    body = token.lstrip("rRbBfFuU")
    quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
    return body[len(quote):len(body) - len(quote)]


def string_tokens(text: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal of Python-like source (a .smk file tokenizes as Python)."""
    out, parts = [], None
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        name = tokenize.tok_name[token.type]
        if name == "STRING":
            out.append((token.start[0], literal_text(token.string)))
        elif name == "FSTRING_START":  # Python 3.12+: an f-string comes in parts
            parts = (token.start[0], [])
        elif name == "FSTRING_MIDDLE" and parts is not None:
            parts[1].append(token.string)
        elif name == "FSTRING_END" and parts is not None:
            out.append((parts[0], "".join(parts[1])))
            parts = None
    return out


def docstring_lines(text: str) -> set[int]:
    """The first lines of the docstrings of a module, its classes and functions."""
    lines = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                lines.add(first.lineno)
    return lines


def results_literals() -> list[tuple[str, int, str]]:
    """(file, line, text) of every counted ``results/`` literal (the module docstring says which)."""
    found = []
    for path in PACKAGE_FILES:
        text = path.read_text(encoding="utf-8")
        docs = docstring_lines(text)
        found += [(str(path.relative_to(ROOT)), line, value) for line, value in string_tokens(text)
                  if value.startswith(PREFIX) and line not in docs]
    for path in WORKFLOW_FILES:
        found += [(str(path.relative_to(ROOT)), line, value)
                  for line, value in string_tokens(path.read_text(encoding="utf-8")) if PREFIX in value]
    return found


def test_the_scan_reads_string_literals_and_skips_docstrings():
    source = 'def f():\n    """results/in/a/docstring"""\n    return f"results/x/{y}", \'results/z\'  # results/c\n'
    assert [v for _, v in string_tokens(source)] == ["results/in/a/docstring", "results/x/{y}", "results/z"]
    assert docstring_lines(source) == {2}


def test_every_results_path_template_is_defined_once_in_the_settings():
    found = results_literals()
    values = [value for _, _, value in found]
    # the scan finds the layout (it would pass trivially on an empty list)
    assert {"results/corpus", "results/{task}/{dataset}/{model}", "results/pretrain/{model}"} <= set(values), found
    outside = [(path, line, value) for path, line, value in found if not (ROOT / path).is_relative_to(LAYOUT)]
    assert outside == [], "results/ paths written outside rnaret/settings/ (take them from the stage modules)"
    twice = sorted({v for v in values if values.count(v) > 1})
    assert twice == [], [(p, line, v) for p, line, v in found if v in twice]
    nested = [(inner, outer) for inner in values for outer in values if inner.startswith(outer + "/")]
    assert nested == [], "a folder defined by its own literal and again inside another: derive it from the folder"


def template_regex(template: str) -> re.Pattern:
    """A template (``results/{task}/{dataset}``) as a regex matching its paths and what lies under them."""
    parts = re.split(r"(\{[^}]*\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "(/.*)?")


@pytest.mark.parametrize("config", ["config.yaml", ".test/config.yaml"])
def test_every_target_lies_under_a_template_of_the_layout(config):
    from workflow_copy import merged

    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    if config != "config.yaml":
        data = merged(data, yaml.safe_load((ROOT / config).read_text()))
    targets = Plan(validate_config(data)).targets()
    templates = [template_regex(value) for _, _, value in results_literals() if value.startswith(PREFIX)]
    assert len(targets) > 20
    assert [t for t in targets if not any(r.fullmatch(t) for r in templates)] == []


def test_the_workflow_names_no_results_path_itself():
    text = "\n".join(p.read_text(encoding="utf-8") for p in WORKFLOW_FILES)
    assert not re.search(r"^CORPUS\s*=\s*[\"']", text, re.MULTILINE), "CORPUS is the data stage's (PLAN.data.CORPUS)"
    assert [(p, line, v) for p, line, v in results_literals() if p.endswith((".smk", "Snakefile"))] == []
