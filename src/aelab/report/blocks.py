"""The report's building blocks, each rendered as HTML and as Markdown by the same object.

A report is a list of sections; every section builds its content from these few block types — a
heading, a paragraph, a table, a figure, a list, a definition list, a box — and the two renderings
are this module's :func:`html` and :func:`markdown`, walking the same blocks. What a block says is
written once; only how each format spells it lives here (one method per block and format), so the
HTML page and the Markdown file cannot drift apart.

Text inside a block is a :data:`Text`: a string or a tuple of strings and inline pieces
(:class:`Code`, :class:`Bold`, :class:`Em`, :class:`Link`, :class:`Span`, :class:`Break`). Plain
strings are escaped for each format (HTML entities; in Markdown only what a renderer would take for
markup: a tag-like ``<`` and a ``>`` opening a line).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Sequence, Union

from markupsafe import escape

__all__ = ["Block", "Bold", "Box", "Break", "Cell", "Code", "DefinitionList", "Em", "Figure", "Heading", "Link",
           "ListBlock", "Paragraph", "Row", "Span", "Table", "Text", "html", "markdown", "plain"]


# -- inline pieces ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Code:
    """Literal text: ``<code>`` in HTML, backticks in Markdown."""

    text: str


@dataclass(frozen=True)
class Bold:
    """Strong text: ``<b>`` in HTML, ``**…**`` in Markdown."""

    text: "Text"


@dataclass(frozen=True)
class Em:
    """Emphasis: ``<i>`` in HTML, ``*…*`` in Markdown."""

    text: "Text"


@dataclass(frozen=True)
class Link:
    """A link (within the page: ``#anchor``)."""

    text: "Text"
    href: str


@dataclass(frozen=True)
class Span:
    """Text with an HTML class (a verdict's colour, a muted aside); ``strong`` makes it bold in Markdown,
    which has no colours."""

    text: "Text"
    cls: str
    strong: bool = False


@dataclass(frozen=True)
class Break:
    """A line break inside a paragraph or a list item."""


Inline = Union[str, Code, Bold, Em, Link, Span, Break]
#: text of a block: a plain string, or strings and inline pieces in order
Text = Union[str, Sequence[Inline]]


def _pieces(text: Text) -> Sequence[Inline]:
    return (text,) if isinstance(text, (str, Code, Bold, Em, Link, Span, Break)) else text


#: a "<" that a Markdown renderer would read as the start of raw HTML or an autolink
_MD_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
#: a ">" that opens a line: a block quote
_MD_QUOTE = re.compile(r"^([ \t]*)>", re.MULTILINE)


def _md_escape(s: str) -> str:
    """Markdown output is Markdown, not HTML: no entities in the raw text ("variance > 0.01", not
    "&gt;"). Only what a renderer would take for markup is backslash-escaped (CommonMark)."""
    return _MD_QUOTE.sub(r"\1\\>", _MD_TAG_OPEN.sub(r"\\<", s))


def inline_html(text: Text) -> str:
    out = []
    for p in _pieces(text):
        if isinstance(p, str):
            out.append(str(escape(p)))
        elif isinstance(p, Code):
            out.append(f"<code>{escape(p.text)}</code>")
        elif isinstance(p, Bold):
            out.append(f"<b>{inline_html(p.text)}</b>")
        elif isinstance(p, Em):
            out.append(f"<i>{inline_html(p.text)}</i>")
        elif isinstance(p, Link):
            out.append(f'<a href="{escape(p.href)}">{inline_html(p.text)}</a>')
        elif isinstance(p, Span):
            out.append(f'<span class="{escape(p.cls)}">{inline_html(p.text)}</span>')
        elif isinstance(p, Break):
            out.append("<br>")
    return "".join(out)


def inline_md(text: Text, cell: bool = False) -> str:
    """``text`` in Markdown; ``cell``: inside a table cell (one line, ``|`` escaped)."""
    out = []
    for p in _pieces(text):
        if isinstance(p, str):
            s = " ".join(p.split()).replace("|", "\\|") if cell else p
            out.append(_md_escape(s))
        elif isinstance(p, Code):
            out.append(f"`{p.text}`")
        elif isinstance(p, Bold):
            out.append(f"**{inline_md(p.text, cell)}**")
        elif isinstance(p, Em):
            out.append(f"*{inline_md(p.text, cell)}*")
        elif isinstance(p, Link):
            out.append(f"[{inline_md(p.text, cell)}]({p.href})")
        elif isinstance(p, Span):
            inner = inline_md(p.text, cell)
            out.append(f"**{inner}**" if p.strong else inner)
        elif isinstance(p, Break):
            out.append(" " if cell else "  \n  ")
    return "".join(out)


def plain(text: Text) -> str:
    """The words of ``text`` without any markup (for tests and alt texts)."""
    out = []
    for p in _pieces(text):
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, Code):
            out.append(p.text)
        elif isinstance(p, Break):
            out.append(" ")
        else:
            out.append(plain(p.text))
    return "".join(out)


def _attrs(id: str = "", cls: str = "") -> str:
    return (f' id="{escape(id)}"' if id else "") + (f' class="{escape(cls)}"' if cls else "")


# -- blocks ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    """A heading of ``level`` 1–4; ``id``: its anchor in the HTML page, also written before it in
    Markdown when ``md_anchor`` (the summary table links to the questions)."""

    level: int
    text: Text
    id: str = ""
    md_anchor: bool = False

    def html(self) -> str:
        return f"<h{self.level}{_attrs(self.id)}>{inline_html(self.text)}</h{self.level}>"

    def markdown(self) -> str:
        head = f'<a id="{self.id}"></a>\n\n' if self.md_anchor and self.id else ""
        return f"{head}{'#' * self.level} {inline_md(self.text)}"


@dataclass(frozen=True)
class Paragraph:
    """A paragraph; ``cls`` styles it in HTML (``meta``, ``lead``, ``question``, ``notes``, ``warn``),
    ``quote`` makes it a block quote in Markdown (a call-out: a warning, a note on the data)."""

    text: Text
    cls: str = ""
    id: str = ""
    quote: bool = False

    def html(self) -> str:
        return f"<p{_attrs(self.id, self.cls)}>{inline_html(self.text)}</p>"

    def markdown(self) -> str:
        md = inline_md(self.text)
        return "> " + md if self.quote else md


@dataclass(frozen=True)
class Cell:
    """A table cell; ``cls``: an extra HTML class (a verdict's colour)."""

    text: Text
    cls: str = ""


@dataclass(frozen=True)
class Row:
    """A table row; ``cls``: its HTML class (``baseline``)."""

    cells: Sequence[Union[Cell, Text]]
    cls: str = ""


def _cell(c: Union[Cell, Text]) -> Cell:
    return c if isinstance(c, Cell) else Cell(c)


@dataclass(frozen=True)
class Table:
    """A table: its header ``columns``, ``rows`` and which columns hold numbers (``numeric``: right-aligned
    in both formats); ``row_headers``: the first cell of each row is the row's label (``<th>``)."""

    columns: Sequence[Text]
    rows: Sequence[Row]
    numeric: Sequence[bool] = ()
    id: str = ""
    cls: str = ""
    row_headers: bool = False

    def _num(self, i: int) -> bool:
        return i < len(self.numeric) and bool(self.numeric[i])

    def html(self) -> str:
        head = "".join(f"<th>{inline_html(c)}</th>" for c in self.columns)
        body = []
        for r in self.rows:
            cells = []
            for i, c in enumerate(map(_cell, r.cells)):
                tag = "th" if self.row_headers and i == 0 else "td"
                cls = " ".join(x for x in ("num" if self._num(i) and tag == "td" else "", c.cls) if x)
                cells.append(f"<{tag}{_attrs(cls=cls)}>{inline_html(c.text)}</{tag}>")
            body.append(f"  <tr{_attrs(cls=r.cls)}>{''.join(cells)}</tr>")
        return (f"<table{_attrs(self.id, self.cls)}>\n  <thead><tr>{head}</tr></thead>\n  <tbody>\n"
                + "\n".join(body) + "\n  </tbody>\n</table>")

    def markdown(self) -> str:
        def line(texts: Sequence[Text]) -> str:
            return "|" + "".join(f" {md} |" if md else " |" for md in (inline_md(t, cell=True) for t in texts))

        lines = [line(self.columns), "|" + "".join("--:|" if self._num(i) else "---|" for i in range(len(self.columns)))]
        lines += [line([_cell(c).text for c in r.cells]) for r in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class Figure:
    """A PNG with its caption: embedded as a data URI in HTML, linked as ``file`` (``figures/….png``
    beside report.md) in Markdown."""

    file: str
    png: bytes = field(repr=False)
    alt: str
    caption: Text = ""

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    def html(self) -> str:
        return (f'<figure><img src="{self.data_uri()}" alt="{escape(self.alt)}">\n'
                f"  <figcaption>{inline_html(self.caption)}</figcaption></figure>")

    def markdown(self) -> str:
        md = f"![{_md_escape(self.alt)}]({self.file})"
        return md + (f"\n\n*{inline_md(self.caption)}*" if plain(self.caption) else "")


@dataclass(frozen=True)
class ListBlock:
    """A bulleted list, or numbered (``ordered``)."""

    items: Sequence[Text]
    ordered: bool = False
    cls: str = ""

    def html(self) -> str:
        tag = "ol" if self.ordered else "ul"
        items = "".join(f"<li>{inline_html(i)}</li>" for i in self.items)
        return f"<{tag}{_attrs(cls=self.cls)}>{items}</{tag}>"

    def markdown(self) -> str:
        return "\n".join(f"{f'{n}.' if self.ordered else '-'} {inline_md(i)}" for n, i in enumerate(self.items, 1))


@dataclass(frozen=True)
class DefinitionList:
    """Terms and what they mean (the appendix's metric and loss-term definitions)."""

    items: Sequence[tuple[Text, Text]]

    def html(self) -> str:
        return "<dl>\n" + "\n".join(f"  <dt>{inline_html(t)}</dt><dd>{inline_html(d)}</dd>" for t, d in self.items) \
            + "\n</dl>"

    def markdown(self) -> str:
        return "\n".join(f"- {inline_md(t)}: {inline_md(d)}" for t, d in self.items)


@dataclass(frozen=True)
class Box:
    """Blocks set apart in a box in HTML (``cls``: ``warn``, ``notes``); in Markdown the blocks as they are."""

    blocks: Sequence["Block"]
    cls: str
    id: str = ""

    def html(self) -> str:
        return f"<div{_attrs(self.id, self.cls)}>\n" + "\n".join(b.html() for b in self.blocks) + "\n</div>"

    def markdown(self) -> str:
        return markdown(self.blocks)


Block = Union[Heading, Paragraph, Table, Figure, ListBlock, DefinitionList, Box]


def html(blocks: Sequence[Block]) -> str:
    """The HTML of ``blocks``, one after the other."""
    return "\n".join(b.html() for b in blocks)


def markdown(blocks: Sequence[Block]) -> str:
    """The Markdown of ``blocks``, separated by blank lines."""
    return "\n\n".join(md for md in (b.markdown() for b in blocks) if md)
