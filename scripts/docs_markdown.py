"""A griffe extension for the documentation site (mkdocs.yml loads it): reST habits in docstrings read as Markdown.

The docstrings are written for Sphinx and for doctest, and mkdocstrings reads them as Markdown, which would show
Sphinx's roles (:class:`Motion`) as typed and a doctest session (``>>>``) as nested quotes. So, as each docstring
is loaded and before it is parsed:

- a Sphinx role becomes inline code of its name (without a leading ``~``);
- a doctest session (lines from one starting ``>>>`` to the next blank line) becomes a fenced ``pycon`` block;
- reST's ``::`` before a literal block becomes ``:`` (the indented block stays a code block);
- in a numpydoc section (Parameters, Returns, ...), ``name : prose`` (a description where the type goes: it ends
  with a full stop or runs past six words) puts the prose on the next line, so that it shows as the description
  and the type comes from the signature.

The source's docstrings are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):`~?([^`]+)`")
LITERAL = re.compile(r"(\S) ?::$", flags=re.MULTILINE)
SECTIONS = {"Parameters", "Other Parameters", "Returns", "Yields", "Receives", "Raises", "Warns", "Attributes"}
ITEM = re.compile(r"^(\s*)(\*{0,2}\w+(?:, \*{0,2}\w+)*) : (.+)$")


def prose_out_of_types(text: str) -> str:
    """In numpydoc sections, ``name : prose`` as ``name`` with the prose indented below it."""
    lines, out, section = text.split("\n"), [], False
    for i, line in enumerate(lines):
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if following and set(following) == {"-"} and line.strip():
            section = line.strip() in SECTIONS
        item = ITEM.match(line) if section else None
        if item and (item[3].rstrip().endswith(".") or len(item[3].split()) > 6):
            out += [f"{item[1]}{item[2]}", f"{item[1]}    {item[3]}"]
        else:
            out.append(line)
    return "\n".join(out)


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
    """A docstring's text with the rewrites above."""
    return prose_out_of_types(LITERAL.sub(r"\1:", fence_doctests(ROLE.sub(r"`\1`", text))))


class ReSTAsMarkdown(griffe.Extension):
    """Rewrites each object's docstring as it is loaded, before mkdocstrings parses it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
