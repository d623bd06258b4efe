"""Session fixtures shared by the book tests: one smoke execution of every chapter, one HTML build, and a
synthetic ImageNet for the paper profiles."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import importlib
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from rs_repro import data, models
from rs_repro.pipeline import book, context, engine, parameters, paths


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test``: one worker a core), one torch thread a worker: two threads a worker
    on two cores would spin against each other and the other worker's kernels."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This test run's folder, shared by its processes (pytest-xdist gives each worker a folder below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def built_once(base: Path, name: str, *, wait: bool = True) -> Iterator[bool | None]:
    """Whether the caller must build ``name``, decided under the lock ``<base>/<name>.lock`` and held while it does:
    ``True`` (it counts as built once the block exits without an error), ``False`` (built before); with ``wait``
    false, ``None`` at once where another process holds the lock."""
    done = base / f"{name}.built"
    with open(base / f"{name}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        if done.exists():
            yield False
            return
        yield True
        done.touch()


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory) -> tuple[Path, dict[str, Path], Path]:
    """Every chapter executed with the smoke profile into a copy of the book skeleton, once per test run: the
    book's root, each chapter's published page, and the figures' folder.

    The test processes share the work: each runs the chapters no other one is running, then waits for the others
    (the summary chapter, which reads their records, last)."""
    base = shared_folder(tmp_path_factory)
    root = base / "book"
    chapters, figures = root / "book" / "chapters", root / "figures"
    with built_once(base, "book-skeleton") as build:
        if build:
            shutil.rmtree(root, ignore_errors=True)  # what a failed attempt left
            root.mkdir()
            for name in ("_config.yml", "_toc.yml"):
                shutil.copy(paths.ROOT / name, root / name)
            shutil.copytree(paths.BOOK, root / "book", ignore=shutil.ignore_patterns("chapters", "notebooks", "params"))
    *stems, summary = book.chapters()
    assert summary == book.SUMMARY_CHAPTER
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "RUNS", root / "runs")
        mp.setattr(paths, "BUILD", root / "build")  # where the runner computes and publishes
        mp.setenv("RS_REPRO_BUILD", str(root / "build"))  # where the kernels compute and read them
        for stem, wait in [(stem, wait) for wait in (False, True) for stem in stems] + [(summary, True)]:
            with built_once(base, f"book-{stem}", wait=wait) as build:
                if build:
                    book.run_chapter(stem, "smoke", {"figures_dir": str(figures)}, chapters_dir=chapters, timeout=600)
    return root, {stem: chapters / f"{stem}.ipynb" for stem in book.chapters()}, figures


@pytest.fixture(scope="session")
def smoke_html(smoke_book, tmp_path_factory) -> Path:
    """The smoke book rendered once per test run with warnings as errors; its ``index.html``."""
    root, _, _ = smoke_book
    with built_once(shared_folder(tmp_path_factory), "book-html") as build:
        if build:
            book.build_html(strict=True, root=root)
    return root / "_build" / "html" / "index.html"


def plan_units(stem: str, values: dict, tables: dict) -> list:
    """Every unit of chapter ``stem``'s plan for ``values``, its later steps worked out from ``tables`` (unit
    id to table, e.g. those of :func:`smoke_tables`) without computing anything."""
    compute = importlib.import_module(f"rs_repro.chapters.{stem}.compute")
    return [unit for stage in compute.plan(values) for unit in stage.units(tables)]


def computed_plan_units(stem: str, values: dict) -> list:
    """Every unit of chapter ``stem``'s plan for ``values``, the units of every step but the last computed in
    this process (not cached) to work out the steps after them."""
    done, work = {}, []
    *first, last = importlib.import_module(f"rs_repro.chapters.{stem}.compute").plan(values)
    for stage in first:
        units = stage.units(done)
        done.update({u.id: engine.compute_unit(u)[0] for u in units})
        work += units
    return work + last.units(done)


@pytest.fixture(scope="session")
def smoke_tables(smoke_book) -> dict[str, tuple[dict, dict]]:
    """Per chapter with a compute half, its smoke values and the tables of every unit of its plan (read back
    from the smoke book's cache)."""
    root, _, _ = smoke_book
    found = {}
    for stem in book.chapters():
        if parameters.compute_module(stem) is None:
            continue
        values = parameters.resolve_device(parameters.profile_values(stem, "smoke"))
        compute = importlib.import_module(f"rs_repro.chapters.{stem}.compute")
        found[stem] = values, engine.compute(stem, compute.plan(values), root=root / "build" / "cache")
    return found


#: The front matter of a MyST chapter source.
HEADER = """---
jupytext:
  text_representation: {extension: .md, format_name: myst, format_version: 0.13}
kernelspec: {display_name: Python 3, language: python, name: python3}
---
"""
#: A chapter that prints its parameter and the kernel's malloc setting, and raises when ``fail`` is true.
TINY = HEADER + """
# A chapter that can fail

```{code-cell} ipython3
:tags: [parameters]

seed: int = 0  # seed
fail: bool = False  # raise in the second cell
label: str = "first"  # text printed on the page
```

```{code-cell} ipython3
import os
print("label is", label, "mmap threshold", os.environ.get("MALLOC_MMAP_THRESHOLD_"))
```

```{code-cell} ipython3
if fail:
    raise RuntimeError("boom on purpose")
```
"""


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A book with one tiny chapter, ``tiny.md`` (:data:`TINY`), wired through paths so that run_chapter
    uses it; a test may add chapters to its ``notebooks`` and ``params/smoke`` folders."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "tiny.md").write_text(TINY)
    (tmp_path / "params" / "smoke").mkdir(parents=True)
    (tmp_path / "params" / "smoke" / "tiny.yml").write_text("seed: 0\nfail: false\nlabel: first\n")
    monkeypatch.setattr(paths, "NOTEBOOKS", tmp_path / "notebooks")
    monkeypatch.setattr(paths, "PARAMS", tmp_path / "params")
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    return tmp_path


#: Noisy copies of each image, and their noise, that the last layer of :func:`synthetic_imagenet` is fitted on.
FIT_COPIES, FIT_SIGMA = 3, 0.05


@pytest.fixture(scope="session")
def synthetic_imagenet(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny ILSVRC2012 validation folder and ResNet50 weights, for the paper profiles at micro sizes.

    The folder is in the ImageFolder layout :func:`rs_repro.data.load_dataset` reads for ``imagenet``: three
    wnids (labels 0, 1, 2), two JPEGs each of different sizes, each a smooth random colour field of its class
    with pixel noise. The weights are a torchvision ResNet50 state dict, randomly initialised, except its last
    layer: the classes 0 to 2 are fitted by least squares (logit +1 for the label, -1 for the two others) to
    the features of the images and of :data:`FIT_COPIES` noisy copies of each (Gaussian, :data:`FIT_SIGMA`),
    the 997 others get a bias of -10; so the model classifies every image correctly, under smoothing too,
    as the chapters that attack correctly classified images need.

    Returns
    -------
    root : Path
        The folder (``data_dir``).
    weights : Path
        The state dict (``standard_weights``), as :func:`rs_repro.models.load_imagenet_model` reads it.
    """
    tmp = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    root = tmp / "val"
    for wnid in ("n01440764", "n01443537", "n01484850"):
        (root / wnid).mkdir(parents=True)
        colours = rng.uniform(0, 255, size=(3, 4, 3))
        for i in range(2):
            field = np.clip(colours + rng.normal(0, 25, size=colours.shape), 0, 255).astype(np.uint8)
            size = (300, 240 + 20 * i)
            smooth = np.asarray(Image.fromarray(field).resize(size, Image.Resampling.BILINEAR), dtype=float)
            pixels = np.clip(smooth + rng.normal(0, 8, size=smooth.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / wnid / f"ILSVRC2012_val_{i:08d}.JPEG")
    with warnings.catch_warnings():  # 3 class folders, not 1000: load_dataset warns that labels differ
        warnings.simplefilter("ignore", UserWarning)
        images = data.load_dataset("imagenet", "test", data_dir=root)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torchvision.models.resnet50(weights=None).eval()
    noise = torch.Generator().manual_seed(0)
    x = torch.cat([images.x] + [images.x + FIT_SIGMA * torch.randn(images.x.shape, generator=noise)
                                for _ in range(FIT_COPIES)])
    fc, net.fc = net.fc, torch.nn.Identity()
    with torch.inference_mode():
        features = net(models.Normalize(models.IMAGENET_MEAN, models.IMAGENET_STD)(x)).double()
    net.fc = fc
    targets = 2.0 * torch.nn.functional.one_hot(images.y.repeat(FIT_COPIES + 1), 3).double() - 1
    fitted = torch.linalg.pinv(torch.cat([features, torch.ones(len(x), 1, dtype=torch.float64)], 1)) @ targets
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.fill_(-10.0)
        fc.weight[:3] = fitted[:-1].T.float()
        fc.bias[:3] = fitted[-1].float()
    weights = tmp / "resnet50.pth"
    torch.save(net.state_dict(), weights)
    return root, weights


#: Images per class of :func:`synthetic_fashion`'s training and test splits.
FASHION_TRAIN, FASHION_TEST = 60, 12


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8 values) as an idx file, gzipped when ``path`` ends in ``.gz``."""
    raw = bytes((0, 0, 0x08, array.ndim)) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


@pytest.fixture(scope="session")
def synthetic_fashion(tmp_path_factory) -> Path:
    """A small Fashion-MNIST in its four idx files (``data_dir`` for the fashion profile at smoke sizes).

    Ten classes, each a smooth random 28 x 28 template; an image is its class's template plus uniform pixel
    noise, :data:`FASHION_TRAIN` training and :data:`FASHION_TEST` test images per class, so the trained
    MLP classifies the test split correctly, under smoothing too. Returns the folder.
    """
    folder = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, size=(10, 7, 7)).astype(np.uint8)
    templates = np.stack([np.asarray(Image.fromarray(c).resize((28, 28), Image.Resampling.BILINEAR), float)
                          for c in coarse])
    for prefix, per_class in (("train", FASHION_TRAIN), ("t10k", FASHION_TEST)):
        y = np.repeat(np.arange(10), per_class)
        rng.shuffle(y)
        x = np.clip(templates[y] + rng.uniform(-30, 30, size=(len(y), 28, 28)), 0, 255)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    return folder


@pytest.fixture
def standins(tmp_path, monkeypatch) -> dict[str, str]:
    """Stand-ins for the local paths ``/data/val`` and ``/data/rn50.pth`` of the ImageNet profiles (the names mapped to them), and two CUDA devices: an
    ImageNet folder of 200 images (empty files: the rules count them, never decode them) with their labels, and
    a weights file holding a state dict (the rules read it with ``torch.load(weights_only=True)``)."""
    folder = tmp_path / "val"
    folder.mkdir()
    names = [f"ILSVRC2012_val_{k:08d}.JPEG" for k in range(1, 201)]
    for name in names:
        (folder / name).touch()
    (folder / "val.txt").write_text("".join(f"{name} {k % 1000}\n" for k, name in enumerate(names)))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "rn50.pth")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    return {"/data/val": str(folder), "/data/rn50.pth": str(tmp_path / "rn50.pth")}


def here(change: dict, standins: dict[str, str]) -> dict:
    """``change`` with the local paths ``/data/val`` and ``/data/rn50.pth`` replaced by their stand-ins on this machine."""
    return {k: standins.get(v, v) if isinstance(v, str) else v for k, v in change.items()}


def in_run(monkeypatch: pytest.MonkeyPatch, **fields) -> None:
    """Make this test's process look like a chapter kernel whose run context has ``fields``
    (:class:`rs_repro.pipeline.context.RunContext`)."""
    monkeypatch.setenv(context.CONTEXT_ENV, context.RunContext(**fields).environment()[context.CONTEXT_ENV])
