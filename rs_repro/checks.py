"""Argument checks shared by the package: an error names the parameter, its value and what is accepted.

Every validator raises ``ValueError("<name> must be <accepted>, got <value>")``, whatever is wrong with the
value, its type included: a bad parameter is a ``ValueError`` in this project (``docs/architecture.md``,
conventions), a non-tensor given where a tensor is expected being the one ``TypeError``. The validators
that convert return the value as the type they accept (``int``, ``float``). :func:`rule_checker` states
the rules across the parameters of a chapter.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
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
#: device is available, else ``cpu``, before the chapter runs (:func:`rs_repro.pipeline.parameters.resolve_device`).
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
    anything runs (:func:`rs_repro.pipeline.parameters.check_chapter`).
    """
    def need(ok: bool, name: str, accepted: str) -> None:
        if not ok:
            raise ValueError(f"{name}={values[name]!r} is not accepted; expected {accepted}")

    return need


def device_rule(value: str) -> tuple[bool, str]:
    """Whether ``value`` is a device a chapter can run on here, and what is accepted.

    :data:`AUTO_DEVICE` and ``cpu`` always (the runner resolves ``auto`` before the rules run,
    :func:`rs_repro.pipeline.parameters.resolve_device`); ``cuda`` only where ``torch.cuda.is_available()``, ``cuda:<k>``
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
