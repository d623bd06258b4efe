"""The shared argument validators: each accepts its good values and names the parameter, the value and what is
accepted when it refuses one."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from rs_repro import checks
from rs_repro.chapters import common


def test_require_and_rejected_name_parameter_value_and_accepted():
    checks.require(True, "k", 3, "odd")
    with pytest.raises(ValueError, match=r"^k must be odd, got 4$"):
        checks.require(False, "k", 4, "odd")
    error = checks.rejected("mode", "fast", "'exact' or 'sorm'")
    assert isinstance(error, ValueError) and str(error) == "mode must be 'exact' or 'sorm', got 'fast'"


@pytest.mark.parametrize(("value", "minimum"), [(0, None), (-7, None), (1, 1), (10**12, 1), (np.int64(3), 0)])
def test_integer_accepts_integers_and_returns_an_int(value, minimum):
    out = checks.integer("n", value, minimum)
    assert out == value and type(out) is int


@pytest.mark.parametrize(("value", "minimum", "message"), [
    (0, 1, "n must be an integer >= 1, got 0"),
    (-1, 0, "n must be an integer >= 0, got -1"),
    (1.5, 1, "n must be an integer >= 1, got 1.5 (float)"),
    (2.0, None, "n must be an integer, got 2.0 (float)"),
    (True, None, "n must be an integer, got True (bool)"),
    ("3", 1, "n must be an integer >= 1, got '3' (str)"),
    (None, 1, "n must be an integer >= 1, got None (NoneType)"),
])
def test_integer_refuses_with_a_message_naming_the_value(value, minimum, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        checks.integer("n", value, minimum)


@pytest.mark.parametrize(("value", "kwargs"), [
    (0.25, {"low": 0}), (3, {"low": 0}), (0.0, {"low": 0, "include_low": True}),
    (np.float32(0.5), {"low": 0}),
    (0.5, {"low": 0, "high": 1}), (1, {"low": 0, "high": 1, "include_high": True}),
    (-1e300, {}), (89.0, {"low": 0, "high": 89, "include_high": True}), (-2.0, {"high": 0}),
])
def test_real_accepts_finite_numbers_within_the_bounds_and_returns_a_float(value, kwargs):
    out = checks.real("x", value, **kwargs)
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    (0, {"low": 0}, "sigma must be a finite real number > 0, got 0"),
    (-0.1, {"low": 0, "include_low": True}, "sigma must be a finite real number >= 0, got -0.1"),
    (math.inf, {"low": 0}, "sigma must be a finite real number > 0, got inf"),
    (math.nan, {}, "sigma must be a finite real number, got nan"),
    (1.0, {"low": 0, "high": 1}, "sigma must be a real number in the open interval (0, 1), got 1.0"),
    (0, {"low": 0, "high": 1, "include_high": True}, "sigma must be a real number in (0, 1], got 0"),
    (30.0, {"low": 0, "high": 30, "include_low": True}, "sigma must be a real number in [0, 30), got 30.0"),
    (0.5, {"high": 0, "include_high": True}, "sigma must be a finite real number <= 0, got 0.5"),
    (False, {"low": 0}, "sigma must be a finite real number > 0, got False (bool)"),
    ("0.5", {"low": 0}, "sigma must be a finite real number > 0, got '0.5' (str)"),
    (1j, {}, "sigma must be a finite real number, got 1j (complex)"),
])
def test_real_refuses_with_a_message_naming_the_value(value, kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        checks.real("sigma", value, **kwargs)


def test_choice_accepts_a_member_and_lists_the_others_when_it_refuses():
    assert checks.choice("norm", "linf", ("l2", "linf")) == "linf"
    with pytest.raises(ValueError, match=r"^norm must be one of 'l2', 'linf', got 'l1'$"):
        checks.choice("norm", "l1", ("l2", "linf"))
    with pytest.raises(ValueError, match=r"^k must be one of 1, 2, got 3$"):
        checks.choice("k", 3, [1, 2])


def test_images_accepts_finite_floating_tensors_of_the_right_rank():
    xs = torch.rand(2, 1, 8, 8)
    assert checks.images("xs", xs, 4, "[B, C, H, W]") is xs
    assert checks.images("x", xs[0].double(), 3, "[C, H, W]", pixel_box=True) is not None
    checks.images("xs", xs * 5 - 2, 4, "[B, C, H, W]")  # no box unless asked


@pytest.mark.parametrize(("xs", "box", "error", "message"), [
    (np.zeros((2, 1, 8, 8)), False, TypeError,
     r"^xs must be a torch.Tensor of shape \[B, C, H, W\], got ndarray$"),
    (torch.zeros(1, 8, 8), False, ValueError,
     r"^xs must be a 4-D tensor of shape \[B, C, H, W\], got shape \(1, 8, 8\) \(3-D\)$"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.int64), False, ValueError,
     r"^xs must have a floating-point dtype \(e.g. torch.float32\), got torch.int64$"),
    (torch.zeros(0, 1, 8, 8), False, ValueError, r"^xs must be non-empty, got shape \(0, 1, 8, 8\)$"),
    (torch.full((1, 1, 2, 2), math.nan), False, ValueError,
     r"^xs must contain only finite values, got NaN or inf$"),
    (torch.tensor([[[[0.0, 1.5], [-0.5, 1.0]]]]), True, ValueError,
     r"^xs must lie in the pixel box \[0, 1\], got values from -0.5 to 1.5$"),
])
def test_images_refuses_with_a_message_naming_what_is_wrong(xs, box, error, message):
    with pytest.raises(error, match=message):
        checks.images("xs", xs, 4, "[B, C, H, W]", pixel_box=box)


def test_rule_checker_names_the_parameter_and_its_value():
    need = checks.rule_checker({"budgets": [100, 50]})
    need(True, "budgets", "increasing budgets")
    with pytest.raises(ValueError, match=r"^budgets=\[100, 50\] is not accepted; expected increasing "
                                         r"budgets$"):
        need(False, "budgets", "increasing budgets")


@pytest.mark.parametrize(("dataset", "weights", "fits"), [
    ("digits", "", True), ("digits", "/data/rn50.pth", False), ("fashion-mnist", "pretrained:efficientnet-lite0", False),
    ("imagenet", "", False), ("imagenet", "/data/rn50.pth", True), ("imagenet", "pretrained:efficientnet-lite0", True),
    ("imagenet-samples", "pretrained:efficientnet-lite0", True), ("imagenet-samples", "pretrained:resnet-9000", False),
])
def test_weights_rule_trained_here_or_a_checkpoint(dataset, weights, fits, tmp_path):
    if weights == "/data/rn50.pth":  # a weights file, here: a state dict that torch.load(weights_only=True) reads
        weights = str(tmp_path / "rn50.pth")
        torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    ok, accepted = common.weights_rule(dataset, weights)
    assert ok is fits
    expected = "whose standard model is trained here" if dataset in ("digits", "fashion-mnist") else \
        "pretrained:efficientnet-lite0 for dataset"
    assert expected in accepted
