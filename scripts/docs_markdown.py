"""A griffe extension for the documentation site (mkdocs.yml loads it): reST habits in docstrings read as Markdown.

The docstrings are written for Sphinx and for doctest, and mkdocstrings reads them as Markdown, which would show
Sphinx's roles (:class:`Motion`) as typed and a doctest session (``>>>``) as nested quotes. So, as each docstring
is loaded and before it is parsed:

- a Sphinx role becomes inline code of its name (without a leading ``~``);
- a doctest session (lines from one starting ``>>>`` to the next blank line) becomes a fenced ``pycon`` block;
- reST's ``::`` before a literal block becomes ``:`` (the indented block stays a code block).

The source's docstrings are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):`~?([^`]+)`")
LITERAL = re.compile(r"(\S) ?::$", flags=re.MULTILINE)


def fence_doctests(text: str) -> str:
    """Each doctest session, up to the next blank line, fenced as a ``pycon`` block at its own indent."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if not stripped.startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        indent = lines[i][: len(lines[i]) - len(stripped)]
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


def markdown(text: str) -> str:
    """A docstring's text with the three rewrites above."""
    return LITERAL.sub(r"\1:", fence_doctests(ROLE.sub(r"`\1`", text)))


class ReSTAsMarkdown(griffe.Extension):
    """Rewrites each object's docstring as it is loaded, before mkdocstrings parses it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
