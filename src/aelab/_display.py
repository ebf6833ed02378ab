"""HTML pieces for rich display in a notebook: what a run, a report, a study's or sweep's result and a
latent analysis show through ``_repr_html_``.

Every fragment is self-contained: images are embedded as ``data:image/png;base64`` URIs, styles are
one ``<style>`` block scoped to the fragment's own class (a notebook page holds many outputs: a
rule must not restyle the page around it), and there is no script and no network resource, so the
output reads the same in JupyterLab, VS Code, an exported HTML file or nbviewer, trusted or not.
Every text that comes from data (a run's name, a class name) is escaped here.

A pure module (standard library only, besides :mod:`aelab.numfmt` for how numbers are written):
callers hand in their numbers and their PNG bytes.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any, Iterable, Optional, Sequence

from .numfmt import fmt_num

__all__ = ["CLASS", "PNG_SIGNATURE", "card", "escape", "figure", "img", "key_table", "scope_css", "table"]

#: the class every display fragment carries; the scoped styles below apply inside it only
CLASS = "aelab-display"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_STYLE = f"""<style>
.{CLASS} {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; line-height: 1.4;
  max-width: 1100px; }}
.{CLASS} h3 {{ margin: 0.2em 0 0.3em; font-size: 1.15em; }}
.{CLASS} h4 {{ margin: 0.9em 0 0.3em; font-size: 1em; }}
.{CLASS} .meta {{ color: #555; font-size: 0.9em; margin: 0.2em 0 0.5em; }}
.{CLASS} table {{ border-collapse: collapse; margin: 0.4em 0; font-size: 0.9em; }}
.{CLASS} th, .{CLASS} td {{ border: 1px solid #ccc; padding: 0.2em 0.55em; text-align: left; vertical-align: top; }}
.{CLASS} th {{ background: #f3f3f3; font-weight: 600; }}
.{CLASS} td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
.{CLASS} .row {{ display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }}
.{CLASS} figure {{ margin: 0.4em 0; }}
.{CLASS} figure img {{ max-width: 100%; height: auto; border: 1px solid #eee; }}
.{CLASS} figcaption {{ color: #555; font-size: 0.85em; }}
.{CLASS} code {{ background: #f3f3f3; padding: 0 0.2em; }}
</style>"""


def escape(text: Any) -> str:
    """``text`` as HTML text or attribute value: ``<``, ``>``, ``&`` and both quotes escaped."""
    return html.escape(str(text), quote=True)


def img(png: bytes, alt: str, *, width: Optional[int] = None) -> str:
    """An ``<img>`` of PNG bytes as a data URI. Anything that is not a PNG is refused (ValueError):
    a display never embeds what it cannot vouch for."""
    if not isinstance(png, (bytes, bytearray)) or not bytes(png).startswith(PNG_SIGNATURE):
        raise ValueError(f"{alt}: not PNG bytes")
    src = "data:image/png;base64," + base64.b64encode(bytes(png)).decode("ascii")
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="{src}" alt="{escape(alt)}"{size}>'


def figure(png: Optional[bytes], alt: str, caption: str = "", *, width: Optional[int] = None) -> str:
    """A ``<figure>`` holding :func:`img` and an escaped caption; "" when there is no figure."""
    if not png:
        return ""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{img(png, alt, width=width)}{cap}</figure>"


_NUM = ' class="num"'


def _cell(value: Any, digits: int) -> tuple[str, bool]:
    """A table cell's escaped text and whether it is a number (right-aligned)."""
    if isinstance(value, bool) or value is None:
        return ("—" if value is None else str(value)), False
    if isinstance(value, (int, float)):
        return escape(fmt_num(value, digits)), True
    return escape(value), False


def key_table(rows: Iterable[tuple[str, Any]], *, digits: int = 4, caption: str = "") -> str:
    """A two-column table of key numbers: ``(label, value)`` pairs, numbers written with ``digits``
    significant digits (:func:`aelab.numfmt.fmt_num`), texts escaped; rows whose value is None are
    left out. "" when no row is left."""
    body = []
    for label, value in rows:
        if value is None:
            continue
        text, num = _cell(value, digits)
        body.append(f"<tr><th>{escape(label)}</th><td{_NUM if num else ''}>{text}</td></tr>")
    if not body:
        return ""
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tbody>{''.join(body)}</tbody></table>"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, digits: int = 4) -> str:
    """A table with a header row: every cell as :func:`key_table` writes a value (None: "—")."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for v in row:
            text, num = _cell(v, digits)
            cells.append(f"<td{_NUM if num else ''}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def card(title: str, meta: str, *parts: str) -> str:
    """One display: an ``<h3>`` title, a line of escaped meta text, then ``parts`` (HTML fragments
    made with this module's functions), inside a ``<div>`` of class :data:`CLASS` with the scoped styles."""
    meta_html = f'<p class="meta">{escape(meta)}</p>' if meta else ""
    return f'<div class="{CLASS}">{_STYLE}<h3>{escape(title)}</h3>{meta_html}{"".join(p for p in parts if p)}</div>'


_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_PAGE_ROOT = re.compile(r"^(body|html)\s+")


def scope_css(css: str, scope: str) -> str:
    """The rules of a page's style sheet ``css`` restricted to the elements inside ``scope`` (a CSS
    selector such as ``.aelab-report``): every selector is prefixed with it, and ``body``/``html``
    become the scope itself, so a page's styles can sit in a notebook without restyling it. Handles
    the flat rules aelab's own templates write (no ``@media`` or other nested blocks: those are dropped)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"@[^{;]+\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", css)  # nested at-blocks: not used by aelab's pages
    out = []
    for selectors, body in _RULE.findall(css):
        scoped = []
        for sel in selectors.split(","):
            sel = sel.strip()
            if not sel:
                continue
            if sel in ("body", "html", ":root"):
                scoped.append(scope)
            else:
                scoped.append(f"{scope} {_PAGE_ROOT.sub('', sel)}")
        if scoped:
            out.append(f"{', '.join(scoped)} {{{' '.join(body.split())}}}")
    return "\n".join(out)
