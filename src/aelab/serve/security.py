"""The lab server's front door: every request, every route (serve-lab's included), passes here.

* ``Host`` must name this server (DNS rebinding: a page of another site whose name was made to
  resolve to 127.0.0.1 sends its own name as Host) → 400 otherwise;
* an ``Origin`` header (sent by browsers on cross-origin requests and on every POST) must be this
  server's own origin → 403 otherwise; so another site's page can neither read from nor post to it;
* with a token (a bind other than loopback), every request carries it: ``?token=`` once (it is
  then set as a cookie and the URL is cleaned), the cookie, or an ``Authorization: Bearer`` /
  ``X-Aelab-Token`` header → 401 otherwise.

A plain ASGI middleware, so server-sent event streams pass through unbuffered.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Iterable, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse

#: the names of a loopback server
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_name(host: str) -> str:
    """The name part of a ``Host`` header value or netloc (no port, no brackets), lower-case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Security:
    """ASGI middleware: Host, Origin and token checks (see the module docstring).

    ``allowed_hosts``: the names this server answers to ("*ip": any IP literal too — a rebinding
    attack needs a DNS name, so an address is always the server's own when it was bound to all
    interfaces). ``token``: the secret every request must carry (None: none needed)."""

    def __init__(self, app, *, allowed_hosts: Iterable[str] = LOCAL_HOSTS, token: Optional[str] = None) -> None:
        self.app = app
        self.hosts = {h.lower() for h in allowed_hosts}
        self.any_ip = "*ip" in self.hosts
        self.token = token
        self.cookie = f"aelab_{hashlib.sha256(token.encode()).hexdigest()[:10]}" if token else ""

    def host_ok(self, host: str) -> bool:
        name = host_name(host)
        return bool(name) and (name in self.hosts or (self.any_ip and _is_ip(name)))

    def _token_ok(self, conn: HTTPConnection) -> bool:
        given = (conn.cookies.get(self.cookie) or conn.headers.get("x-aelab-token")
                 or conn.headers.get("authorization", "").removeprefix("Bearer ").strip())
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        host = conn.headers.get("host", "")
        if not self.host_ok(host):
            await PlainTextResponse(f"refused: this server does not answer to the host name {host_name(host)!r} "
                                    "(open it by the address it printed at start-up)", 400)(scope, receive, send)
            return
        origin = conn.headers.get("origin")
        if origin is not None:
            o = urlsplit(origin)
            if origin == "null" or o.scheme not in ("http", "https") or o.netloc.lower() != host.lower():
                await PlainTextResponse("refused: a request from another site's page (Origin "
                                        f"{origin}); open the lab itself", 403)(scope, receive, send)
                return
        if self.token is not None and not self._token_ok(conn):
            given = conn.query_params.get("token")
            if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                # once in the URL, then a cookie: the address bar and history keep no token
                rest = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode()) if k != "token"]
                resp = RedirectResponse(conn.url.path + (f"?{urlencode(rest)}" if rest else ""), 303)
                resp.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
                await resp(scope, receive, send)
                return
            await PlainTextResponse("this lab server needs its token: open the address with ?token=… that "
                                    "aelab serve printed at start-up", 401)(scope, receive, send)
            return
        await self.app(scope, receive, send)
