"""Every conda environment file pins each dependency to an exact version (issue 3)."""
from __future__ import annotations

import importlib.metadata
import re

import pytest
import yaml

from conftest import ROOT

ENV_FILES = sorted((ROOT / "envs").glob("*.yaml")) + sorted((ROOT / "workflow/wrappers").glob("*/environment.yaml"))
CONDA_PIN = re.compile(r"^[A-Za-z0-9_.\-]+(?:::)?[A-Za-z0-9_.\-]*\s*==?\s*[0-9][A-Za-z0-9_.+\-]*$")
PIP_PIN = re.compile(r"^[A-Za-z0-9_.\-\[\],]+==[0-9][A-Za-z0-9_.+\-]*$")
# conda name -> installed Python distribution whose version the pin must equal
DISTRIBUTIONS = {"numpy": "numpy", "pandas": "pandas", "biopython": "biopython", "pyyaml": "PyYAML",
                 "tqdm": "tqdm", "rich": "rich", "pytorch": "torch", "scikit-learn": "scikit-learn",
                 "safetensors": "safetensors", "viennarna": "ViennaRNA", "matplotlib": "matplotlib",
                 "fastapi": "fastapi", "uvicorn": "uvicorn", "python-multipart": "python-multipart"}


def dependencies(path):
    """(kind, spec) of every dependency of an environment file, pip sub-lists included."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data.get("dependencies"), f"{path}: no dependencies"
    for entry in data["dependencies"]:
        if isinstance(entry, dict):
            for spec in entry.get("pip", []):
                yield "pip", str(spec)
        else:
            yield "conda", str(entry)


def test_the_stage_environments_exist():
    assert {p.stem for p in (ROOT / "envs").glob("*.yaml")} >= {"data", "model", "vienna", "report", "serve"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dependency_is_pinned_exactly(path):
    specs = list(dependencies(path))
    assert specs
    for kind, spec in specs:
        pattern = PIP_PIN if kind == "pip" else CONDA_PIN
        assert pattern.match(spec.replace(" ", "")), f"{path.name}: {spec!r} is not pinned to one version"
        assert "*" not in spec and "<" not in spec and ">" not in spec and "," not in spec.split("=")[-1]


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pins_match_the_versions_installed_here(path):
    for kind, spec in dependencies(path):
        name, version = re.split(r"==?", spec.replace(" ", ""), maxsplit=1)
        name = name.split("::")[-1]
        if name == "python":
            import sys
            assert version == ".".join(map(str, sys.version_info[:3])), f"{path.name}: {spec}"
            continue
        dist = DISTRIBUTIONS.get(name)
        if dist is None:
            continue
        try:
            installed = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        assert installed.split("+")[0] == version, f"{path.name}: {spec} but {dist} {installed} is installed"


def test_unpinned_specs_are_rejected():
    for spec in ("numpy", "numpy>=2", "numpy=2.*", "numpy=2.4.*", "numpy 2.4"):
        assert not CONDA_PIN.match(spec.replace(" ", "")), spec
    assert CONDA_PIN.match("numpy=2.4.6") and CONDA_PIN.match("seqkit==2.3.0")


def test_install_constraints_agree_with_the_environment_pins():
    """install.sh installs with ``-c constraints.txt``: each package both pin must have one version."""
    constraints = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            constraints[name.lower()] = version
    checked = 0
    for path in ENV_FILES:
        for _, spec in dependencies(path):
            name, version = re.split(r"==?", spec.replace(" ", ""), maxsplit=1)
            dist = DISTRIBUTIONS.get(name.split("::")[-1])
            if dist and dist.lower() in constraints:
                assert constraints[dist.lower()] == version, f"{path.name}: {spec} but constraints.txt has {dist}=={constraints[dist.lower()]}"
                checked += 1
    assert checked >= 10
