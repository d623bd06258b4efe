"""The two descriptions of the environment agree, and the setup pins what the guide requires."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from test_browser import CHROME_ENV, DRIVER_ENV, INSTALL

from rs_repro.pipeline import paths


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
    assert _pyproject()["project"]["scripts"]["rs-repro"] == "rs_repro.pipeline.cli:main"
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


INSTALL_SCRIPT = paths.ROOT / "tests" / "install_browser.sh"


def test_make_test_installs_the_browser_and_ci_just_runs_make_test():
    makefile = (paths.ROOT / "Makefile").read_text()
    assert "browser" in re.search(r"^test:(.*)$", makefile, re.MULTILINE).group(1).split()
    assert "bash tests/install_browser.sh" in re.search(r"^browser:\n\t(.*)$", makefile, re.MULTILINE).group(1)
    commands = [line for line in (paths.ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert commands == ["make test"]


def _fake_tools(folder: Path, uid: int, sudo_ok: bool) -> Path:
    """``id``, ``sudo`` and ``apt-get`` stand-ins that record their calls in ``folder/calls``."""
    folder.mkdir(exist_ok=True)
    calls = folder / "calls"
    calls.unlink(missing_ok=True)
    run_as_root = 'shift; exec "$@"' if sudo_ok else "exit 1"  # sudo -n COMMAND...
    tools = {"id": f"echo {uid}", "sudo": f'echo "sudo $*" >> {calls}; {run_as_root}',
             "apt-get": f'echo "apt-get $*" >> {calls}'}
    for name, body in tools.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return calls


def _install(tmp_path: Path, uid: int, sudo_ok: bool = False, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    calls = _fake_tools(tmp_path / "bin", uid, sudo_ok)
    environ = {k: v for k, v in os.environ.items() if k not in (CHROME_ENV, DRIVER_ENV)}
    environ.update(env, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    done = subprocess.run(["bash", str(INSTALL_SCRIPT), str(tmp_path / "chromium"), str(tmp_path / "chromedriver")],
                          env=environ, capture_output=True, text=True, check=False)
    return done, calls.read_text() if calls.exists() else ""


@pytest.mark.parametrize("uid, sudo_ok", [(0, False), (1000, True)])
def test_install_browser_installs_debian_packages_as_root_or_with_sudo(tmp_path, uid, sudo_ok):
    done, calls = _install(tmp_path, uid, sudo_ok)
    assert done.returncode == 0, done.stderr
    assert "install -y -q --no-install-recommends chromium chromium-driver" in calls
    assert ("sudo -n" in calls) == (uid != 0)


def test_install_browser_without_rights_says_how_and_lets_the_other_tests_run(tmp_path):
    done, calls = _install(tmp_path, 1000, sudo_ok=False)
    assert done.returncode == 0
    assert "apt-get" not in calls.replace("sudo -n true", "")
    assert "sudo apt-get install -y chromium chromium-driver" in done.stderr and INSTALL in done.stderr


def test_install_browser_leaves_a_given_browser_alone(tmp_path):
    for name in ("chrome", "driver"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    done, calls = _install(tmp_path, 0, **{CHROME_ENV: str(tmp_path / "chrome"), DRIVER_ENV: str(tmp_path / "driver")})
    assert (done.returncode, done.stdout, done.stderr, calls) == (0, "", "", "")
    done, calls = _install(tmp_path, 0, **{CHROME_ENV: str(tmp_path / "absent")})
    assert done.returncode == 0 and calls == "" and "nothing is installed in their place" in done.stderr


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
