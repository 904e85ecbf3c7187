"""The conda environments (envs/*.yaml and the seqkit wrapper's): every dependency pinned to one
version; the pins agree with each other, with constraints.txt and with install.sh's torch pin;
every package name is one we know how to check (none is skipped unseen); the packages installed
here satisfy the pins (a package not installed here is a visible skip). The running Python must
have the pinned major.minor only: a conda environment brings its own Python, and Debian 12's
python3 (3.11.2) runs the same wheels as the pinned 3.11.7."""
from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

ENV_FILES = sorted((ROOT / "envs").glob("*.yaml")) + sorted((ROOT / "workflow/wrappers").glob("*/environment.yaml"))
CONDA_PIN = re.compile(r"^[A-Za-z0-9_.\-]+(?:::)?[A-Za-z0-9_.\-]*\s*==?\s*[0-9][A-Za-z0-9_.+\-]*$")
PIP_PIN = re.compile(r"^[A-Za-z0-9_.\-\[\],]+==[0-9][A-Za-z0-9_.+\-]*$")
# conda name -> the Python distribution installed by pip whose version the pin must equal;
# pytorch-cpu / pytorch-gpu are conda-forge's metapackages that select the CPU or CUDA build
DISTRIBUTIONS = {"numpy": "numpy", "pandas": "pandas", "biopython": "biopython", "pyyaml": "PyYAML",
                 "tqdm": "tqdm", "rich": "rich", "pytorch": "torch", "pytorch-cpu": "torch",
                 "pytorch-gpu": "torch", "scikit-learn": "scikit-learn", "safetensors": "safetensors",
                 "viennarna": "ViennaRNA", "matplotlib": "matplotlib", "matplotlib-base": "matplotlib",
                 "fastapi": "fastapi", "uvicorn": "uvicorn", "python-multipart": "python-multipart",
                 "jsonschema": "jsonschema"}
# conda packages that are not Python distributions, and how each is checked
NOT_DISTRIBUTIONS = {
    "python": "the running interpreter's major.minor",
    "seqkit": "the `seqkit version` of the binary on PATH",
    "mmseqs2": "the `mmseqs version` of the binary on PATH",
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


# Debian 12's own python3, on which the README's set-up must work (install.sh makes its venv)
DEBIAN_PYTHON = "3.11.2"


def test_every_constraint_installs_on_debians_python():
    """A pinned release that requires a newer Python than Debian 12's fails the README's first
    command there (pymdown-extensions 13 requires >= 3.11.5), whatever Python runs the suite: the
    installed distributions' metadata says what each pin requires."""
    from packaging.specifiers import SpecifierSet

    checked, refused = 0, []
    for dist, version in constraints().items():
        try:
            meta = importlib.metadata.metadata(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        if meta["Version"].split("+")[0] != version:
            continue  # test_installed_packages_satisfy_the_pins reports it
        checked += 1
        requires = meta.get("Requires-Python")
        if requires and DEBIAN_PYTHON not in SpecifierSet(requires):
            refused.append(f"{dist}=={version} requires Python {requires}")
    assert checked >= 20, f"only {checked} pins of constraints.txt are installed here"
    assert not refused, f"constraints.txt pins releases that Python {DEBIAN_PYTHON} cannot install: {refused}"


def test_python_pins_name_the_running_minor_version():
    pins = {version for _, name, version in all_pins() if name == "python"}
    assert len(pins) == 1
    minor = ".".join(next(iter(pins)).split(".")[:2])
    assert minor == f"{sys.version_info.major}.{sys.version_info.minor}", \
        f"the environments pin Python {next(iter(pins))}, this is {sys.version.split()[0]}"


def test_the_mmseqs2_binary_has_the_pinned_version():
    (version,) = {v for _, name, v in all_pins() if name == "mmseqs2"}
    if shutil.which("mmseqs") is None:
        pytest.skip(f"mmseqs2 is not installed here (pinned {version})")
    out = subprocess.run(["mmseqs", "version"], capture_output=True, text=True, check=True).stdout
    # Debian's build reports 14-7e284+ds-1+b2 for bioconda's 14.7e284 (release 14, commit 7e284)
    assert out.strip().split("+")[0].replace("-", ".", 1) == version, out


def test_the_seqkit_binary_has_the_pinned_version():
    (version,) = {v for _, name, v in all_pins() if name == "seqkit"}
    if shutil.which("seqkit") is None:
        pytest.skip(f"seqkit is not installed here (pinned {version})")
    out = subprocess.run(["seqkit", "version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"seqkit v{version}"


# ------------------------------------------------------------------ what each rule imports

_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|(\s+)(\S+)\s*$")


def imported_modules(log: str) -> set[str]:
    """Top-level names of every module the processes writing ``log`` imported, from the
    ``import time:`` lines Python prints under PYTHONPROFILEIMPORTTIME."""
    return {m.group(2).split(".")[0] for m in map(_IMPORT_LINE.match, log.splitlines()) if m}


def our_imports() -> set[str]:
    """Top-level names of the third-party modules rnaret's code imports anywhere (statically,
    function-level imports included): what a rule's command may need from its environment.
    A module imported at run time but not by rnaret was imported by a package, either because
    that package requires it (then the package's own requirements bring it) or as an optional
    import the package lets fail (torch tries colorama, tabulate): neither is the rule's gap."""
    import ast

    names: set[str] = set()
    for path in (ROOT / "rnaret").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "rnaret"}


def provided(conda_names: list[str]) -> set[str]:
    """The Python distributions (lower case) an environment holds: its pinned packages mapped
    to their distributions, and everything those require, transitively (from the installed
    packages' metadata, markers evaluated here)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = default_environment()
    todo = [DISTRIBUTIONS[name] for name in conda_names if name in DISTRIBUTIONS]
    seen: set[str] = set()
    while todo:
        dist = todo.pop()
        key = dist.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            requirements = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requirements:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                todo.append(req.name)
    return seen


def _rule_environments(repo, configfile) -> dict[str, str | None]:
    """rule -> its conda environment file (relative), from Snakemake's own view of the workflow."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                                config_settings=ConfigSettings(configfiles=[configfile]),
                                snakefile=repo / "Snakefile", workdir=repo)._workflow
        return {rule.name: (os.path.relpath(str(rule.conda_env), repo) if rule.conda_env else None)
                for rule in workflow.rules}


def _logs_by_rule(repo, configfile) -> dict[str, list[str]]:
    """rule -> the log files its jobs wrote in the run, from `snakemake --detailed-summary`."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "--detailed-summary", "--configfile", str(configfile)],
                         cwd=repo, capture_output=True, text=True, check=True).stdout.splitlines()
    header = out[[i for i, line in enumerate(out) if line.startswith("output_file\t")][0]].split("\t")
    logs: dict[str, list[str]] = {}
    for line in out[out.index("\t".join(header)) + 1:]:
        row = dict(zip(header, line.split("\t")))
        for log in filter(None, (row.get("log-file(s)") or "").split(",")):
            if log not in logs.setdefault(row["rule"], []):
                logs[row["rule"]].append(log)
    return logs


@pytest.mark.slow
def test_every_rule_imports_only_what_its_environment_holds(local_rehearsal):
    """The rehearsal (tests/rehearsal.py: every rule type) ran with PYTHONPROFILEIMPORTTIME, so
    each job's log lists every module its command imported; each must come from a package of
    the rule's conda environment or from what those packages require."""
    local_rehearsal.check()
    repo = local_rehearsal.repo
    configfile = repo / "rehearsal.yaml"
    environments = _rule_environments(repo, configfile)
    logs = _logs_by_rule(repo, configfile)
    distributions = importlib.metadata.packages_distributions()
    ours = our_imports()
    unmapped = sorted(name for name in ours if name not in distributions)
    assert not unmapped, f"rnaret imports modules of no installed distribution: {unmapped}"
    gaps, checked = [], []
    for rule, files in sorted(logs.items()):
        env_file = environments[rule]
        modules = set().union(*(imported_modules((repo / f).read_text()) for f in files)) & ours
        if env_file is None or env_file.startswith("workflow/wrappers/"):
            # a shell command without Python (printf), or a wrapper: only seqkit runs in its env
            assert not modules, f"{rule} imports {sorted(modules)} without a conda environment of its own"
            continue
        have = provided([name for _, name, _ in dependencies(repo / env_file)])
        for module in sorted(modules):
            if not any(d.lower().replace("_", "-") in have for d in distributions[module]):
                gaps.append(f"{rule} ({env_file}) imports {module} ({', '.join(distributions[module])})")
        checked.append(rule)
    assert not gaps, "conda environments lack what their rules import: " + "; ".join(gaps)
    # every rule that ran Python was checked: the data stages, pretraining, fine-tuning, the
    # evaluations, ViennaRNA, tables, figures and the length-scaling benchmark
    assert {"download_corpus", "unpack_archive", "shard_tokens", "pretrain", "finetune", "evaluate_classifier",
            "evaluate_structure", "vienna", "tables", "length_scaling", "f1_distribution"} <= set(checked)
