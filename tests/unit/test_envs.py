"""envs/osteoloc.yaml (conda) installs exactly the packages and versions pyproject.toml pins."""

import re
import tomllib

import yaml
from workflow_copy import REPO

ENV_FILE = REPO / "envs" / "osteoloc.yaml"


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _env():
    return yaml.safe_load(ENV_FILE.read_text())


def _normalise(requirement):
    """`Name==1.2` -> ('name', '1.2'), with PEP 503 name normalisation (case, '_' / '.' -> '-')."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)\s*", requirement)
    assert match, f"{requirement!r} is not an exact pin (name==version)"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2)


def _pip_section(env):
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "envs/osteoloc.yaml needs exactly one pip: section"
    return sections[0]


def test_pip_pins_equal_pyproject_dependencies():
    project = dict(_normalise(r) for r in _pyproject()["project"]["dependencies"])
    env = dict(_normalise(r) for r in _pip_section(_env()))
    assert env == project


def test_every_pyproject_dependency_is_an_exact_pin():
    for requirement in _pyproject()["project"]["dependencies"]:
        _normalise(requirement)


def test_python_version_matches_requires_python():
    conda_packages = [d for d in _env()["dependencies"] if isinstance(d, str)]
    pythons = [d for d in conda_packages if re.match(r"python\b", d)]
    assert pythons == ["python=3.11"]
    assert _pyproject()["project"]["requires-python"] == ">=3.11,<3.12"


def test_only_python_and_pip_come_from_conda():
    """Everything else from PyPI, so conda's builds cannot drift from the pip pins."""
    conda_packages = [d.split("=")[0] for d in _env()["dependencies"] if isinstance(d, str)]
    assert sorted(conda_packages) == ["pip", "python"]
