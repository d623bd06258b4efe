"""Parameter rules shared by the chapters: the data, the models' weights, the counts of images.

Every chapter's ``check_parameters`` opens with :func:`data_and_models` (the dataset, each model's weights,
``data_dir``; the size of the test split the counts are bounded by) and states its counts with
:func:`count_rule`; an error reads "<name>=<value> is not accepted; expected <what>"
(:func:`rs_repro.checks.rule_checker`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rs_repro import data, models
from rs_repro.checks import device_rule, rule_checker


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
