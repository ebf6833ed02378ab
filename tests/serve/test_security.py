"""The lab server's front door: Host and Origin checks (DNS rebinding, other sites' pages), the token
on a non-loopback bind, and paths that stay inside the workspace (no traversal, no symlink escape)."""

from __future__ import annotations

import os
import warnings

import pytest

pytest.importorskip("starlette")
with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 but works with httpx (the test extra's)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from aelab.serve.app import create_app  # noqa: E402
from aelab.serve.command import allowed_hosts, is_loopback  # noqa: E402
from aelab.serve.security import Security, host_name  # noqa: E402
from aelab.serve.workspace import PathRefused, Workspace  # noqa: E402

LOCAL = "http://127.0.0.1:8765"


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    (root / "studies-out" / "s1" / "figures").mkdir(parents=True)
    (root / "studies-out" / "s1" / ".aelab-output.json").write_text('{"format": "aelab-output", "kind": "study"}')
    (root / "studies-out" / "s1" / "report.html").write_text("<html><body><h1>report</h1></body></html>")
    (root / "studies-out" / "s1" / "figures" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (root / "studies-out" / "s1" / "weights.safetensors").write_bytes(b"secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    (outside / "report.html").write_text("secret")
    os.symlink(outside, root / "link")
    os.symlink(outside / "x.png", root / "studies-out" / "s1" / "figures" / "escape.png")
    return Workspace(root)


def client(ws, base=LOCAL, **kw):
    return TestClient(create_app(ws, **kw), base_url=base)


def test_loopback_host_names_are_served(ws):
    for base in (LOCAL, "http://localhost:8765", "http://[::1]:8765"):
        assert client(ws, base).get("/").status_code == 200, base


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "attacker.localhost.com"])
def test_a_foreign_host_header_is_refused(ws, host):
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends that name as Host
    r = client(ws).get("/", headers={"host": host})
    assert r.status_code == 400
    assert "does not answer to the host name" in r.text


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_foreign_origin_is_refused(ws, method):
    c = client(ws)
    r = getattr(c, method)("/train", headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    r = getattr(c, method)("/train", headers={"origin": "null"})
    assert r.status_code == 403
    r = getattr(c, method)("/train", headers={"origin": "http://127.0.0.1:9999"})  # another port: another origin
    assert r.status_code == 403


def test_the_own_origin_passes(ws):
    r = client(ws).get("/", headers={"origin": LOCAL})
    assert r.status_code == 200


def test_a_token_is_required_when_given(ws):
    token = "s3cret-token-for-tests"
    c = client(ws, token=token)
    assert c.get("/").status_code == 401
    assert c.get("/static/lab.css").status_code == 401  # every route, static files included
    assert c.get("/", headers={"x-aelab-token": "wrong"}).status_code == 401
    assert c.get("/?token=wrong").status_code == 401
    assert c.get("/", headers={"x-aelab-token": token}).status_code == 200
    assert c.get("/", headers={"authorization": f"Bearer {token}"}).status_code == 200
    # once in the URL, then a cookie; the URL loses the token
    r = c.get(f"/train?preset=pytorch-vae&token={token}", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/train?preset=pytorch-vae"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert c.get("/").status_code == 200  # the client kept the cookie
    fresh = client(ws, token=token)
    assert fresh.get("/").status_code == 401


def test_the_host_check_still_applies_with_a_token(ws):
    token = "s3cret-token-for-tests"
    r = client(ws, token=token).get("/", headers={"x-aelab-token": token, "host": "evil.example"})
    assert r.status_code == 400


def test_bind_rules():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert allowed_hosts("127.0.0.1") == sorted(["127.0.0.1", "localhost", "::1"])
    every = Security(None, allowed_hosts=allowed_hosts("0.0.0.0"), token="x" * 10)
    assert every.host_ok("192.168.1.5:8765") and every.host_ok("[fe80::1]:8765")  # an address: never rebinding
    assert not every.host_ok("evil.example:8765")
    one = Security(None, allowed_hosts=allowed_hosts("192.168.1.5"), token="x" * 10)
    assert one.host_ok("192.168.1.5:80") and not one.host_ok("10.0.0.1")
    assert host_name("[::1]:8765") == "::1" and host_name("LocalHost:1") == "localhost"


def test_files_are_served_from_inside_the_workspace_only(ws):
    c = client(ws)
    r = c.get("/files/studies-out/s1/report.html")
    assert r.status_code == 200 and "<h1>report</h1>" in r.text
    assert "sandbox" in r.headers["content-security-policy"]  # a served page runs no script on the lab's origin
    assert c.get("/files/studies-out/s1/figures/a.png").headers["content-type"] == "image/png"
    refused = ["/files/studies-out/s1/weights.safetensors",  # not a report, figure or JSON
               "/files/studies-out/s1/../../../outside/x.png",
               "/files/studies-out/%2e%2e/%2e%2e/%2e%2e/outside/x.png",
               "/files/..%2f..%2foutside%2fx.png",
               "/files//etc/passwd", "/files/%2fetc%2fpasswd",
               "/files/link/x.png", "/files/link/report.html",  # a link out of the workspace
               "/files/studies-out/s1/figures/escape.png",
               "/files/nothing-here.png"]
    for url in refused:
        r = c.get(url)
        assert r.status_code == 404, url
        assert b"secret" not in r.content, url


def test_resolve(ws):
    assert ws.resolve("studies-out/s1") == ws.root / "studies-out" / "s1"
    assert ws.resolve("") == ws.root
    for bad in ("../x", "a/../../x", "/etc/passwd", "link", "link/x.png", "studies-out/s1/figures/escape.png",
                "a\x00b", "..\\x", "missing"):
        with pytest.raises(PathRefused):
            ws.resolve(bad)
    # a path may be new (a study's output to come) but still not outside
    assert ws.resolve("studies-out/new", must_exist=False) == ws.root / "studies-out" / "new"
    with pytest.raises(PathRefused):
        ws.resolve("link/new", must_exist=False)


def test_run_routes_refuse_paths_outside(ws):
    c = client(ws)
    assert c.get("/train/run/link").status_code == 404
    assert c.get("/train/run/..%2f..%2foutside").status_code == 404
    assert c.post("/train/run/link/resume").status_code == 404
    assert c.get("/train/run/link/events").status_code == 404
