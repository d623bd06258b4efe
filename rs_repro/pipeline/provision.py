"""The data a profile's chapters need, installed from Debian's packages when missing (``make book``).

Fashion-MNIST (the ``fashion`` profile, d = 784) comes from Debian's ``dataset-fashion-mnist``, which puts
its idx files in ``/usr/share/datasets/fashion-mnist``. Before a chapter runs, ``rs-repro run`` and
``rs-repro book`` call :func:`ensure`. A chapter that names no ``data_dir`` and whose dataset is missing from
its default place and from the package's folder gets that dataset's package installed, as root or through
passwordless ``sudo``; where neither is possible, or the installation fails, a :class:`MissingData` error
names the package and the chapter's ``data_dir`` parameter. A chapter that names a ``data_dir`` reads that
folder only: nothing is installed for it, and a folder that does not exist or lacks the files is a
:class:`MissingData` error naming it. Nothing is downloaded from anywhere but the machine's Debian mirror.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rs_repro import data

#: The Debian package that provides a dataset's files where :func:`rs_repro.data.load_dataset` looks.
DEBIAN_PACKAGES: dict[str, str] = {"fashion-mnist": "dataset-fashion-mnist"}

#: ``run(command) -> exit status``: how :func:`ensure` runs a command (``subprocess`` by default).
Runner = Callable[[Sequence[str]], int]


class MissingData(RuntimeError):
    """A chapter's dataset is missing and could not be installed; the message says how to provide it."""


def _run(command: Sequence[str]) -> int:
    done = subprocess.run(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)
    if done.returncode:
        print(done.stderr.strip()[-2000:], flush=True)
    return done.returncode


def _as_root(run: Runner) -> list[str] | None:
    """The prefix that runs a command as root: none for root, ``sudo -n`` where it needs no password."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and run(["sudo", "-n", "true"]) == 0:
        return ["sudo", "-n"]
    return None


def loadable(dataset: str, data_dir: str | Path | None) -> bool:
    """Whether :func:`rs_repro.data.load_dataset` finds the test split of ``dataset`` in ``data_dir`` (or,
    when it is empty, in the dataset's default places): False only when its files are missing; a corrupt
    file still raises."""
    try:
        data.load_dataset(dataset, "test", data_dir=data_dir or None)
    except FileNotFoundError:
        return False
    return True


def ensure(values: Mapping[str, Any], *, run: Runner | None = None) -> str | None:
    """Make the dataset of one chapter's parameters loadable, installing its Debian package if need be.

    Parameters
    ----------
    values : mapping
        The chapter's parameter values; only ``dataset`` and ``data_dir`` are read (a chapter without a
        ``dataset`` needs nothing). The package of ``dataset`` alone is installed, and only when
        ``data_dir`` is empty.
    run : callable, optional
        Runs a command and returns its exit status; ``subprocess`` by default (tests pass a fake).

    Returns
    -------
    str or None
        The package installed, or None when nothing had to be.

    Raises
    ------
    MissingData
        The files are missing and the package cannot be installed here (not root, no passwordless sudo, no
        apt-get, or apt-get failed); the message names the package and the ``data_dir`` parameter. Or
        ``data_dir`` is given and is not a folder, or lacks the dataset's files: the message names it, and
        nothing is installed.
    """
    run = run or _run
    dataset = values.get("dataset")
    package = DEBIAN_PACKAGES.get(str(dataset))
    data_dir = str(values.get("data_dir") or "")
    if package is None:
        return None
    if data_dir:
        if not Path(data_dir).is_dir():
            raise MissingData(f"data_dir={data_dir!r} is not an existing folder; expected the folder of the "
                              f"{dataset} files, or '' for Debian's {package}")
        if not loadable(dataset, data_dir):
            raise MissingData(f"dataset {dataset!r} not found in data_dir={data_dir!r}, and nothing is "
                              "installed for a data_dir: put the dataset's files there, or set data_dir to "
                              f"'' to read Debian's {package} (sudo apt-get install {package})")
        return None
    if loadable(dataset, None):
        return None
    advice = (f"install the Debian package {package} (sudo apt-get install {package}), or set the parameter "
              f"data_dir (now {values.get('data_dir')!r}) to a folder with the dataset's files")
    prefix = _as_root(run)
    if prefix is None or shutil.which("apt-get") is None:
        why = "this user can install no package" if prefix is None else "this machine has no apt-get"
        raise MissingData(f"dataset {dataset!r} not found and {why}: {advice}")
    print(f"[rs-repro] installing Debian's {package} for dataset {dataset!r}", flush=True)
    if run([*prefix, "apt-get", "update", "-q"]) or run([*prefix, "apt-get", "install", "-y", "-q", package]):
        raise MissingData(f"apt-get could not install {package} (its messages above): {advice}")
    if not loadable(dataset, None):
        raise MissingData(f"{package} is installed but dataset {dataset!r} is still not found: {advice}")
    return package
