"""The conda environments (envs/*.yaml and the seqkit wrapper's): every dependency pinned to one
version; the pins agree with each other, with constraints.txt and with install.sh's torch pin;
every package name is one we know how to check (none is skipped unseen); the packages installed
here satisfy the pins (a package not installed here is a visible skip). The running Python must
have the pinned major.minor only: a conda environment brings its own Python, and Debian 12's
python3 (3.11.2) runs the same wheels as the pinned 3.11.7."""
from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

ENV_FILES = sorted((ROOT / "envs").glob("*.yaml")) + [ROOT / "workflow/wrappers/seqkit/environment.yaml"]
CONDA_PIN = re.compile(r"^[A-Za-z0-9_.\-]+(?:::)?[A-Za-z0-9_.\-]*\s*==?\s*[0-9][A-Za-z0-9_.+\-]*$")
PIP_PIN = re.compile(r"^[A-Za-z0-9_.\-\[\],]+==[0-9][A-Za-z0-9_.+\-]*$")
# conda name -> the Python distribution installed by pip whose version the pin must equal;
# pytorch-cpu / pytorch-gpu are conda-forge's metapackages that select the CPU or CUDA build
DISTRIBUTIONS = {"numpy": "numpy", "pandas": "pandas", "biopython": "biopython", "pyyaml": "PyYAML",
                 "tqdm": "tqdm", "rich": "rich", "pytorch": "torch", "pytorch-cpu": "torch",
                 "pytorch-gpu": "torch", "scikit-learn": "scikit-learn", "safetensors": "safetensors",
                 "viennarna": "ViennaRNA", "matplotlib": "matplotlib", "matplotlib-base": "matplotlib",
                 "fastapi": "fastapi", "uvicorn": "uvicorn", "python-multipart": "python-multipart"}
# conda packages that are not Python distributions, and how each is checked
NOT_DISTRIBUTIONS = {
    "python": "the running interpreter's major.minor",
    "seqkit": "the `seqkit version` of the binary on PATH",
    "cuda-version": "the CUDA runtime of the GPU build; nothing to compare on a CPU machine",
}


def dependencies(path):
    """(kind, name, version) of every dependency of an environment file, pip sub-lists included."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data.get("dependencies"), f"{path}: no dependencies"
    for entry in data["dependencies"]:
        specs = [("pip", s) for s in entry.get("pip", [])] if isinstance(entry, dict) else [("conda", entry)]
        for kind, spec in specs:
            spec = str(spec).replace(" ", "")
            name, _, version = re.split(r"(==?)", spec, maxsplit=1)
            yield kind, name.split("::")[-1], version


def all_pins():
    """(env file, conda name, version) of every dependency of every environment."""
    return [(path, name, version) for path in ENV_FILES for _, name, version in dependencies(path)]


def constraints() -> dict[str, str]:
    """constraints.txt as {distribution (lower case): version}."""
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.lower()] = version
    return out


def test_the_stage_environments_exist():
    assert {p.stem for p in (ROOT / "envs").glob("*.yaml")} >= {"data", "model", "model-gpu", "vienna",
                                                                 "report", "serve"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dependency_is_pinned_exactly(path):
    data = yaml.safe_load(path.read_text())
    for entry in data["dependencies"]:
        for kind, spec in ([("pip", s) for s in entry.get("pip", [])] if isinstance(entry, dict)
                           else [("conda", entry)]):
            pattern = PIP_PIN if kind == "pip" else CONDA_PIN
            spec = str(spec).replace(" ", "")
            assert pattern.match(spec), f"{path.name}: {spec!r} is not pinned to one version"
            assert "*" not in spec and "<" not in spec and ">" not in spec and "," not in spec.split("=")[-1]


def test_unpinned_specs_are_rejected():
    for spec in ("numpy", "numpy>=2", "numpy=2.*", "numpy=2.4.*", "numpy 2.4"):
        assert not CONDA_PIN.match(spec.replace(" ", "")), spec
    assert CONDA_PIN.match("numpy=2.4.6") and CONDA_PIN.match("seqkit==2.3.0")


def test_every_package_is_one_we_can_check():
    unknown = sorted({f"{path.name}: {name}" for path, name, _ in all_pins()
                      if name not in DISTRIBUTIONS and name not in NOT_DISTRIBUTIONS})
    assert not unknown, f"add these to DISTRIBUTIONS or NOT_DISTRIBUTIONS (how to check them): {unknown}"


def test_pins_agree_across_environments():
    """One version per distribution (and one Python) in every environment."""
    versions: dict[str, set[tuple[str, str]]] = {}
    for path, name, version in all_pins():
        key = DISTRIBUTIONS.get(name, name)
        versions.setdefault(key, set()).add((version, path.name))
    disagree = {key: sorted(v) for key, v in versions.items() if len({version for version, _ in v}) > 1}
    assert not disagree, disagree


def test_the_model_environments_differ_only_in_the_torch_build():
    def pins(name):
        return {n: v for _, n, v in dependencies(ROOT / "envs" / f"{name}.yaml")}

    cpu, gpu = pins("model"), pins("model-gpu")
    assert cpu.pop("pytorch-cpu") == gpu.pop("pytorch-gpu")
    assert gpu.pop("cuda-version")
    assert cpu == gpu


def test_pins_agree_with_constraints_and_install_sh():
    """install.sh installs torch at its own pin and everything else with -c constraints.txt: a
    pip install must get the versions the conda environments pin."""
    pinned = constraints()
    torch_pin = re.search(r'"torch==([0-9][^"]*)"', (ROOT / "install.sh").read_text())
    assert torch_pin, "install.sh pins no torch version"
    for path, name, version in all_pins():
        dist = DISTRIBUTIONS.get(name)
        if dist is None:
            continue
        if dist == "torch":
            assert version == torch_pin.group(1), f"{path.name}: {name}={version} but install.sh has torch=={torch_pin.group(1)}"
            continue
        assert dist.lower() in pinned, f"{path.name}: {name} is not in constraints.txt"
        assert pinned[dist.lower()] == version, f"{path.name}: {name}={version} but constraints.txt has {pinned[dist.lower()]}"


def _installed_cases():
    seen = {}
    for path, name, version in all_pins():
        dist = DISTRIBUTIONS.get(name)
        if dist is not None:
            seen.setdefault(dist, (version, path.name))
    return sorted((dist, version, where) for dist, (version, where) in seen.items())


@pytest.mark.parametrize("dist, version, where", _installed_cases(), ids=lambda v: str(v))
def test_installed_packages_satisfy_the_pins(dist, version, where):
    try:
        installed = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed here (pinned {version} in {where})")
    assert installed.split("+")[0] == version, f"{where}: {dist} pinned {version}, {installed} installed"


def test_python_pins_name_the_running_minor_version():
    pins = {version for _, name, version in all_pins() if name == "python"}
    assert len(pins) == 1
    minor = ".".join(next(iter(pins)).split(".")[:2])
    assert minor == f"{sys.version_info.major}.{sys.version_info.minor}", \
        f"the environments pin Python {next(iter(pins))}, this is {sys.version.split()[0]}"


def test_the_seqkit_binary_has_the_pinned_version():
    (version,) = {v for _, name, v in all_pins() if name == "seqkit"}
    if shutil.which("seqkit") is None:
        pytest.skip(f"seqkit is not installed here (pinned {version})")
    out = subprocess.run(["seqkit", "version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"seqkit v{version}"
