"""Argument checks shared by the package: an error names the parameter, its value and what is accepted."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


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
