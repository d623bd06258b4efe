"""The two descriptions of the environment agree, and the setup pins what the guide requires."""

from __future__ import annotations

import tomllib

import yaml
from test_browser import CHROME_ENV, DRIVER_ENV

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


def _workflow(name: str) -> dict:
    workflow = yaml.safe_load((paths.ROOT / ".github" / "workflows" / name).read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the bare key `on` as the boolean true
    return workflow


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _step(workflow: dict, action: str) -> dict:
    return next(step for step in _steps(workflow) if step.get("uses", "").split("@")[0] == action)


def test_ci_entry_point_installs_the_browser():
    ci = (paths.ROOT / ".ci" / "run").read_text()
    assert "apt-get install" in ci and "chromium chromium-driver" in ci
    assert CHROME_ENV in ci and DRIVER_ENV in ci


def test_tests_workflow_runs_make_test_on_every_push_and_pull_request():
    workflow = _workflow("tests.yml")
    assert workflow["on"] == {"push": None, "pull_request": None}
    assert _step(workflow, "actions/setup-python")["with"]["python-version"] == "3.11"
    chrome = _step(workflow, "browser-actions/setup-chrome")
    assert chrome["with"]["install-chromedriver"] is True
    test = next(step for step in _steps(workflow) if step.get("run") == "make test")
    assert test["env"] == {CHROME_ENV: f"${{{{ steps.{chrome['id']}.outputs.chrome-path }}}}",
                           DRIVER_ENV: f"${{{{ steps.{chrome['id']}.outputs.chromedriver-path }}}}"}
    assert _step(workflow, "actions/upload-artifact")["with"]["path"].rstrip("/") == "build/screenshots"


def test_book_workflow_builds_on_tags_and_by_hand_and_deploys_to_pages():
    workflow = _workflow("book.yml")
    assert workflow["on"] == {"push": {"tags": ["v*"]}, "workflow_dispatch": None}
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    assert next(step["run"] for step in build["steps"] if "run" in step) == "make book"
    cache = _step(workflow, "actions/cache")["with"]
    assert cache["path"].split() == ["build/models", "build/cache"] and "${{ github.sha }}" in cache["key"]
    assert _step(workflow, "actions/upload-pages-artifact")["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert [step["uses"].split("@")[0] for step in deploy["steps"]] == ["actions/deploy-pages"]
