"""The ``aelab serve`` command: its parser (nothing heavy imported until it runs) and the server's run.

``aelab serve [DIR]`` serves the lab for the workspace DIR (default: the current folder, where
``aelab train`` writes ``runs/`` and ``aelab study`` ``studies-out/``) on 127.0.0.1. ``--host``
binds another address only when asked, and then every request needs the token printed at start-up.
Ctrl-C (or SIGTERM) stops the server in order: every training checkpoints as Ctrl-C does in
``aelab train``, the server waits for them, and the command says what to resume.
"""

from __future__ import annotations

import argparse
import ipaddress

#: the port ``aelab serve`` tries first (0: any free one)
DEFAULT_PORT = 8765


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="the browser lab: train and watch, draw and reconstruct, explore the code",
                       description="Serve the browser lab for a workspace folder of runs, studies and sweeps. "
                                   "It listens on 127.0.0.1 only, unless --host says otherwise; then every request "
                                   "needs the token it prints.")
    s.add_argument("dir", nargs="?", metavar="DIR", help="the workspace folder (default: the current folder)")
    s.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only); another one, e.g. "
                        "0.0.0.0 for a classroom, makes the lab reachable from the network and requires a token")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the port (default {DEFAULT_PORT}; 0: any free one)")
    s.add_argument("--token", help="the secret every request must carry (default: none on 127.0.0.1, a random "
                                   "one printed at start-up on any other address)")
    s.add_argument("--max-upload-mb", type=float, default=50, metavar="MB",
                   help="the largest upload (a CSV or a zip of images) the Train page accepts, in MB (default 50)")
    s.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    s.set_defaults(func=_cmd)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str]:
    """The names a server bound to ``host`` answers to (the ``Host`` header's name)."""
    import socket  # deferred: only when the server starts

    from .security import LOCAL_HOSTS  # deferred: Starlette

    names = set(LOCAL_HOSTS)
    if not is_loopback(host):
        names |= {host.strip("[]").lower(), socket.gethostname().lower(), socket.getfqdn().lower()}
        if host in ("0.0.0.0", "::", ""):
            names.add("*ip")  # every address of this machine (an IP literal is never a rebinding attack)
    return sorted(names)


def listen_socket(host: str, port: int):
    """The server's listening socket on ``host``:``port``, its connections without Nagle's delay.

    Each answer is written as two segments (the headers, then the body); with Nagle's algorithm on,
    the body waits for the browser to acknowledge the headers, and a browser delays that
    acknowledgement by 40 ms — which was two thirds of the Draw page's round trip. asyncio turns
    Nagle off only on sockets made with ``proto=IPPROTO_TCP`` (``socket.socket()``'s proto is 0),
    so the socket says so, and sets ``TCP_NODELAY``, which accepted connections inherit."""
    import socket  # deferred: only when the server starts

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)  # a browser that comes before uvicorn is ready waits in the queue, never refused
    except OSError:
        sock.close()
        raise
    return sock


def _cmd(args: argparse.Namespace) -> int:
    import secrets  # deferred: the command's own work starts here
    import sys  # deferred: as above
    import threading  # deferred: as above
    from pathlib import Path  # deferred: as above

    from ..errors import AelabError, ConfigError  # deferred: as above

    try:
        import uvicorn  # deferred: the serve extra, only for this command
    except ImportError:
        raise ConfigError("aelab serve needs the serve extra: pip install 'aelab[serve]'") from None
    from .app import create_app  # deferred: Starlette, only for this command
    from .workspace import Workspace  # deferred: as above

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: give a port from 1 to 65535 (0: any free one)")
    ws = Workspace(Path(args.dir) if args.dir else Path.cwd())
    local = is_loopback(args.host)
    token = args.token or (None if local else secrets.token_urlsafe(24))
    if args.token is not None and len(args.token) < 8:
        raise ConfigError("--token: give at least 8 characters (or leave it out for a random one)")
    if not 0 < args.max_upload_mb <= 100_000:
        raise ConfigError(f"--max-upload-mb {args.max_upload_mb:g}: give a size in MB above 0, such as 50")
    app = create_app(ws, token=token, allowed_hosts=allowed_hosts(args.host),
                     max_upload_bytes=int(args.max_upload_mb * (1 << 20)))
    try:
        sock = listen_socket(args.host, args.port)
    except OSError as exc:
        raise AelabError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); choose another --port "
                         "(0: any free one)") from None
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if local or args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"aelab serve: the lab for {ws.root} at {url}", flush=True)
    if not local:
        print(f"aelab serve: listening on {args.host}:{port}, reachable from the network: every request needs "
              f"the token (open the address above, or send the header X-Aelab-Token: {token})", flush=True)
    print("aelab serve: Ctrl-C stops it (trainings are checkpointed first)", flush=True)

    server = LabServer(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on"),
                       app.state.trainer, app.state.launcher)
    if not args.no_browser:
        def _open() -> None:
            import webbrowser  # deferred: only when a tab is opened

            for _ in range(100):
                if server.started:
                    webbrowser.open(url)
                    return
                threading.Event().wait(0.1)

        threading.Thread(target=_open, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        app.state.trainer.close()
        app.state.launcher.close()
        sock.close()
    stopped = [j for j in app.state.trainer.jobs.values() if j.state in ("stopped", "paused")]
    if server.why:
        print(f"aelab serve: {server.why}: stopped", file=sys.stderr)
    for j in stopped:
        print(f"aelab serve: {j.rel} checkpointed at epoch {j.epoch} of {j.epochs}; resume it on the page or with "
              f"aelab train --resume {ws.root / j.rel}", file=sys.stderr)
    return 0


def _server_class():
    import uvicorn  # deferred: the serve extra

    class _LabServer(uvicorn.Server):
        """uvicorn's server, whose SIGINT/SIGTERM first stop the trainings (each checkpoints) and
        then the server, and are not raised again once it has stopped (the command ends normally)."""

        def __init__(self, config, trainer, launcher) -> None:
            super().__init__(config)
            self.trainer, self.launcher, self.why = trainer, launcher, ""

        def handle_exit(self, sig, frame) -> None:
            import signal  # deferred: standard library

            if not self.why:
                self.why = signal.Signals(sig).name
            self.trainer.closing.set()
            for job in list(self.trainer.jobs.values()):
                if job.alive and not job.stop.is_set():
                    job.stop.set(f"the server stopped ({self.why})")
            self.launcher.stop_all(self.why)
            self.should_exit = True

    return _LabServer


def LabServer(config, trainer, launcher):  # noqa: N802 - builds the class only when uvicorn is there
    return _server_class()(config, trainer, launcher)
