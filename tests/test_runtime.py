"""glibc malloc thresholds for the chapter kernels: environment, and their effect on freed memory."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from rs_repro.pipeline import runtime

# Allocates and touches 16 MiB, frees it, and prints how much of it the process still holds (from statm).
PROBE = """
import os, sys
from rs_repro.pipeline import runtime
if sys.argv[1] == "keep":
    assert runtime.keep_freed_memory()
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
before = rss()
block = b"x" * (16 << 20)
del block
print((rss() - before) / (16 << 20))
"""


def test_malloc_env_gives_the_thresholds_unless_the_caller_set_them(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert runtime.malloc_env() == {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "4096")
    assert runtime.malloc_env()["MALLOC_MMAP_THRESHOLD_"] == "4096"


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
@pytest.mark.parametrize(("how", "with_env", "kept"), [("default", False, False), ("keep", False, True),
                                                       ("default", True, True)])
def test_freed_blocks_stay_in_the_process_only_with_the_setting(how, with_env, kept, monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)  # the caller's own setting would win
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    env = runtime.malloc_env() if with_env else {}
    clean = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE, how], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    held = float(out.stdout)
    assert (held > 0.9) if kept else (held < 0.1), f"{how} with {env}: {held:.2f} of the freed 16 MiB still held"
