"""Argument checks shared by the package: an error names the parameter, its value and what is accepted.

Every validator raises ``ValueError("<name> must be <accepted>, got <value>")``, whatever is wrong with the
value, its type included: a bad parameter is a ``ValueError`` in this project (``DESIGN.md``,
conventions), a non-tensor given where a tensor is expected being the one ``TypeError``. The validators
that convert return the value as the type they accept (``int``, ``float``). :func:`rule_checker` states
the rules across the parameters of a chapter.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def rejected(name: str, value: object, accepted: str) -> ValueError:
    """The error ``ValueError("<name> must be <accepted>, got <value!r>")``, for the caller to raise."""
    return ValueError(f"{name} must be {accepted}, got {value!r}")


def require(ok: bool, name: str, value: object, accepted: str) -> None:
    """Raise :func:`rejected` ``(name, value, accepted)`` unless ``ok``."""
    if not ok:
        raise rejected(name, value, accepted)


def _number(name: str, value: object, kind: type, accepted: str) -> None:
    """Raise unless ``value`` is an instance of ``kind`` (not a bool); the message shows its type."""
    if isinstance(value, bool) or not isinstance(value, kind):
        # A ValueError, not a TypeError: the project's convention for every bad parameter.
        raise ValueError(f"{name} must be {accepted}, got {value!r} ({type(value).__name__})")  # noqa: TRY004


def integer(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` as an ``int``: an integral number (not a bool), at least ``minimum`` when given.

    Raises ``ValueError("n must be an integer >= 1, got 0")``; for a value of another type, its type too
    (``got 1.5 (float)``).
    """
    accepted = "an integer" if minimum is None else f"an integer >= {minimum}"
    _number(name, value, numbers.Integral, accepted)
    require(minimum is None or value >= minimum, name, value, accepted)
    return int(value)


def real(name: str, value: object, low: float | None = None, high: float | None = None, *,
         include_low: bool = False, include_high: bool = False) -> float:
    """``value`` as a ``float``: a finite real number (not a bool) between ``low`` and ``high``.

    A bound that is not given is not checked; ``include_low`` / ``include_high`` close the interval at
    that end. The accepted values read, for instance, "a finite real number > 0" (``low=0``), "a real
    number in (0, 1]" (``low=0, high=1, include_high=True``), "a real number in the open interval (0, 1)".
    """
    if low is not None and high is not None:
        interval = f"{'[' if include_low else '('}{low:g}, {high:g}{']' if include_high else ')'}"
        open_ = "the open interval " if not (include_low or include_high) else ""
        accepted = f"a real number in {open_}{interval}"
    else:
        bounds = [f"{'>=' if include_low else '>'} {low:g}"] if low is not None else []
        bounds += [f"{'<=' if include_high else '<'} {high:g}"] if high is not None else []
        accepted = " ".join(["a finite real number", *bounds])
    _number(name, value, numbers.Real, accepted)
    number = float(value)
    inside = math.isfinite(number)
    if low is not None:
        inside = inside and (number >= low if include_low else number > low)
    if high is not None:
        inside = inside and (number <= high if include_high else number < high)
    require(inside, name, value, accepted)
    return number


def choice(name: str, value: Any, accepted: Sequence[Any]) -> Any:
    """``value`` if it is one of ``accepted``: ``ValueError("dataset must be one of 'digits', 'mnist', got
    'svhn'")`` otherwise."""
    require(value in accepted, name, value, "one of " + ", ".join(map(repr, accepted)))
    return value


def images(name: str, xs: object, ndim: int, layout: str, *, pixel_box: bool = False) -> torch.Tensor:
    """``xs`` if it is a non-empty, finite, floating-point tensor of ``ndim`` dimensions.

    Parameters
    ----------
    name : str
        The parameter, as the message names it.
    xs : object
        The value to check.
    ndim : int
        Number of dimensions required (4 for a batch [B, C, H, W], 3 for one image [C, H, W]).
    layout : str
        The shape as the message writes it, e.g. ``"[B, C, H, W]"``.
    pixel_box : bool, default False
        Also require every value to lie in the pixel box [0, 1].

    Raises
    ------
    TypeError
        ``xs`` is not a :class:`torch.Tensor`.
    ValueError
        Wrong number of dimensions, an integer dtype, no element, NaN or inf, a value outside [0, 1] (with
        ``pixel_box``).
    """
    import torch  # here, not at the top: the NumPy-only modules (rs_repro.theory) import checks too

    if not isinstance(xs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(xs).__name__}")
    if xs.dim() != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D tensor of shape {layout}, got shape {tuple(xs.shape)} ({xs.dim()}-D)"
        )
    if not xs.is_floating_point():
        raise ValueError(f"{name} must have a floating-point dtype (e.g. torch.float32), got {xs.dtype}")
    if xs.numel() == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(xs.shape)}")
    if not bool(torch.isfinite(xs).all()):
        raise ValueError(f"{name} must contain only finite values, got NaN or inf")
    if pixel_box and not bool(((xs >= 0) & (xs <= 1)).all()):
        raise ValueError(f"{name} must lie in the pixel box [0, 1], got values from {xs.min().item():g} to "
                         f"{xs.max().item():g}")
    return xs


#: The ``device`` value that names no device: the chapter runner replaces it with ``cuda`` when a CUDA
#: device is available, else ``cpu``, before the chapter runs (:func:`rs_repro.book.resolve_device`).
AUTO_DEVICE = "auto"
#: What a chapter's ``device`` parameter accepts, as its error message says it.
DEVICES = f"{AUTO_DEVICE!r} (cuda when available, else cpu), 'cpu' or 'cuda[:k]'"


def is_device(value: str) -> bool:
    """Whether ``value`` is a device a chapter runs on (:data:`DEVICES`): :data:`AUTO_DEVICE`, ``cpu``,
    ``cuda`` or ``cuda:<k>`` with an index k."""
    return value in (AUTO_DEVICE, "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]+", value) is not None


def rule_checker(values: Mapping[str, Any]) -> Callable[[bool, str, str], None]:
    """``need(ok, name, accepted)`` for the parameters ``values``: raises ``ValueError("<name>=<value> is not
    accepted; expected <accepted>")`` unless ``ok``.

    A chapter's ``check_parameters(values)`` states its rules with it; the chapter runner calls that before
    anything runs (:func:`rs_repro.book.check_chapter`).
    """
    def need(ok: bool, name: str, accepted: str) -> None:
        if not ok:
            raise ValueError(f"{name}={values[name]!r} is not accepted; expected {accepted}")

    return need


def device_rule(value: str) -> tuple[bool, str]:
    """Whether ``value`` is a device a chapter can run on here, and what is accepted.

    :data:`AUTO_DEVICE` and ``cpu`` always (the runner resolves ``auto`` before the rules run,
    :func:`rs_repro.book.resolve_device`); ``cuda`` only where ``torch.cuda.is_available()``, ``cuda:<k>``
    only for k below ``torch.cuda.device_count()``. A chapter's ``check_parameters`` states it as
    ``fits, accepted = device_rule(values["device"])`` then ``need(fits, "device", accepted)``.
    """
    if not is_device(value):
        return False, DEVICES
    if value in (AUTO_DEVICE, "cpu"):
        return True, DEVICES
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return False, (f"{AUTO_DEVICE!r} or 'cpu': this machine has no CUDA device "
                       "(torch.cuda.is_available() is False)")
    index = int(value.partition(":")[2] or 0)
    return index < count, f"{DEVICES}, with k < {count}: this machine has {count} CUDA device(s)"


def data_dir_rule(dataset: str, data_dir: str) -> tuple[bool, str]:
    """Whether a chapter's ``data_dir`` value fits ``dataset``, and what is accepted there.

    ``''`` (the dataset's default place) except for ImageNet, which has none; otherwise an existing folder,
    for a dataset read from files (:data:`rs_repro.data.FILE_DATASETS`) only: a folder named for the embedded
    digits or the images of the foolbox wheel would be ignored. A folder given is the only place the data
    are read from (:func:`rs_repro.data.load_dataset`).
    """
    from .data import FILE_DATASETS  # here: rs_repro.data imports this module

    if dataset not in FILE_DATASETS:
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
    from . import data  # here: rs_repro.data imports this module

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
    models (``randtrain``, ``advtrain``) accept ``''``: no such row. A chapter's ``check_parameters`` states
    it as ``fits, accepted = weights_rule(dataset, weights)`` then ``need(fits, "standard_weights",
    accepted)``.
    """
    # Imported here: rs_repro.models imports this module.
    from .models import ARCHITECTURES, PRETRAINED, PRETRAINED_PREFIX, weights_problem

    if dataset in ARCHITECTURES:
        return not weights, f"'' on {dataset}, whose {model} model is trained here"
    if model == "standard":
        pretrained = ", ".join(PRETRAINED_PREFIX + name for name in PRETRAINED)
        accepted = f"a local ResNet50 weights file or one of {pretrained} for dataset {dataset!r}"
        if weights.startswith(PRETRAINED_PREFIX):
            return weights.removeprefix(PRETRAINED_PREFIX) in PRETRAINED, accepted
        if not weights:
            return False, accepted
    else:
        accepted = f"'' (no {model} row) or a local ResNet50 weights file for dataset {dataset!r}"
        if not weights:
            return True, accepted
    problem = weights_problem(weights)
    return problem is None, accepted + (f" ({problem})" if problem else "")
