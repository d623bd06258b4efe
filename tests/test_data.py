"""Tests of rs_repro.data: every dataset loader on files written here, no network.

The ImageNet tests build tiny ILSVRC2012-like folders (class folders, or flat JPEGs with the ground-truth
formats in use: Caffe ``val.txt``, ``<file> <wnid>``, ``LOC_val_solution.csv``); a corrupt image that the
seeded subset does not choose proves that only the chosen files are decoded (the paper's 200 of 50,000).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_idx
from PIL import Image

from rs_repro import data
from rs_repro.data import DATASETS, input_shape, load_dataset, num_classes, read_idx, subset_indices

WNIDS = ("n01440764", "n01443537", "n01484850")
SIZES = ((300, 400), (500, 260), (224, 224), (90, 150))  # (width, height): landscape, portrait, small


# --------------------------------------------------------------------------------------------------
# names, shapes, subsets
# --------------------------------------------------------------------------------------------------


def test_names_shapes_classes() -> None:
    assert DATASETS == ("digits", "fashion-mnist", "mnist", "cifar10", "imagenet", "imagenet-samples")
    shapes = [(1, 8, 8), (1, 28, 28), (1, 28, 28), (3, 32, 32), (3, 224, 224), (3, 224, 224)]
    assert [input_shape(d) for d in DATASETS] == shapes
    assert [num_classes(d) for d in DATASETS] == [10, 10, 10, 10, 1000, 1000]
    for f in (input_shape, num_classes, load_dataset):
        with pytest.raises(ValueError, match=r"name must be one of 'digits', 'fashion-mnist', 'mnist', "
                                             r"'cifar10', 'imagenet', 'imagenet-samples', got 'svhn'"):
            f("svhn")


def test_subset_indices() -> None:
    a = subset_indices(100, 10, seed=3)
    assert a.dtype == torch.int64 and a.shape == (10,)
    assert torch.equal(a, a.sort().values) and len(set(a.tolist())) == 10 and 0 <= a.min() and a.max() < 100
    assert torch.equal(a, subset_indices(100, 10, seed=3))
    assert not torch.equal(a, subset_indices(100, 10, seed=4))
    assert set(a.tolist()) <= set(subset_indices(100, 30, seed=3).tolist())  # nested in n
    assert torch.equal(subset_indices(5, 5, 0), torch.arange(5))


@pytest.mark.parametrize(
    ("args", "match"),
    [((10, 0, 0), r"n=0 .*1 <= n <= 10"), ((10, 11, 0), r"n=11 .*1 <= n <= 10"),
     ((10, 2.5, 0), r"n must be an integer, got 2.5 \(float\)"), ((10, True, 0), r"n must be an integer, got True"),
     ((10, 2, "a"), r"seed must be an integer, got 'a'"), ((None, 2, 0), r"total must be an integer, got None")],
)
def test_subset_indices_errors(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        subset_indices(*args)


# --------------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------------


def test_digits_split() -> None:
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits")
    assert train.x.shape == (1347, 1, 8, 8) and test.x.shape == (450, 1, 8, 8)
    for ds in (train, test):
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64 and ds.index.dtype == torch.int64
        assert 0.0 <= ds.x.min() and ds.x.max() == 1.0
        assert torch.equal(ds.index, torch.arange(len(ds.y)))
    # the two splits partition the 1797 images (compared as multisets of (image, label) rows)
    full = load_digits()

    def rows(x: np.ndarray, y: np.ndarray) -> list[tuple]:
        return sorted(map(tuple, np.c_[x.reshape(len(y), -1), y].tolist()))

    both = torch.cat([train.x, test.x]).numpy() * 16, torch.cat([train.y, test.y]).numpy()
    assert rows(*both) == rows(full.images, full.target)
    # stratified: about 25 % of every class is test
    frac = torch.bincount(test.y, minlength=10) / torch.bincount(torch.cat([train.y, test.y]), minlength=10)
    assert torch.all((frac - 0.25).abs() < 0.01)
    again = load_dataset("digits")
    assert torch.equal(again.x, test.x) and torch.equal(again.y, test.y)


def test_digits_subset() -> None:
    full = load_dataset("digits", "train")
    sub = load_dataset("digits", "train", n=20, seed=7)
    assert sub.x.shape == (20, 1, 8, 8)
    assert torch.equal(sub.index, subset_indices(1347, 20, 7))
    assert torch.equal(sub.x, full.x[sub.index]) and torch.equal(sub.y, full.y[sub.index])
    assert torch.equal(load_dataset("digits", "train", n=20, seed=7).x, sub.x)
    assert not torch.equal(load_dataset("digits", "train", n=20, seed=8).index, sub.index)
    with pytest.raises(ValueError, match=r"n=451 .*1 <= n <= 450"):
        load_dataset("digits", n=451)
    with pytest.raises(ValueError, match=r"n=0 "):
        load_dataset("digits", n=0)


def test_split_and_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"split='val' .*digits.*\('train', 'test'\)"):
        load_dataset("digits", "val")
    with pytest.raises(ValueError, match=r"split='train' .*imagenet.*\('test', 'val'\)"):
        load_dataset("imagenet", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"ground_truth=.*only accepted for imagenet"):
        load_dataset("digits", ground_truth=tmp_path / "val.txt")
    with pytest.raises(ValueError, match=r"download=True is not accepted for imagenet"):
        load_dataset("imagenet", data_dir=tmp_path, download=True)
    with pytest.raises(ValueError, match=r"data_dir=None is not accepted for imagenet"):
        load_dataset("imagenet")


# --------------------------------------------------------------------------------------------------
# Fashion-MNIST (idx files) and torchvision datasets
# --------------------------------------------------------------------------------------------------


def write_fashion(folder: Path, gz: bool, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, count in (("train", "train", 6), ("test", "t10k", 4)):
        x, y = rng.integers(0, 256, (count, 28, 28)), rng.integers(0, 10, count)
        ext = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", y)
        out[split] = x, y
    return out


@pytest.fixture
def no_debian(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sub", ["", "FashionMNIST/raw"])
def test_fashion_mnist_idx(tmp_path: Path, no_debian: None, gz: bool, sub: str) -> None:
    arrays = write_fashion(tmp_path / sub, gz)
    for split, (x, y) in arrays.items():
        ds = load_dataset("fashion-mnist", split, data_dir=tmp_path)
        assert ds.x.shape == (len(y), 1, 28, 28) and ds.x.dtype == torch.float32
        assert torch.equal(ds.x, torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 255)
        assert torch.equal(ds.y, torch.tensor(y)) and ds.y.dtype == torch.int64
    sub2 = load_dataset("fashion-mnist", "train", data_dir=str(tmp_path), n=3, seed=1)
    assert torch.equal(sub2.index, subset_indices(6, 3, 1)) and sub2.x.shape == (3, 1, 28, 28)


def test_read_idx_errors(tmp_path: Path, no_debian: None) -> None:
    good = write_idx(tmp_path / "a-idx3-ubyte", np.zeros((2, 3, 4)))
    assert read_idx(good, 3).shape == (2, 3, 4)
    with pytest.raises(ValueError, match=r"corrupt idx file .*a-idx3-ubyte.*magic"):
        read_idx(good, 1)
    trunc = tmp_path / "t-idx3-ubyte"
    trunc.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"truncated idx file .*t-idx3-ubyte"):
        read_idx(trunc, 3)
    bad_gz = tmp_path / "b-idx1-ubyte.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"cannot read idx file .*b-idx1-ubyte\.gz"):
        read_idx(bad_gz, 1)
    empty = tmp_path / "e-idx1-ubyte"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"e-idx1-ubyte.*empty file"):
        read_idx(empty, 1)
    # through the loader: a corrupt labels file is named
    write_fashion(tmp_path / "fm", gz=True)
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00"))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "fm")
    # images and labels that disagree
    write_idx(tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(ValueError, match=r"inconsistent Fashion-MNIST files"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "fm")


def test_fashion_mnist_missing(tmp_path: Path, no_debian: None) -> None:
    write_fashion(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()  # train complete, test labels missing
    assert len(load_dataset("fashion-mnist", "train", data_dir=tmp_path).y) == 6
    match = r"t10k-labels-idx1-ubyte.*no-debian-package.*dataset-fashion-mnist.*data_dir=.*download=True"
    with pytest.raises(FileNotFoundError, match=match) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(), reason="no package dataset-fashion-mnist")
def test_fashion_mnist_debian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.paths, "BUILD", tmp_path / "build")  # nothing in the default place: Debian's folder
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    with pytest.raises(FileNotFoundError, match=r"read only when no data_dir is given"):
        load_dataset("fashion-mnist", "test", data_dir=tmp_path)  # a data_dir is the only place read
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(test.y), torch.full((10,), 1000))
    assert 0.0 <= float(test.x.min()) and float(test.x.max()) == 1.0


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_torchvision_missing(tmp_path: Path, name: str) -> None:
    with pytest.raises(FileNotFoundError, match=rf"{name} not found in data_dir=.*download=True") as info:
        load_dataset(name, data_dir=tmp_path)
    assert str(tmp_path) in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded


# --------------------------------------------------------------------------------------------------
# ImageNet
# --------------------------------------------------------------------------------------------------


def write_jpeg(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return path


def reference(path: Path) -> torch.Tensor:
    """The classic torchvision ImageNet evaluation transform, without normalisation."""
    from torchvision import transforms

    t = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    return t(Image.open(path).convert("RGB"))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 wnid folders (created in unsorted order) x 4 JPEGs of various sizes."""
    root = tmp_path / "val"
    for c, wnid in enumerate(reversed(WNIDS)):
        (root / wnid).mkdir(parents=True)
        for i, size in enumerate(SIZES):
            write_jpeg(root / wnid / f"ILSVRC2012_val_{10 * c + i:08d}.JPEG", size, seed=10 * c + i)
    (root / WNIDS[0] / "notes.txt").write_text("not an image")
    return root


def test_imagenet_image_folder(image_folder: Path) -> None:
    with pytest.warns(UserWarning, match=r"found 3 class folders.*1000"):
        ds = load_dataset("imagenet", data_dir=image_folder)
    assert ds.x.shape == (12, 3, 224, 224) and ds.x.dtype == torch.float32
    assert 0.0 <= float(ds.x.min()) and float(ds.x.max()) <= 1.0
    assert ds.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and torch.equal(ds.index, torch.arange(12))
    files = sorted(image_folder.glob("*/*.JPEG"))
    for i in (0, 5, 11):
        assert torch.allclose(ds.x[i], reference(files[i]), atol=1e-6)
    with pytest.warns(UserWarning):
        again = load_dataset("imagenet", "val", data_dir=str(image_folder))
    assert torch.equal(again.x, ds.x) and torch.equal(again.y, ds.y)


def test_imagenet_subset_decodes_only_chosen(image_folder: Path) -> None:
    files = sorted(image_folder.glob("*/*.JPEG"))
    chosen = subset_indices(12, 3, seed=5)
    victim = files[next(i for i in range(12) if i not in chosen.tolist())]
    victim.write_bytes(b"\xff\xd8 truncated jpeg")
    with pytest.warns(UserWarning, match="3 class folders"):
        ds, again = (load_dataset("imagenet", data_dir=image_folder, n=3, seed=5) for _ in range(2))
    assert torch.equal(ds.index, chosen) and ds.x.shape == (3, 3, 224, 224)
    assert torch.equal(ds.x, again.x) and torch.equal(ds.y, again.y)
    assert ds.y.tolist() == [int(i) // 4 for i in chosen]
    for k, i in enumerate(chosen.tolist()):
        assert torch.allclose(ds.x[k], reference(files[i]), atol=1e-6)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=rf"cannot decode image .*{victim.name}"):
        load_dataset("imagenet", data_dir=image_folder)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"n=13 .*1 <= n <= 12"):
        load_dataset("imagenet", data_dir=image_folder, n=13)


@pytest.fixture
def flat_folder(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """6 flat JPEGs, their names and wnids (the wnid list is given in unsorted order)."""
    root = tmp_path / "flat"
    root.mkdir()
    names, wnids = [], []
    for i in range(6):
        names.append(write_jpeg(root / f"ILSVRC2012_val_{i + 1:08d}.JPEG", SIZES[i % 4], seed=i).name)
        wnids.append(WNIDS[(2 * i + 1) % 3])
    return root, names, wnids


def test_imagenet_flat_caffe_labels(flat_folder: tuple[Path, list[str], list[str]]) -> None:
    root, names, _ = flat_folder
    labels = [65, 970, 230, 809, 516, 57]
    (root / "val.txt").write_text("".join(f"{f} {c}\n" for f, c in zip(names, labels, strict=True)))
    ds = load_dataset("imagenet", data_dir=root)  # integer labels: no class-count warning
    assert ds.y.tolist() == labels and ds.x.shape == (6, 3, 224, 224)
    assert torch.allclose(ds.x[3], reference(root / names[3]), atol=1e-6)
    sub = load_dataset("imagenet", "val", data_dir=root, n=2, seed=0)
    assert torch.equal(sub.y, torch.tensor(labels)[sub.index]) and torch.equal(sub.x, ds.x[sub.index])


def test_imagenet_flat_wnid_and_csv(flat_folder: tuple[Path, list[str], list[str]], tmp_path: Path) -> None:
    root, names, wnids = flat_folder
    expected = [sorted(WNIDS).index(w) for w in wnids]
    (root / "ground_truth.txt").write_text("".join(f"{f} {w}\n" for f, w in zip(names, wnids, strict=True)))
    with pytest.warns(UserWarning, match=r"found 3 distinct wnids"):
        assert load_dataset("imagenet", data_dir=root).y.tolist() == expected
    # LOC_val_solution.csv, given explicitly from outside the folder; ImageId has no extension
    csv = tmp_path / "LOC_val_solution.csv"
    rows = [f"{Path(f).stem},{w} 10 20 100 200 {w} 5 5 50 50\n" for f, w in zip(names, wnids, strict=True)]
    csv.write_text("ImageId,PredictionString\n" + "".join(reversed(rows)))
    with pytest.warns(UserWarning):
        ds = load_dataset("imagenet", data_dir=root, ground_truth=csv, n=4, seed=2)
    assert ds.y.tolist() == [expected[i] for i in ds.index.tolist()]


def test_imagenet_errors(flat_folder: tuple[Path, list[str], list[str]], tmp_path: Path) -> None:
    root, names, _ = flat_folder
    with pytest.raises(FileNotFoundError, match=r"does not exist.*data_dir="):
        load_dataset("imagenet", data_dir=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no image .*empty"):
        load_dataset("imagenet", data_dir=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"no ground-truth file .*val\.txt, ground_truth\.txt"):
        load_dataset("imagenet", data_dir=root)
    with pytest.raises(FileNotFoundError, match=r"no ground-truth file .*missing\.txt"):
        load_dataset("imagenet", data_dir=root, ground_truth=tmp_path / "missing.txt")
    gt = root / "val.txt"
    gt.write_text("".join(f"{f} 1\n" for f in names[:-1]))
    with pytest.raises(ValueError, match=rf"1 images of .* have no label in .*val\.txt.*{names[-1]}"):
        load_dataset("imagenet", data_dir=root)
    gt.write_text(f"{names[0]} 1\n{names[1]} n01440764\n")
    with pytest.raises(ValueError, match=r"mixes integer labels and wnids"):
        load_dataset("imagenet", data_dir=root)
    gt.write_text("65\n970\n")  # devkit ILSVRC2012_validation_ground_truth.txt style: not supported
    with pytest.raises(ValueError, match=r"cannot parse line 1 of ground-truth file .*val\.txt"):
        load_dataset("imagenet", data_dir=root)
