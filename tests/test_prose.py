"""Counts in generated sentences (rs_repro.report.prose)."""

from __future__ import annotations

import numpy as np
import pytest

from rs_repro.report.prose import agree, counted


def test_counted_and_agree():
    assert [counted(k, "image") for k in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(np.int64(1), "measurement fell", "measurements fell") == "1 measurement fell"
    assert counted(3.0, "class", "classes") == "3 classes"
    assert (agree(1, "holds", "hold"), agree(2, "holds", "hold"), agree(0, "is", "are")) == ("holds", "hold", "are")


@pytest.mark.parametrize("count", [1.5, True, float("nan")])
def test_counted_refuses_what_is_not_a_count(count):
    with pytest.raises(ValueError, match="count="):
        counted(count, "image")
