"""The workspace page (home) and the files it links to: a run's reconstruction row, a study's report
and its figures — each through :meth:`Workspace.resolve`, so nothing outside the workspace is served."""

from __future__ import annotations

import mimetypes

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .pages import page
from .workspace import PathRefused, Workspace

#: what the file route serves, by suffix (nothing else: no .npz, no weights, no configs of other tools)
SERVED = {".png": "image/png", ".html": "text/html; charset=utf-8", ".md": "text/markdown; charset=utf-8",
          ".json": "application/json", ".svg": "image/svg+xml"}
#: a served HTML file (a report) runs no script and loads nothing but its own data: URIs and styles
SANDBOX = "sandbox allow-popups; default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'"


def routes(ws: Workspace) -> list:
    async def home(request: Request) -> Response:
        return page(request, "home.html", title="Workspace", root=str(ws.root), runs=ws.runs(), studies=ws.studies())

    async def runs_json(request: Request) -> Response:
        return JSONResponse({"runs": [r.__dict__ for r in ws.runs()], "studies": [s.__dict__ for s in ws.studies()]})

    async def file(request: Request) -> Response:
        rel = request.path_params["path"]
        try:
            path = ws.resolve(rel)
        except PathRefused as exc:
            return PlainTextResponse(str(exc), 404)
        kind = SERVED.get(path.suffix.lower())
        if kind is None or not path.is_file():
            return PlainTextResponse(f"{rel}: the lab serves only reports, figures and JSON files", 404)
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if kind.startswith(("text/html", "image/svg")):
            headers["Content-Security-Policy"] = SANDBOX
        return FileResponse(path, media_type=kind, headers=headers)

    return [Route("/", home), Route("/api/runs", runs_json), Route("/files/{path:path}", file)]


mimetypes.add_type("text/javascript", ".js")  # StaticFiles' guess on systems whose tables say otherwise
