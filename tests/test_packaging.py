"""The two descriptions of the environment agree, and the setup pins what the guide requires."""

from __future__ import annotations

import tomllib

import yaml

from rs_repro import paths


def _pyproject() -> dict:
    return tomllib.loads((paths.ROOT / "pyproject.toml").read_text())


def test_environment_yml_pins_the_same_versions_as_pyproject():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    wanted = set(project["dependencies"]) | set(extras["dev"]) | set(extras["bench"])
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip_section) - {"-e ."} == wanted
    assert "python=3.11" in env["dependencies"]


def test_book_stack_is_jupyter_book_1():
    deps = _pyproject()["project"]["dependencies"]
    jb = next(d for d in deps if d.startswith("jupyter-book"))
    version = jb.split("==")[1]
    assert version.startswith("1.") and tuple(map(int, version.split(".")[:3])) >= (1, 0, 4)
    assert "torch==2.13.0" not in deps
    assert all("==" in d for d in deps), "every runtime dependency is pinned"


def test_console_script_and_ci_entry_point():
    assert _pyproject()["project"]["scripts"]["rs-repro"] == "rs_repro.cli:main"
    ci = (paths.ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
