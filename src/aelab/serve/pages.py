"""The lab's pages: Jinja2 templates from ``aelab/serve/templates``, each extending ``base.html``
(the nav bar: Workspace, Train, Draw, Explore, Studies).

``page(request, name, **ctx)`` renders one; serve-lab's routes (``lab.py``) use the same."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

#: (label, path) of the nav bar, in order
NAV = (("Workspace", "/"), ("Train", "/train"), ("Draw", "/draw"), ("Explore", "/explore"), ("Studies", "/studies"))


def _section(path: str) -> str:
    for _label, href in NAV[1:]:
        if path == href or path.startswith(href + "/"):
            return href
    return "/"


def page(request: Request, name: str, status_code: int = 200, **ctx) -> HTMLResponse:
    """Render template ``name`` (which extends base.html) with ``ctx``; the nav marks the current page."""
    ctx.setdefault("title", "")
    # a page shows live state (runs, trainings): never from a cache
    return templates.TemplateResponse(request, name, {"nav": NAV, "current": _section(request.url.path), **ctx},
                                      status_code=status_code, headers={"Cache-Control": "no-store"})
