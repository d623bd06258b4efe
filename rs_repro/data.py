"""Datasets as tensors in [0, 1]: the embedded digits, Fashion-MNIST, MNIST, CIFAR-10 and ImageNet.

Maho, Furon, Le Merrer, *Randomized Smoothing under Attack: How Good is it in Practice?* (ICASSP 2022)
attack 200 random images of the ILSVRC2012 validation set (50,000 images), d = 3 x 224 x 224.
``load_dataset("imagenet", data_dir=..., n=200)`` draws such a subset and decodes only those files, with
the usual resize-256 / centre-crop-224 (the paper does not state its preprocessing). The small datasets
serve the ``smoke`` and ``default`` profiles (the README's table of profiles). ``imagenet-samples`` holds the 20 ImageNet
validation images that the foolbox 3.3.4 wheel ships (``foolbox/data/imagenet_<k>_<label>.jpg``), read
from the installed package with the same preprocessing: real ImageNet images at d = 150,528 without
the ILSVRC2012 archive, for the ``imagenet`` profile (the README's table of profiles).

Images are float32 [N, C, H, W] in [0, 1], not normalised (normalisation is the model's first layer).
Subsets come from an explicit :class:`torch.Generator` (:func:`subset_indices`); ``Dataset.index`` records
each image's position in its full split. Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from rs_repro import checks
from rs_repro.pipeline import paths

__all__ = ["DATASETS", "FILE_DATASETS", "FOOLBOX_REQUIREMENT", "IMAGENET_DATASETS", "IMAGENET_SAMPLES",
           "TEST_SIZES", "Dataset", "count_test_images", "default_folder", "input_shape", "load_dataset",
           "num_classes", "read_idx", "subset_indices"]

#: The dataset names :func:`load_dataset` accepts.
DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "imagenet", "imagenet-samples")
#: The datasets of ImageNet images (3 x 224 x 224, the 1000 ILSVRC2012 classes), never trained on here.
IMAGENET_DATASETS = ("imagenet", "imagenet-samples")
#: The datasets read from files under a ``data_dir``; the others (the embedded digits, the images of the
#: foolbox wheel) read no folder, and a ``data_dir`` given for them is refused.
FILE_DATASETS = ("fashion-mnist", "mnist", "cifar10", "imagenet")
_SHAPES = {"digits": (1, 8, 8), "fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32),
           "imagenet": (3, 224, 224), "imagenet-samples": (3, 224, 224)}
_CLASSES = {"digits": 10, "fashion-mnist": 10, "mnist": 10, "cifar10": 10, "imagenet": 1000,
            "imagenet-samples": 1000}
#: The pip requirement whose wheel ships the images of ``imagenet-samples`` (pinned in ``pyproject.toml``).
FOOLBOX_REQUIREMENT = "foolbox==3.3.4"
#: Number of ImageNet validation images in the foolbox wheel, ``imagenet_00_243.jpg`` to
#: ``imagenet_19_305.jpg``.
IMAGENET_SAMPLES = 20
_SAMPLE_NAME = re.compile(r"imagenet_(\d+)_(\d+)\.jpg")
#: Seed of the fixed stratified train/test split of scikit-learn's digits (25 % of each class is test).
DIGITS_SPLIT_SEED = 20220523
DIGITS_TEST_FRACTION = 0.25
#: Number of images in the test split of each dataset whose size is fixed (ImageNet's is its folder's, and
#: a Fashion-MNIST ``data_dir`` may hold another count: :func:`count_test_images` reads it from the files).
TEST_SIZES = {"digits": 450, "fashion-mnist": 10_000, "mnist": 10_000, "cifar10": 10_000,
              "imagenet-samples": IMAGENET_SAMPLES}
#: Where the Debian package ``dataset-fashion-mnist`` installs the four ``*-ubyte.gz`` files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Ground-truth files looked up in a flat ImageNet folder when ``ground_truth`` is not given.
IMAGENET_GROUND_TRUTH = ("val.txt", "ground_truth.txt", "LOC_val_solution.csv")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


class Dataset(NamedTuple):
    """Images, labels and their positions in the full split.

    Attributes
    ----------
    x : torch.Tensor
        float32 [N, C, H, W] in [0, 1].
    y : torch.Tensor
        int64 [N], class labels.
    index : torch.Tensor
        int64 [N], position of each image in the full split (sorted file list for ImageNet).
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


def num_classes(name: str) -> int:
    """Number of classes of dataset ``name`` (1000 for ImageNet, 10 otherwise)."""
    return _CLASSES[checks.choice("name", name, DATASETS)]


def input_shape(name: str) -> tuple[int, int, int]:
    """Shape (C, H, W) of one image of dataset ``name``, e.g. (3, 224, 224) for ImageNet."""
    return _SHAPES[checks.choice("name", name, DATASETS)]


def subset_indices(total: int, n: int, seed: int) -> torch.Tensor:
    """Seeded random subset of ``n`` distinct positions among ``range(total)``, sorted ascending.

    The draw is ``torch.Generator().manual_seed(seed)`` then ``randperm(total)[:n]``, so the set chosen for
    ``n`` is contained in the set chosen for any larger ``n`` with the same ``seed`` and ``total``.

    Returns
    -------
    torch.Tensor
        int64 [n], sorted.
    """
    for pname, value in (("total", total), ("n", n), ("seed", seed)):
        checks.integer(pname, value)
    if not 1 <= n <= total:
        raise ValueError(f"n={n} is not accepted; expected 1 <= n <= {total} (the size of the split)")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(int(total), generator=g)[: int(n)].sort().values


def read_idx(path: str | Path, ndim: int) -> torch.Tensor:
    """Read an unsigned-byte idx file (raw or ``.gz``), checking its magic number and dimensions.

    Returns
    -------
    torch.Tensor
        uint8 with ``ndim`` dimensions, e.g. [N, 28, 28] for images and [N] for labels.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"cannot read idx file {path}: {e}") from e
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, 0x08, ndim)):
        raise ValueError(f"corrupt idx file {path}: expected magic 0x0000080{ndim} (unsigned bytes, "
                         f"{ndim} dimensions), got {data[:4].hex() or 'an empty file'}")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + math.prod(dims):
        raise ValueError(f"corrupt or truncated idx file {path}: dimensions {dims} need "
                         f"{header + math.prod(dims)} bytes, the file has {len(data)}")
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy())


def _digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    g = torch.Generator().manual_seed(DIGITS_SPLIT_SEED)
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):  # stratified: the same fraction of every class goes to the test split
        members = (y == c).nonzero().squeeze(1)
        k = round(DIGITS_TEST_FRACTION * len(members))
        test[members[torch.randperm(len(members), generator=g)[:k]]] = True
    keep = test if split == "test" else ~test
    return x[keep], y[keep]


def _fashion_folders(data_dir: Path | None) -> list[Path]:
    """Where the Fashion-MNIST idx files are looked for: ``data_dir`` and its ``FashionMNIST/raw`` when it is
    given, nothing else; without it ``build/data``, its ``FashionMNIST/raw``, then Debian's folder."""
    root = data_dir if data_dir is not None else paths.BUILD / "data"
    folders = [root, root / "FashionMNIST" / "raw"]
    return folders if data_dir is not None else [*folders, DEBIAN_FASHION_MNIST]


def _fashion_stems(split: str) -> tuple[str, str]:
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find_fashion(split: str, folders: list[Path]) -> list[Path] | None:
    """The images and labels files of ``split`` in the first of ``folders`` holding both, raw or ``.gz``."""
    def find(folder: Path) -> list[Path] | None:
        found = [next((p for p in (folder / s, folder / f"{s}.gz") if p.is_file()), None)
                 for s in _fashion_stems(split)]
        return None if None in found else found  # type: ignore[return-value]

    return next((f for f in map(find, folders) if f is not None), None)


def _fashion_missing(split: str, data_dir: Path | None, folders: list[Path]) -> FileNotFoundError:
    images, labels = _fashion_stems(split)
    where = (f"Fashion-MNIST {split} files {images}[.gz] and {labels}[.gz] not found in "
             f"{', '.join(map(str, folders))}")
    if data_dir is None:
        return FileNotFoundError(f"{where}; install the Debian package dataset-fashion-mnist, pass "
                                 "data_dir=<folder with the idx files>, or download=True")
    return FileNotFoundError(f"{where}; {DEBIAN_FASHION_MNIST} (the Debian package dataset-fashion-mnist) is "
                             "read only when no data_dir is given: put the files in "
                             f"data_dir={str(data_dir)!r}, pass another data_dir=<folder with the idx "
                             "files>, or download=True")


def _fashion_mnist(split: str, data_dir: Path | None, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    folders = _fashion_folders(data_dir)
    files = _find_fashion(split, folders)
    if files is None and download:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(folders[0]), train=split == "train", download=True)
        files = _find_fashion(split, folders[1:2])
    if files is None:
        raise _fashion_missing(split, data_dir, folders)
    images, labels = read_idx(files[0], 3), read_idx(files[1], 1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels) or bool((labels > 9).any()):
        raise ValueError(f"inconsistent Fashion-MNIST files {files[0]} (shape {tuple(images.shape)}) and "
                         f"{files[1]} (shape {tuple(labels.shape)}); expected [N, 28, 28], [N] labels 0..9")
    return images.unsqueeze(1).float() / 255.0, labels.long()


def _idx_length(path: Path) -> int:
    """The number of items an idx file's header declares, read without its data."""
    try:
        with (gzip.open(path) if path.suffix == ".gz" else path.open("rb")) as f:
            head = f.read(8)
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read idx file {path}: {e}") from e
    if len(head) < 8 or head[:3] != bytes((0, 0, 0x08)):
        raise ValueError(f"corrupt idx file {path}: expected an idx header of unsigned bytes, got "
                         f"{head[:4].hex() or 'an empty file'}")
    return int.from_bytes(head[4:8], "big")


def _torchvision(name: str, split: str, data_dir: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.CIFAR10
    try:
        ds = cls(str(data_dir), train=split == "train", download=download)
    except RuntimeError as e:
        raise FileNotFoundError(f"{name} not found in data_dir={str(data_dir)!r} ({e}); pass "
                                "data_dir=<torchvision root holding it> or download=True") from e
    x = torch.as_tensor(np.asarray(ds.data), dtype=torch.uint8)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float() / 255.0, torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def _image_key(name: str) -> str:
    """File name without directory and image extension: the key that matches ground-truth lines."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if Path(name).suffix.lower() in IMAGE_EXTENSIONS else name


def _read_ground_truth(path: Path) -> dict[str, int]:
    """Map image key -> label from ``<file> <int>``, ``<file> <wnid>`` or LOC_val_solution.csv lines."""
    pairs = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip() or (i == 0 and line.startswith("ImageId")):
            continue
        parts = line.split(",", 1) if path.suffix.lower() == ".csv" else line.split()
        if len(parts) < 2 or not parts[1].split():
            raise ValueError(f"cannot parse line {i + 1} of ground-truth file {path}: {line!r}; expected "
                             "'<file> <label>', '<file> <wnid>' or LOC_val_solution.csv 'ImageId,<wnid> ...'")
        pairs.append((_image_key(parts[0].strip()), parts[1].split()[0]))
    numeric = [bool(re.fullmatch(r"\d+", lab)) for _, lab in pairs]
    if all(numeric):
        return {k: int(lab) for k, lab in pairs}
    if any(numeric):
        raise ValueError(f"ground-truth file {path} mixes integer labels and wnids")
    wnids = {w: c for c, w in enumerate(sorted({lab for _, lab in pairs}))}
    _warn_classes(len(wnids), f"distinct wnids in {path}", stacklevel=5)
    return {k: wnids[lab] for k, lab in pairs}


def _warn_classes(k: int, what: str, stacklevel: int) -> None:
    if k != 1000:
        warnings.warn(f"found {k} {what}, ILSVRC2012 has 1000: labels are indices among these {k} and "
                      "differ from the torchvision (ResNet-50) labels", stacklevel=stacklevel)


def _imagenet_files(root: Path, ground_truth: str | Path | None) -> tuple[list[Path], list[int]]:
    """Sorted image files of a flat or class-folder ILSVRC2012 validation folder, with their labels."""
    how = ("pass data_dir=<the ILSVRC2012 validation folder>: one subfolder per wnid, or the images directly "
           f"in it with a ground-truth file ({', '.join(IMAGENET_GROUND_TRUTH)} or ground_truth=...)")
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet folder data_dir={str(root)!r} does not exist; {how}")
    images = sorted(p for p in root.iterdir() if _is_image(p))
    if images or ground_truth is not None:  # flat folder: labels from the ground-truth file
        gt = Path(ground_truth) if ground_truth is not None else next(
            (root / f for f in IMAGENET_GROUND_TRUTH if (root / f).is_file()), None)
        if gt is None or not gt.is_file():
            raise FileNotFoundError(f"no ground-truth file for the images of {root}: looked for "
                                    f"{gt if gt is not None else ', '.join(IMAGENET_GROUND_TRUTH)}; {how}")
        labels = _read_ground_truth(gt)
        missing = [p.name for p in images if _image_key(p.name) not in labels]
        if missing:
            raise ValueError(f"{len(missing)} images of {root} have no label in {gt}, e.g. {missing[:3]}")
        files = [(p, labels[_image_key(p.name)]) for p in images]
    else:  # ImageFolder layout: label = index of the folder name in the sorted list
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        files = [(p, c) for c, w in enumerate(classes) for p in sorted((root / w).iterdir()) if _is_image(p)]
        if files:
            _warn_classes(len(classes), f"class folders in {root}", stacklevel=4)
    if not files:
        raise FileNotFoundError(f"no image ({', '.join(IMAGE_EXTENSIONS)}) found in {root}; {how}")
    return [p for p, _ in files], [c for _, c in files]


def _imagenet_sample_files() -> tuple[list[Path], list[int]]:
    """The images of the installed foolbox wheel's ``data`` folder, in the order of their number k, and the
    labels their names carry (``imagenet_<k>_<label>.jpg``, the convention of ``foolbox.utils.samples``).

    The package is located with :func:`importlib.util.find_spec`, which does not import it: importing
    foolbox would import eagerpy and GitPython, which reading 20 JPEG files does not need.
    """
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"dataset 'imagenet-samples' reads the ImageNet images that the package {FOOLBOX_REQUIREMENT} "
            f"ships, and foolbox is not installed; install it with `pip install {FOOLBOX_REQUIREMENT}` (or "
            "`pip install -e .` in the project, which pins it)", name="foolbox")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    found = sorted((int(m[1]), int(m[2]), p) for p in folder.glob("imagenet_*.jpg")
                   if (m := _SAMPLE_NAME.fullmatch(p.name)))
    if [k for k, _, _ in found] != list(range(IMAGENET_SAMPLES)):
        raise FileNotFoundError(
            f"expected the {IMAGENET_SAMPLES} files imagenet_<k>_<label>.jpg, k = 0..{IMAGENET_SAMPLES - 1}, "
            f"in {folder}, found {[p.name for _, _, p in found]}; reinstall {FOOLBOX_REQUIREMENT}")
    return [p for _, _, p in found], [label for _, label, _ in found]


def _decode_imagenet(path: Path) -> torch.Tensor:
    """Resize the shorter side to 256 (bilinear, antialiased, PIL), centre-crop 224: float32 [3, 224, 224]."""
    import torchvision.transforms.v2.functional as F
    from PIL import Image

    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except (OSError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"cannot decode image {path}: {e}") from e
    img = F.resize(img, [256], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    img = F.center_crop(img, [224])
    return F.pil_to_tensor(img).float() / 255.0


def _data_dir(name: str, data_dir: str | Path | None, download: bool) -> Path | None:
    """``data_dir`` as a folder (None when not given): refused for a dataset that reads no folder, and when it
    does not exist (unless ``download`` is to create it)."""
    if data_dir is None or str(data_dir) == "":
        return None
    if name not in FILE_DATASETS:
        raise ValueError(f"data_dir={str(data_dir)!r} is not accepted for {name}; expected None ({name} "
                         "reads no folder)")
    folder = Path(data_dir)
    if not folder.is_dir() and not download:
        raise FileNotFoundError(f"data_dir={str(data_dir)!r} is not an existing folder; pass the folder that "
                                f"holds the {name} files, or None for the dataset's default place")
    return folder


def default_folder(name: str) -> Path | None:
    """The folder of this machine the files of dataset ``name`` are read from when no ``data_dir`` is given:
    for Fashion-MNIST the first place :func:`load_dataset` finds its test files (``build/data``, its
    ``FashionMNIST/raw``, then Debian's folder), for MNIST and CIFAR-10 torchvision's root ``build/data``;
    ``None`` for the datasets that read no folder or whose files are not there."""
    if name == "fashion-mnist":
        files = _find_fashion("test", _fashion_folders(None))
        return files[0].parent if files is not None else None
    root = paths.BUILD / "data"
    return root if name in ("mnist", "cifar10") and root.is_dir() else None


def count_test_images(name: str, data_dir: str | Path | None = None) -> int:
    """Number of images in the test split of dataset ``name``, as :func:`load_dataset` ``(name, "test",
    data_dir=data_dir)`` would load it, found without decoding any image.

    :data:`TEST_SIZES` for the datasets of a fixed size; Fashion-MNIST's from the header of the labels file
    the loader would read (10,000 when none is found without a ``data_dir``: its Debian package is installed
    before a chapter runs, :mod:`rs_repro.pipeline.provision`); ImageNet's from its folder (``data_dir``, required).

    Raises
    ------
    ValueError
        Unknown name, a ``data_dir`` for a dataset that reads no folder, a corrupt labels file.
    FileNotFoundError
        ``data_dir`` is not an existing folder, or lacks the files (for ImageNet: images and their labels).
    """
    checks.choice("name", name, DATASETS)
    folder = _data_dir(name, data_dir, download=False)
    if name == "imagenet":
        if folder is None:
            raise ValueError("data_dir=None is not accepted for imagenet; pass data_dir=<the ILSVRC2012 "
                             "validation folder>")
        with warnings.catch_warnings():  # the labels are not used here: the loader warns about them
            warnings.simplefilter("ignore", UserWarning)
            return len(_imagenet_files(folder, None)[0])
    if name == "fashion-mnist":
        folders = _fashion_folders(folder)
        files = _find_fashion("test", folders)
        if files is None and folder is not None:
            raise _fashion_missing("test", folder, folders)
        return _idx_length(files[1]) if files is not None else TEST_SIZES[name]
    return TEST_SIZES[name]


def load_dataset(name: str, split: str = "test", data_dir: str | Path | None = None, download: bool = False,
                 n: int | None = None, seed: int = 0, *, ground_truth: str | Path | None = None) -> Dataset:
    """Load a split of dataset ``name`` as tensors in [0, 1], optionally a seeded random subset of it.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    split : str
        ``"train"`` or ``"test"``; ImageNet accepts only ``"test"`` or its alias ``"val"`` (the 50,000
        validation images), ``imagenet-samples`` only ``"test"`` (its 20 validation images). ``digits`` is
        split once, stratified, 25 % test (seed ``DIGITS_SPLIT_SEED``).
    data_dir : str or Path, optional
        Fashion-MNIST: folder of the idx files (directly or in ``FashionMNIST/raw``), read from there
        only; when None, ``build/data`` then ``DEBIAN_FASHION_MNIST`` are tried. MNIST, CIFAR-10:
        torchvision root. Default for these three: ``build/data``. A folder given must exist (unless
        ``download`` creates it); the datasets that read no folder (``digits``, ``imagenet-samples``)
        refuse one. ImageNet (required): either one subfolder per wnid (labels = index in the
        sorted folder names, as ImageFolder) or a flat folder of images with a ground-truth file.
        ``imagenet-samples``: must be None, the images are read from the installed foolbox package
        (:data:`FOOLBOX_REQUIREMENT`, its ``data`` folder), whose file names give the labels
        (``imagenet_<k>_<label>.jpg``); ``index`` is k. They are decoded as ImageNet's: the shorter side
        resized to 256 (PIL bilinear, antialiased), the centre 224 x 224 cropped. foolbox's own
        ``samples()`` squeezes the whole picture to 224 x 224 instead; the crop is the evaluation transform
        of torchvision's and Cohen et al.'s ImageNet models and the field of view of TensorFlow's
        EfficientNet evaluation (a centre crop of 224 / (224 + 32) of the shorter side).
    download : bool
        Let torchvision download Fashion-MNIST, MNIST or CIFAR-10 into ``data_dir``; never accepted for
        ImageNet or ``imagenet-samples``.
    n : int, optional
        Number of images drawn with :func:`subset_indices` (1 <= n <= split size); all when None.
        For ImageNet only the chosen files are decoded (the paper uses n = 200; all 50,000 would take
        30 GB as float32).
    seed : int
        Seed of the subset draw.
    ground_truth : str or Path, optional
        ImageNet flat folder only: lines ``<file> <int label>`` (Caffe ``val.txt``, torchvision order),
        ``<file> <wnid>`` or ``LOC_val_solution.csv`` (wnids mapped through their sorted list). When None,
        ``val.txt``, ``ground_truth.txt`` then ``LOC_val_solution.csv`` are looked up in ``data_dir``.
        The devkit's ``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC ids, another order) is refused.

    Returns
    -------
    Dataset
        ``x`` float32 [N, C, H, W] in [0, 1] (shape :func:`input_shape`), ``y`` int64 [N], ``index``
        int64 [N] positions in the full split, ascending. The same arguments give identical tensors.

    Raises
    ------
    ValueError
        Unknown name, bad split, n out of range, corrupt file or image, unlabelled ImageNet image,
        ``data_dir`` given for ``digits`` or ``imagenet-samples``, ``download`` for ``imagenet-samples``.
    FileNotFoundError
        Missing folder (a ``data_dir`` that does not exist) or file: the message says where it looked
        and how to provide the data.
    ModuleNotFoundError
        ``imagenet-samples`` without foolbox installed: the message names :data:`FOOLBOX_REQUIREMENT` and
        how to install it.

    Warns
    -----
    UserWarning
        ImageNet labels derived from a number of wnids other than 1000 (they differ from torchvision's).
    """
    checks.choice("name", name, DATASETS)
    splits = {"imagenet": ("test", "val"), "imagenet-samples": ("test",)}.get(name, ("train", "test"))
    if split not in splits:
        raise ValueError(f"split={split!r} is not accepted for {name}; expected one of {splits}")
    if ground_truth is not None and name != "imagenet":
        raise ValueError(f"ground_truth={str(ground_truth)!r} is only accepted for imagenet, not {name}")
    if name == "imagenet-samples":
        where = f"the images are read from the installed {FOOLBOX_REQUIREMENT} package, nothing is downloaded"
        if data_dir is not None:
            raise ValueError(f"data_dir={str(data_dir)!r} is not accepted for imagenet-samples; expected "
                             f"None ({where})")
        if download:
            raise ValueError(f"download={download!r} is not accepted for imagenet-samples; expected False "
                             f"({where})")
        files, labels = _imagenet_sample_files()
        index = torch.arange(len(files)) if n is None else subset_indices(len(files), n, seed)
        x = torch.stack([_decode_imagenet(files[i]) for i in index.tolist()])
        return Dataset(x, torch.tensor(labels, dtype=torch.int64)[index], index)
    if name == "imagenet":
        if download:
            raise ValueError("download=True is not accepted for imagenet: ILSVRC2012 must be obtained from "
                             "image-net.org; pass data_dir=<the validation folder>")
        if data_dir is None:
            raise ValueError("data_dir=None is not accepted for imagenet; pass data_dir=<the ILSVRC2012 "
                             "validation folder> (wnid subfolders, or flat JPEGs with a ground-truth file)")
        files, labels = _imagenet_files(Path(data_dir), ground_truth)
        index = torch.arange(len(files)) if n is None else subset_indices(len(files), n, seed)
        from rs_repro.pipeline.progress import bar

        chosen = bar(index.tolist(), desc="decoding ImageNet")
        x = torch.stack([_decode_imagenet(files[i]) for i in chosen])
        return Dataset(x, torch.tensor(labels, dtype=torch.int64)[index], index)
    folder = _data_dir(name, data_dir, download)
    if name == "digits":
        x, y = _digits(split)
    elif name == "fashion-mnist":
        x, y = _fashion_mnist(split, folder, download)
    else:
        x, y = _torchvision(name, split, folder if folder is not None else paths.BUILD / "data", download)
    index = torch.arange(len(y)) if n is None else subset_indices(len(y), n, seed)
    return Dataset(x[index].contiguous(), y[index], index)
