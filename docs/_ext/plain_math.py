"""Sphinx extension: render fastdyn's docstrings, whose formulas are plain text, as the text they are.

The docstrings are reStructuredText for their markup (``literals``, :func:`roles`, ``::`` blocks, bullet lists)
but write mathematics as plain text, as one reads it in ``help()``: |x| and ||x|| for absolute values and norms,
x_+ and lambda_- for subscripts, ``[64, *widths, 10]`` for unpacking, and formulas on indented lines directly
under the sentence that introduces them. reST would read those as substitutions, link targets, emphasis and
ill-formed block quotes. :func:`plain_math` escapes exactly those characters outside literals and roles, and sets
indented formula lines off as an indented line block (line breaks kept), so the page shows what ``help()`` shows.
"""
from __future__ import annotations

import re

# Spans left alone: inline literals, roles (:func:`x`), interpreted text and hyperlinks (`text <url>`_).
PROTECTED = re.compile(r"(``.+?``|:[\w:.-]+:`[^`]+`|`[^`]+`_{0,2})")
BAR = re.compile(r"(?<!\\)\|")
TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?=[^\w{]|$)")
BULLET = re.compile(r"([*-]|\d+\.) \S")
STAR_ARGS = re.compile(r"(?:(?<=[\[(])|(?<=, ))\*(?=\w+[,)\]])")


def escape(text: str) -> str:
    pieces = PROTECTED.split(text)
    for i in range(0, len(pieces), 2):  # even pieces lie outside the protected spans
        pieces[i] = STAR_ARGS.sub(r"\*", TRAILING_UNDERSCORE.sub(r"\_", BAR.sub(r"\|", pieces[i])))
    return "".join(pieces)


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def plain_math(lines: list[str]) -> list[str]:
    """The docstring ``lines`` with plain-text formulas escaped and indented formula lines set off."""
    out: list[str] = []
    literal = None  # inside a literal block (after "::"): the indentation of the line that introduced it
    formula = None  # inside a set-off run of formula lines: (indentation of the paragraph above, of the first line)
    bullets = None  # inside a bullet list: the indentation of its markers
    previous = ""
    for line in lines:
        stripped = line.strip()
        if literal is not None and stripped and indent(line) <= literal:
            literal = None
        if formula is not None and stripped and indent(line) <= formula[0]:
            formula = None
            out.append("")
        if bullets is not None and stripped and indent(line) <= bullets and not BULLET.match(stripped):
            bullets = None  # text right under a list: a paragraph of its own
            out.append("")
        if bullets is None and literal is None and BULLET.match(stripped):
            bullets = indent(line)
            if previous.strip():  # a list right under a sentence: set it off
                out.append("")
        if literal is not None or stripped.startswith((">>>", "..")) or \
                re.fullmatch(r"\+[-=+]*\+|\|.*\|", stripped) or \
                (stripped and set(stripped) <= set("= ")):
            out.append(line)  # literal blocks, grid and simple tables, doctests, directives: as written
        else:
            if formula is None and _opens_formula(previous, line):
                formula = (indent(previous), indent(line))
                out.append("")
            if formula is not None and stripped:  # one line of a line block, so that its line breaks stay
                out.append(" " * formula[1] + "| " + " " * max(0, indent(line) - formula[1]) + escape(stripped))
            else:
                out.append(escape(line))
        if stripped.endswith("::") and literal is None:
            literal = indent(line)
        previous = line
    return out


def _opens_formula(previous: str, line: str) -> bool:
    """Whether ``line``, indented under the text line ``previous``, is a formula rather than the continuation of
    a list item, a field (``:param x:``, napoleon's output) or a definition."""
    head = previous.strip()
    if not head or not line.strip() or indent(line) <= indent(previous) or head.endswith("::"):
        return False
    return not (BULLET.match(head) or re.match(r":[^:]+:(\s|$)", head))


def _process_docstring(app, what, name, obj, options, lines):
    lines[:] = plain_math(lines)


def setup(app):
    app.connect("autodoc-process-docstring", _process_docstring, priority=600)  # after napoleon's sections
    return {"parallel_read_safe": True, "parallel_write_safe": True}
