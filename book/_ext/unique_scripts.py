"""Sphinx extension for the book: each <script> once per page.

Sphinx 7.4 adds an inline script registered by an extension after the builder started (sphinx-thebe's
``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) twice to every page, once with the
filename ``None`` and once with ``''``; the second ``const`` is a SyntaxError in the reader's browser.
Fixed upstream in Sphinx 8 (sphinx-doc/sphinx#13402), which Jupyter Book 1 cannot use.
"""

from __future__ import annotations

from typing import Any


def _unique_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (script.filename or "", tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Any) -> dict:
    app.connect("html-page-context", _unique_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
