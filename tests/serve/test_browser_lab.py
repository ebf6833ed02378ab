"""The Draw and Explore pages in headless Chromium against a real server (uvicorn in a thread): a
stroke drawn with pointer events gives, on the page's canvas, the PyTorch reconstruction of the
same preprocessed input (within 1/255); the latent map of 5,000 test codes shows the hovered
image and decodes a clicked point and a clicked location. Every page: no console error, no failed
request, no request to any host but the server."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.browser

uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

import aelab  # noqa: E402
from aelab.serve.app import create_app  # noqa: E402
from aelab.serve.lab import to_uint8  # noqa: E402
from aelab.serve.workspace import Workspace  # noqa: E402

from conftest import chrome_driver, chromium, mnist_available  # noqa: E402

WAIT = 60  # seconds any page state may take on a loaded 2-core machine before the test fails by name


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A lab AE (32-unit code) and a small dense VAE (2-D code), 1 epoch on a slice of MNIST (the
    synthetic 28×28 digits without MNIST), 5,000 test images each: the map's 5,000 points."""
    if not chromium() or not shutil.which("chromedriver"):
        pytest.skip("headless Chromium and chromedriver are not installed (.ci/run installs them)")
    root = tmp_path_factory.mktemp("ws")
    data = "mnist" if mnist_available() else "synthetic"
    base = {"data.dataset": data, "data.limit": 1000, "data.test_limit": 5000, "train.epochs": 1}
    aelab.train(aelab.fit_config(aelab.RunConfig().with_overrides({**base, "name": "ae"})), root / "runs" / "ae")
    vae = aelab.RunConfig().with_overrides({**base, "name": "vae", "model.family": "vae", "model.latent": 2,
                                            "model.encoder": ["64:relu"], "model.decoder": ["64:relu", "784:sigmoid"]})
    aelab.train(aelab.fit_config(vae), root / "runs" / "vae")
    return Workspace(root)


@pytest.fixture(scope="module")
def server(ws):
    """The lab on a free loopback port, served by uvicorn in a thread; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(ws), log_level="warning", lifespan="on"))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    t0 = time.monotonic()
    while not srv.started:
        assert th.is_alive() and time.monotonic() - t0 < WAIT, "the lab server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(timeout=15)
    sock.close()
    assert not th.is_alive(), "the lab server did not stop"


@pytest.fixture
def driver():
    d = chrome_driver(["--window-size=1366,900"], performance_log=True)
    d.set_page_load_timeout(WAIT)
    d.set_script_timeout(WAIT)
    try:
        yield d
    finally:
        d.quit()


def wait_for(d, script, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < WAIT:
        if d.execute_script(script):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {WAIT} s waiting for {what}")


def check_clean(d, base):
    """No console error; every request went to the server and succeeded."""
    errors = [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    urls, bad = [], []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        p = msg.get("params", {})
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(p["request"]["url"])
        elif msg["method"] == "Network.responseReceived" and p["response"]["status"] >= 400:
            bad.append((p["response"]["url"], p["response"]["status"]))
        elif msg["method"] == "Network.loadingFailed":
            bad.append((p.get("requestId"), p.get("errorText")))
    assert urls and all(u.startswith(base + "/") for u in urls), [u for u in urls if not u.startswith(base + "/")]
    assert bad == []


def pixels(d, element_id=None, css=None):
    """A canvas's pixels (its red channel: the pages paint grey images) as an (H, W) array."""
    sel = f"document.getElementById('{element_id}')" if element_id else f"document.querySelector('{css}')"
    w, h, data = d.execute_script(f"const c = {sel}; const g = c.getContext('2d').getImageData(0, 0, c.width, c.height);"
                                  "return [c.width, c.height, Array.from(g.data)];")
    return np.asarray(data, np.int64).reshape(h, w, 4)[:, :, 0]


def test_drawn_stroke_is_reconstructed_as_pytorch_does(server, ws, driver):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d = driver
    d.get(f"{server}/draw?run=runs/ae&b=runs/vae")
    wait_for(d, "return window.aelabDraw && window.aelabDraw.ready && !window.aelabDraw.inflight", "the runs")
    pad = d.find_element(By.ID, "pad")
    w = pad.rect["width"]
    stroke = [(0.25, 0.2), (0.75, 0.2), (0.7, 0.35), (0.55, 0.6), (0.45, 0.85)]  # a 7
    act = ActionChains(d, duration=30)
    act.move_to_element_with_offset(pad, int((stroke[0][0] - 0.5) * w), int((stroke[0][1] - 0.5) * w)).click_and_hold()
    for x, y in stroke[1:]:
        act.move_to_element_with_offset(pad, int((x - 0.5) * w), int((y - 0.5) * w))
    act.release().perform()
    wait_for(d, "const s = window.aelabDraw; return s.paintedGen === s.gen && !s.inflight", "the reconstruction")
    x = pixels(d, "input")
    assert x.shape == (28, 28) and x.max() == 255 and (x > 0).sum() > 30  # a digit, as the model sees it
    for side, rel in (("A", "runs/ae"), ("B", "runs/vae")):
        got = pixels(d, css=f".model[data-side={side}] canvas.recon")
        run = ws.open_run(rel)
        want = to_uint8(run.reconstruct(x.astype(np.float32)[None, None]), 255)[0, 0].astype(np.int64)
        assert np.abs(got - want).max() <= 1, rel  # within 1/255 of PyTorch's output
    assert d.execute_script("return document.querySelector('.model[data-side=B] .bars-caption').textContent").startswith(
        "the code: μ")
    check_clean(d, server)


def test_latent_map_hover_and_click(server, ws, driver):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d = driver
    d.get(f"{server}/explore?run=runs/vae")
    wait_for(d, "return window.aelabExplore && window.aelabExplore.loaded", "the latent map")
    n = d.execute_script("return window.aelabExplore.pts.length / 2")
    assert n >= 5000
    over = d.find_element(By.ID, "overlay")
    # a point of the map, in CSS pixels from the overlay's centre, and the test image it stands for
    i, k, dx, dy = d.execute_script(
        "const s = window.aelabExplore, r = document.getElementById('overlay').getBoundingClientRect();"
        "const i = 123; return [i, s.order[i], s.view.sx(s.pts[2*i]) / s.view.dpr - r.width / 2,"
        " s.view.sy(s.pts[2*i+1]) / s.view.dpr - r.height / 2];")
    ActionChains(d).move_to_element_with_offset(over, round(dx), round(dy)).perform()
    wait_for(d, "return document.getElementById('hover').style.display === 'block'", "the hover image")
    from aelab.runs.codes import read_codes

    codes = read_codes(ws.resolve("runs/vae"))
    hovered = d.execute_script("return window.aelabExplore.hovered")
    image = ws.open_run("runs/vae").dataset.x_test[codes["test_index"][d.execute_script(
        f"return window.aelabExplore.order[{hovered}]")], 0]
    assert (pixels(d, "hover-img") == image).all()  # the very test image under the pointer (or its twin dot)
    assert hovered == i or np.hypot(*(codes["test_codes"][hovered] - codes["test_codes"][k])) < 1

    ActionChains(d).click().perform()
    wait_for(d, "return !document.getElementById('dec-fig').hidden && window.aelabExplore.z", "the decoded point")
    sel = d.execute_script("return window.aelabExplore.order[window.aelabExplore.sel]")
    run = ws.open_run("runs/vae")
    want = to_uint8(run.decode(codes["test_codes"][sel:sel + 1].astype(np.float32)), 255)[0, 0]
    assert np.abs(pixels(d, "decoded") - want).max() <= 1
    assert d.execute_script("return document.querySelectorAll('#neighbours canvas').length") == 8

    # a click in empty space decodes that location of the 2-D code
    d.execute_script("window.aelabExplore.z = null")
    ActionChains(d).move_to_element_with_offset(over, 5 - round(over.rect["width"] / 2),
                                                5 - round(over.rect["height"] / 2)).click().perform()
    wait_for(d, "return window.aelabExplore.loc && !window.aelabExplore.busy", "the decoded location")
    loc = d.execute_script("return window.aelabExplore.loc")
    want = to_uint8(run.decode(np.asarray([loc], np.float32)), 255)[0, 0]
    assert np.abs(pixels(d, "decoded") - want).max() <= 1
    assert d.execute_script("return document.getElementById('orig-fig').hidden")
    check_clean(d, server)
