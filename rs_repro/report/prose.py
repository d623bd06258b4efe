"""Generated sentences of the book: counts with the noun or verb that agrees with them, and the glue that
carries a chapter's numbers to its prose."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` followed by ``singular`` or ``plural`` (``singular + "s"`` by default).

    Examples
    --------
    >>> counted(1, "image"), counted(3, "image"), counted(0, "claim is", "claims are")
    ('1 image', '3 images', '0 claims are')
    """
    if isinstance(count, bool) or not float(count).is_integer():
        raise ValueError(f"count={count!r} is not accepted; expected a whole number")
    return f"{int(count)} {singular if count == 1 else (plural or singular + 's')}"


def agree(count: int, singular: str, plural: str) -> str:
    """The verb phrase that agrees with ``count``: ``agree(1, "holds", "hold") == "holds"``."""
    return singular if count == 1 else plural


def glue_values(values: Mapping[str, Any]) -> None:
    """Glue every entry of ``values`` for the page (myst-nb ``glue``, not displayed where it is made).

    NumPy scalars become Python numbers (only those survive the trip to the page), so a notebook glues the
    dictionary a chapter's page function returns in one call and the prose reads ``{glue:text}`name:.3f```.
    """
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value.item() if isinstance(value, np.generic) else value, display=False)
