"""Text from elsewhere, made safe to put on a page (issue 21, "trust boundaries").

A string that did not come from this package's own code (a host name, an accelerator, a commit or a time
from an imported archive, a profile named by a file, an attack named in a record) may hold Markdown or HTML.
Put into a MyST Markdown table as it is, ``<img src=x onerror=...>`` becomes a tag in the published HTML and
``|`` a new cell. :func:`markdown_cell` makes such a string plain text in a Markdown table cell,
:func:`markdown_code` a code span, :func:`html_text` plain text in HTML.
"""

from __future__ import annotations

import html
import re

#: The ASCII characters that can start Markdown inside a table cell of a MyST page (escapes, code spans,
#: emphasis, links and images, autolinks and raw HTML, entities, cell separators, ``$`` math, ``{role}`` and
#: ``{{ substitutions }}``, strikethrough). :func:`markdown_cell` writes each so that CommonMark renders the
#: character itself (then HTML-escaped by the renderer). The others (``( ) + - . , : ; ? / ' " = % @``) start
#: nothing inside a cell: a cell never starts a line, so no list, heading, target or fence begins there.
ACTIVE = frozenset("\\`*_[]!<>&|${}~^#")
#: The characters of :data:`ACTIVE` that :func:`markdown_cell` writes as entities rather than with a
#: backslash, so that the Markdown source itself holds no tag.
ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}

#: Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def plain(text: object) -> str:
    """``text`` as one line: every control character (newlines and tabs included) replaced by a space."""
    return CONTROL.sub(" ", str(text))


def markdown_cell(text: object) -> str:
    """``text`` as literal text for a cell of a MyST Markdown table.

    Parameters
    ----------
    text : object
        Any value; ``str(text)`` is shown.

    Returns
    -------
    str
        One line (control characters replaced by spaces, :func:`plain`) with every character of
        :data:`ACTIVE` backslash-escaped (``<``, ``>``, ``&`` written as :data:`ENTITIES`), so the rendered
        cell shows the characters of ``text`` and nothing else: no markup, no tag, no extra cell.
    """
    return "".join(ENTITIES.get(c) or (f"\\{c}" if c in ACTIVE else c) for c in plain(text))


def markdown_code(text: object) -> str:
    """``text`` as an inline code span for a Markdown table cell, or as :func:`markdown_cell` text when a code
    span cannot hold it (a backtick would end it, a ``|`` would end the cell, and backslash escapes do not
    work inside one)."""
    line = plain(text).strip()
    return f"`{line}`" if line and not set(line) & set("`|\\") else markdown_cell(text)


def html_text(text: object) -> str:
    """``text`` as literal HTML text (``html.escape``, quotes included), on one line (:func:`plain`)."""
    return html.escape(plain(text), quote=True)
