"""What the chapters' compute halves share: parameter rules, image pools, model units, the attack registry.

* **Rules.** Every chapter's ``check_parameters`` opens with :func:`data_and_models` (the dataset, each
  model's weights, ``data_dir``; the size of the test split the counts are bounded by) and states its counts
  with :func:`count_rule`; an error reads "<name>=<value> is not accepted; expected <what>"
  (:func:`rs_repro.checks.rule_checker`).
* **Image pools.** A chapter draws its test images from one pool, :func:`test_pool` (``pool`` images of the
  test split, all of them for 0), and addresses them by their positions in the split (:func:`images_at`).
* **Models.** A chapter's base models are trained (or read) by units of their own (:func:`model_units`),
  so that a chapter's plan trains nothing.
* **Attacks.** :data:`ATTACKS` names every decision-based attack a chapter may run.

This module is part of the code of every unit (``docs/architecture.md``, "The cache rule"): it imports no
chapter, no page and nothing of the report.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rs_repro import data, models, seeds
from rs_repro.checks import choice, device_rule, integer, rule_checker
from rs_repro.pipeline.engine import Unit

#: The decision-based attacks a chapter may run, each name mapped to ``"module:function"`` of
#: :mod:`rs_repro.attacks` (named, not imported, so that a unit's code is its own attack's module only).
ATTACKS: dict[str, str] = {"HSJA": "rs_repro.attacks.hsja:hsja", "SurFree": "rs_repro.attacks.surfree:surfree",
                           "RayS": "rs_repro.attacks.rays:rays",
                           "PopSkipJump": "rs_repro.attacks.popskipjump:popskipjump"}
#: The attacks of the paper's Fig. 5.
PAPER_ATTACKS = ("HSJA", "SurFree", "RayS")


def attack_function(attack: str) -> Callable[..., Any]:
    """The function of attack ``attack`` (one of :data:`ATTACKS`), imported here: ``attack(oracle, x, y, *,
    seed, ...)`` returning a :class:`rs_repro.attacks.oracle.AttackResult`."""
    module, _, name = _registered(attack).partition(":")
    return getattr(importlib.import_module(module), name)


def attack_module(attack: str) -> str:
    """The module of attack ``attack`` (one of :data:`ATTACKS`): the code a unit that runs it reads."""
    return _registered(attack).partition(":")[0]


def _registered(attack: str) -> str:
    if attack not in ATTACKS:
        raise ValueError(f"attack={attack!r} is not accepted; expected one of {', '.join(ATTACKS)}")
    return ATTACKS[attack]


def test_pool(dataset: str, data_dir: str | None, pool: int, seed: int) -> data.Dataset:
    """The test images a chapter draws from: a seeded subset of ``pool`` images of the test split
    (:func:`rs_repro.data.load_dataset`; on ImageNet only those files are decoded), the whole split for 0.

    Parameters
    ----------
    dataset, data_dir
        The dataset and the folder it is read from (``''`` or ``None``: its default place).
    pool
        How many test images (0: all of them).
    seed
        Seed of the subset (:func:`rs_repro.data.subset_indices`).

    Returns
    -------
    rs_repro.data.Dataset
        ``x`` [pool, C, H, W] in [0, 1], ``y`` [pool], ``index`` [pool] (positions in the test split).
    """
    return data.load_dataset(dataset, "test", data_dir=data_dir or None, n=pool or None, seed=seed)


def images_at(dataset: str, data_dir: str | None, pool: int, seed: int,
              index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images [B, C, H, W] and labels [B] at test-split positions ``index``, all in the chapter's pool
    (:func:`test_pool`)."""
    drawn = test_pool(dataset, data_dir, pool, seed)
    where = {int(i): k for k, i in enumerate(drawn.index)}
    positions = torch.as_tensor([where[int(i)] for i in index], dtype=torch.long)
    return drawn.x[positions], drawn.y[positions]


def correct_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int) -> torch.Tensor:
    """Positions (int64 [<= count]) of the first ``count`` images of ``x`` [B, C, H, W] that ``model``
    classifies as ``y`` [B]."""
    integer("count", count, 1)
    with torch.inference_mode():
        right = model(x).argmax(1).cpu() == y.cpu()
    return right.nonzero().squeeze(1)[:count]


def attacked_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_images: int, seed: int) -> torch.Tensor:
    """Positions of the attacked images among ``x`` [N, C, H, W] (labels ``y`` [N]): a seeded subset of
    ``num_images`` of those ``model`` classifies correctly (all of them when fewer), in the order of
    :func:`rs_repro.data.subset_indices`; int64 [<= num_images]."""
    with torch.inference_mode():
        right = (model(x).argmax(1) == y).nonzero().squeeze(1)
    return right[data.subset_indices(len(right), min(num_images, len(right)), seed)]


def shuffled_correct_unit(*, dataset: str, data_dir: str | None, pool: int, count: int, model: Mapping[str, Any],
                          device: str, seed: int, label: list[str]) -> pd.DataFrame:
    """A chapter's images: the first ``count`` images of its pool (:func:`test_pool`) that the base model
    ``model`` (a :func:`rs_repro.models.model_spec`, on ``device``) classifies correctly, in the random order
    ``randperm`` of ``seeds.generator(seed, *label)`` (fewer if there are not enough).

    Returns
    -------
    pandas.DataFrame
        One row per chosen image, in order: ``position`` (0, 1, ...) and ``index`` (its position in the test
        split); no row when the model classifies no image of the pool correctly.
    """
    base, _ = models.load_model(dataset, model, data_dir=data_dir, device=device)
    test = test_pool(dataset, data_dir, pool, seed)
    order = torch.randperm(len(test.y), generator=seeds.generator(seed, *label))
    chosen = test.index[order[correct_images(base, test.x[order].to(device), test.y[order], count)]]
    return pd.DataFrame({"position": np.arange(len(chosen), dtype=np.int64),
                         "index": np.asarray(chosen, dtype=np.int64)})


#: The id of the unit that chooses a chapter's attacked images (:func:`images_unit`).
IMAGES = "images"


def images_unit(*, dataset: str, data_dir: str | None, pool: int, num_images: int, model: Mapping[str, Any],
                device: str, seed: int) -> pd.DataFrame:
    """Where a chapter's attacked images are: :func:`attacked_images` with the base model ``model`` (a
    :func:`rs_repro.models.model_spec`) among the chapter's pool (:func:`test_pool`).

    Returns
    -------
    pandas.DataFrame
        One row per attacked image, in attack order: ``position`` (in the pool) and ``idx`` (in the test split).
    """
    base, _ = models.load_model(dataset, model, data_dir=data_dir, device=device)
    drawn = test_pool(dataset, data_dir, pool, seed)
    chosen = attacked_images(base, drawn.x.to(device), drawn.y.to(device), num_images, seed).cpu()
    return pd.DataFrame({"position": chosen.numpy(), "idx": drawn.index[chosen].numpy()})


def images_units(values: Mapping[str, Any]) -> list[Unit]:
    """The one :func:`images_unit` (id :data:`IMAGES`) of a chapter's parameters ``values``: ``dataset``,
    ``data_dir``, ``pool``, ``num_images``, ``device``, ``seed`` and the standard model's weights."""
    return [Unit(IMAGES, f"{__name__}:images_unit",
                 {"dataset": values["dataset"], "data_dir": values["data_dir"] or None, "pool": values["pool"],
                  "num_images": values["num_images"], "model": model_specs(values, ("standard",))["standard"],
                  "device": values["device"], "seed": values["seed"]})]


def model_unit(*, dataset: str, data_dir: str | None, model: Mapping[str, Any]) -> pd.DataFrame:
    """Train (or read) the base model of :func:`rs_repro.models.model_spec` ``model`` once, before the units
    that load it (:func:`rs_repro.models.load_model`, which keeps it under ``build/models``).

    Returns
    -------
    pandas.DataFrame
        One row: the spec's fields, and ``clean_accuracy`` on the test split where the model was trained here
        (NaN for a checkpoint).
    """
    _, info = models.load_model(dataset, model, data_dir=data_dir or None)
    return pd.DataFrame([{**dict(model), "clean_accuracy": info.get("clean_accuracy", float("nan"))}])


def model_units(dataset: str, data_dir: str | None, specs: Mapping[str, Mapping[str, Any]]) -> list[Unit]:
    """One :func:`model_unit` per base model, the first step of a chapter's plan.

    Parameters
    ----------
    dataset, data_dir
        The dataset the models are trained on (or whose checkpoints they are) and its folder.
    specs
        Base model name to its :func:`rs_repro.models.model_spec` (:func:`model_specs`).

    Returns
    -------
    list of rs_repro.pipeline.engine.Unit
        ``model-<name>`` for each name of ``specs``, in order.
    """
    return [Unit(f"model-{name}", f"{__name__}:model_unit",
                 {"dataset": dataset, "data_dir": data_dir or None, "model": dict(spec)})
            for name, spec in specs.items()]


def data_and_models(values: Mapping[str, Any], weights: Sequence[str] = ("standard",), *,
                    device: bool = False) -> int:
    """The rules every chapter opens with; the number of test images its counts are bounded by.

    In this order: ``dataset`` is one of :data:`rs_repro.data.DATASETS`; ``<model>_weights`` fits the dataset
    for each model of ``weights`` (:func:`weights_rule`); ``data_dir`` fits it (:func:`dataset_size`); with
    ``device``, ``device`` is one this machine has (:func:`rs_repro.checks.device_rule`).

    Returns
    -------
    int
        The size of the test split of ``dataset`` read from ``data_dir``.
    """
    need = rule_checker(values)
    need(values["dataset"] in data.DATASETS, "dataset", f"one of {', '.join(data.DATASETS)}")
    for model in weights:
        fits, accepted = weights_rule(values["dataset"], values[f"{model}_weights"], model)
        need(fits, f"{model}_weights", accepted)
    size = dataset_size(values)
    if device:
        fits, accepted = device_rule(values["device"])
        need(fits, "device", accepted)
    return size


def data_dir_rule(dataset: str, data_dir: str) -> tuple[bool, str]:
    """Whether a chapter's ``data_dir`` value fits ``dataset``, and what is accepted there.

    ``''`` (the dataset's default place) except for ImageNet, which has none; otherwise an existing folder,
    for a dataset read from files (:data:`rs_repro.data.FILE_DATASETS`) only: a folder named for the embedded
    digits or the images of the foolbox wheel would be ignored. A folder given is the only place the data
    are read from (:func:`rs_repro.data.load_dataset`).
    """
    if dataset not in data.FILE_DATASETS:
        return not data_dir, f"'' for dataset {dataset!r}, which reads no folder"
    if dataset == "imagenet":
        return Path(data_dir).is_dir() if data_dir else False, (
            "the ILSVRC2012 validation folder (an existing folder) for dataset 'imagenet'")
    return not data_dir or Path(data_dir).is_dir(), (
        f"'' (the default place of {dataset}) or an existing folder holding its files")


def dataset_size(values: Mapping[str, Any]) -> int:
    """The number of images in the test split of a chapter's ``dataset`` read from its ``data_dir``
    (:func:`rs_repro.data.count_test_images`), after the rules on both: ``ValueError("<name>=<value> is not
    accepted; expected <accepted>")`` naming ``dataset`` or ``data_dir`` when one is broken, or when the
    folder lacks the files. The bound of a chapter's rules on its image counts and positions.
    """
    need = rule_checker(values)
    dataset, data_dir = values["dataset"], values["data_dir"]
    need(dataset in data.DATASETS, "dataset", f"one of {', '.join(data.DATASETS)}")
    fits, accepted = data_dir_rule(dataset, data_dir)
    need(fits, "data_dir", accepted)
    try:
        return data.count_test_images(dataset, data_dir or None)
    except (OSError, ValueError) as exc:
        raise ValueError(f"data_dir={data_dir!r} is not accepted; expected a folder holding the {dataset} "
                         f"test split ({exc})") from exc


def pool_rule(values: Mapping[str, Any], name: str, size: int) -> int:
    """The rule on a chapter's pool, parameter ``name``: the number of test images it draws from, 0 for the
    whole test split of ``size`` images (:func:`test_pool`); ``ValueError`` naming ``name`` otherwise.

    Returns
    -------
    int
        The number of images in the pool (``size`` for 0), the bound of the counts drawn from it.
    """
    fits, accepted = count_rule(values[name], size, f"test images of {values['dataset']}", zero="the whole test split")
    rule_checker(values)(fits, name, accepted)
    return values[name] or size


def count_rule(value: int, limit: int, what: str, *, zero: str = "") -> tuple[bool, str]:
    """Whether ``value`` counts at least 1 and at most ``limit`` of ``what`` (or is 0 when ``zero`` says what
    0 means), and what is accepted: e.g. ``count_rule(values["pool"], 450, "test images of digits",
    zero="the whole test split")`` accepts 0 to 450."""
    low = 0 if zero else 1
    accepted = f"an integer from {low} to {limit}, the number of {what}"
    return low <= value <= limit, accepted + (f" (0: {zero})" if zero else "")


def weights_rule(dataset: str, weights: str, model: str = "standard") -> tuple[bool, str]:
    """Whether a chapter's ``<model>_weights`` value fits ``dataset``, and what is accepted there.

    ``''`` on a dataset whose models are trained here (:data:`rs_repro.models.ARCHITECTURES`). Elsewhere
    (ImageNet) a local weights file that :func:`rs_repro.models.weights_problem` finds nothing wrong with
    (it exists, and ``torch.load(weights_only=True)`` reads a state dict from it); for the ``standard``
    model also ``pretrained:<name>`` of a known :data:`rs_repro.models.PRETRAINED` model, while the other
    models (``randtrain``, ``advtrain``) accept ``''``: no such row. :func:`data_and_models` states it for
    each model of a chapter.
    """
    if dataset in models.ARCHITECTURES:
        return not weights, f"'' on {dataset}, whose {model} model is trained here"
    if model == "standard":
        pretrained = ", ".join(models.PRETRAINED_PREFIX + name for name in models.PRETRAINED)
        accepted = f"a local ResNet50 weights file or one of {pretrained} for dataset {dataset!r}"
        if weights.startswith(models.PRETRAINED_PREFIX):
            return weights.removeprefix(models.PRETRAINED_PREFIX) in models.PRETRAINED, accepted
        if not weights:
            return False, accepted
    else:
        accepted = f"'' (no {model} row) or a local ResNet50 weights file for dataset {dataset!r}"
        if not weights:
            return True, accepted
    problem = models.weights_problem(weights)
    return problem is None, accepted + (f" ({problem})" if problem else "")


#: The unit function of CERTIFY over chosen test images (Fig. 4 and Fig. 5), in a module of its own; named
#: here, not imported, so that no other unit reads its code.
CERTIFY_UNIT = "rs_repro.chapters.certify:certify_unit"


def certify_units(*, dataset: str, data_dir: str | None, subset: int | None = None, subset_seed: int = 0,
                  images: Sequence[int], chunk: int, model: Mapping[str, Any], name: str, sigma: float, n0: int,
                  n: int, alpha: float, batch_size: int, device: str = "cpu", seed: int) -> list[Unit]:
    """CERTIFY of one base model at one sigma (:data:`CERTIFY_UNIT`), as units of ``chunk`` images.

    The images are positions ``images`` in the test split of ``dataset``, or in its seeded subset of
    ``subset`` images drawn with ``subset_seed``; the base model is a :func:`rs_repro.models.model_spec`.
    Every image draws its noise from its own generator, so the rows do not depend on the chunking.
    """
    return [Unit(f"certify-{name}-sigma{sigma:g}-images{start}", CERTIFY_UNIT,
                 {"dataset": dataset, "data_dir": data_dir, "subset": subset, "subset_seed": subset_seed,
                  "images": [int(i) for i in images], "positions": list(range(start, min(start + chunk, len(images)))),
                  "model": dict(model), "name": name, "sigma": sigma, "n0": n0, "n": n, "alpha": alpha,
                  "batch_size": batch_size, "device": device, "seed": seed})
            for start in range(0, len(images), chunk)]


#: The base models a chapter may attack or certify (the standard, undefended model; the model trained with
#: Gaussian noise, RandTrain, smoothed at the same sigma in the paper; the adversarially trained one,
#: AdvTrain), each fixed by its own parameters.
BASE_MODELS = ("standard", "randtrain", "advtrain")


def model_specs(values: Mapping[str, Any], names: Sequence[str] = BASE_MODELS) -> dict[str, dict[str, Any]]:
    """The :func:`rs_repro.models.model_spec` of each base model of ``names`` that exists, by name.

    A base model comes from its checkpoint parameter (``<name>_weights``: a file, or ``pretrained:<name>``
    for the standard model) when one is given, else it is trained here on the datasets of
    :data:`rs_repro.models.ARCHITECTURES`; elsewhere (ImageNet) a model other than the standard one without a
    checkpoint is absent (:func:`absent_models`). ``randtrain`` reads ``randtrain_sigma``, ``advtrain``
    ``advtrain_epsilon``.
    """
    trainable = values["dataset"] in models.ARCHITECTURES
    made = {"standard": lambda: models.model_spec("standard", seed=values["seed"], weights=values["standard_weights"]),
            "randtrain": lambda: models.model_spec("randtrain", sigma=values["randtrain_sigma"], seed=values["seed"],
                                                   weights=values["randtrain_weights"]),
            "advtrain": lambda: models.model_spec("advtrain", epsilon=values["advtrain_epsilon"], seed=values["seed"],
                                                  weights=values["advtrain_weights"])}
    specs = {name: made[choice("names", name, BASE_MODELS)]() for name in names}
    return {name: spec for name, spec in specs.items() if name == "standard" or trainable or spec["weights"]}


def absent_models(values: Mapping[str, Any], names: Sequence[str] = BASE_MODELS) -> dict[str, str]:
    """The base models of ``names`` left out by :func:`model_specs`.

    Returns
    -------
    dict
        Name to the reason it is absent (a clause for the page); empty when every model exists.
    """
    present = model_specs(values, names)
    return {name: f"no {name} checkpoint was given ({name}_weights) and none is trained on {values['dataset']}"
            for name in names if name not in present}
