"""The lab's ASGI app: ``create_app(workspace, token=...)``.

Routes: the workspace (home, run files, study reports: ``workspace_routes``), training
(``training.py``), studies (``studies.py``) and serve-lab's draw and explore pages
(``lab.routes``); ``/static`` serves ``aelab/serve/static``. Every request passes
:class:`~aelab.serve.security.Security` first (Host, Origin, token).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from pathlib import Path
from typing import Iterable, Optional

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from . import home, lab, studies, training, uploads  # the page modules (they import PyTorch only when they work)
from .security import LOCAL_HOSTS, Security
from .workspace import Workspace

HERE = Path(__file__).parent


def create_app(workspace: Workspace, *, token: Optional[str] = None, allowed_hosts: Iterable[str] = LOCAL_HOSTS,
               data_dir: Optional[Path] = None, max_upload_bytes: int = uploads.DEFAULT_MAX_BYTES) -> Starlette:
    """The lab for ``workspace``. ``token``: required on every request when given (a bind other than
    loopback); ``allowed_hosts``: the host names the server answers to (see ``security.py``).
    ``data_dir``: where uploads are kept (default: ``<workspace>/uploads``); ``max_upload_bytes``:
    the largest upload request (``aelab serve --max-upload-mb``)."""

    kept = uploads.Uploads(data_dir if data_dir is not None else workspace.root / "uploads",
                           max_bytes=max_upload_bytes)
    trainer = training.Trainer(workspace, kept)
    launcher = studies.StudyLauncher(workspace, uploads=kept, studies=uploads.StudyUploads(workspace.root / "studies"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # PyTorch takes seconds to import on a small machine: load it now, not when the first form arrives
        threading.Thread(target=_preload, name="aelab-preload", daemon=True).start()
        yield
        # the server stops (Ctrl-C, SIGTERM, a test's should_exit): checkpoint what trains, then wait for it
        trainer.close()
        launcher.close()

    routes = [*home.routes(workspace), *training.routes(trainer), *studies.routes(launcher),
              *lab.routes(workspace),
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(Security, allowed_hosts=allowed_hosts, token=token)])
    app.state.workspace, app.state.trainer, app.state.launcher = workspace, trainer, launcher
    return app


def _preload() -> None:
    try:
        importlib.import_module("aelab.runs.trained")
    except Exception:  # noqa: BLE001 - only a head start: the first training imports it again and says why
        pass
