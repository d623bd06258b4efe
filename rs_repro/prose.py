"""Generated sentences of the book: counts with the noun or verb that agrees with them."""

from __future__ import annotations


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
