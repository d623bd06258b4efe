"""``rs-repro compute``: a chapter computed with neither Jupyter, papermill, jupytext nor Sphinx importable,
as on a GPU machine or a cluster node (``rs_repro.pipeline.headless``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from rs_repro.pipeline import parameters, paths

#: Top-level packages a headless computation must not import; the test makes them unimportable.
JUPYTER = ("papermill", "jupytext", "nbformat", "nbclient", "IPython", "ipykernel", "jupyter_client",
           "jupyter_core", "jupyter_book", "myst_nb", "sphinx", "traitlets")
#: The preamble of a Python process in which the packages of :data:`JUPYTER` cannot be imported.
BLOCKED = textwrap.dedent(f"""
    import importlib.abc, sys
    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {JUPYTER!r}:
                raise ImportError(f"{{name}} is blocked in this test")
    sys.meta_path.insert(0, Blocked())
""")
#: The theory chapter at a size computed in seconds.
TINY = [("dims", "[8, 32]"), ("certify_n", "1000"), ("mc_samples", "64"), ("vote_reps", "64"), ("n_max", "12"),
        ("betas", "[0.0, 1.0]")]


def _python(code: str, build) -> subprocess.CompletedProcess:
    env = {**os.environ, "RS_REPRO_BUILD": str(build), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", BLOCKED + textwrap.dedent(code)], check=False, cwd=paths.ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_blocker_blocks(tmp_path):
    done = _python("import papermill", tmp_path)
    assert done.returncode != 0 and "blocked in this test" in done.stderr


def test_every_chapter_and_the_command_line_import_without_jupyter(tmp_path):
    stems = [stem for stem in parameters.chapters() if parameters.compute_module(stem)]
    done = _python(f"""
        import importlib
        from rs_repro.pipeline import cli, headless
        for stem in {stems!r}:
            importlib.import_module(f"rs_repro.chapters.{{stem}}.compute")
            importlib.import_module(f"rs_repro.chapters.{{stem}}.page")
        print("imported")
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout


def test_the_compute_halves_import_no_presentation():
    stems = [stem for stem in parameters.chapters() if parameters.compute_module(stem)]
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import importlib, sys
        for stem in {stems!r}:
            importlib.import_module(f"rs_repro.chapters.{{stem}}.compute")
        shown = ("matplotlib", "seaborn", "IPython", "rs_repro.report", "rs_repro.claims")
        print(sorted(m for m in sys.modules if m.startswith(shown) or m.endswith(".page")))
    """)], check=False, cwd=paths.ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_compute_writes_the_record_and_the_tables_without_jupyter(tmp_path):
    overrides = [item for key, value in TINY for item in ("-p", key, value)]
    done = _python(f"""
        import sys
        from rs_repro.pipeline import cli
        sys.exit(cli.main(["compute", "theory", "--profile", "smoke", *{overrides!r}]))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "results" / "theory" / "tables" / "smoke"
    manifest = json.loads((folder / "computed.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["values"]["dims"] == [8, 32]
    assert manifest["run"]["misses"] == len(manifest["units"]) and manifest["run"]["hits"] == 0
    for uid, entry in manifest["units"].items():
        table = pd.read_csv(folder / f"{uid}.csv")
        assert len(table) == entry["rows"]
        cached = list((tmp_path / "cache" / "theory").glob(f"{uid}-{entry['key']}.csv"))
        assert len(cached) == 1 and cached[0].read_bytes() == (folder / f"{uid}.csv").read_bytes()
    record = json.loads((tmp_path / "results" / "theory" / "measurements" / "smoke.json").read_text())
    assert record["profile"] == "smoke" and record["values"]

    again = _python(f"""
        import sys
        from rs_repro.pipeline import cli
        sys.exit(cli.main(["compute", "theory", "--profile", "smoke", *{overrides!r}]))
    """, tmp_path)
    assert again.returncode == 0, again.stderr
    second = json.loads((folder / "computed.json").read_text())
    assert second["run"]["hits"] == len(second["units"]) and second["units"] == manifest["units"]

    fresh = _python(f"""
        import sys
        from rs_repro.pipeline import cli
        sys.exit(cli.main(["compute", "theory", "--profile", "smoke", *{overrides!r}, "-p", "use_cache", "false"]))
    """, tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    third = json.loads((folder / "computed.json").read_text())  # the chapter's use_cache: false recomputes all
    assert third["run"]["misses"] == len(third["units"]) and third["units"] == manifest["units"]
    assert not list(folder.parent.glob(".smoke-*"))  # no staging or backup folder left behind


@pytest.mark.parametrize("argv, message", [
    (["compute", "claims", "--profile", "smoke"], "chapter 'claims' computes nothing"),
    (["compute", "theory", "--profile", "smoke", "-p", "sigmas", "[]"], "sigmas="),
    (["compute", "theory", "--profile", "smoke", "-p", "sigmaz", "[0.1]"], "unknown parameter(s) 'sigmaz'"),
])
def test_compute_refuses_before_anything_runs(argv, message, tmp_path):
    done = _python(f"""
        import sys
        from rs_repro.pipeline import cli
        sys.exit(cli.main({argv!r}))
    """, tmp_path)
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "cache").exists()
