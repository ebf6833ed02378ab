"""The lab in headless Chromium: open the workspace, train a small model from the Train page and
watch its curves grow to the end, stop a training and resume it — with no console error, no failed
request and no request to any host but the lab server (Chrome's performance log)."""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("starlette")
pytest.importorskip("selenium")
uvicorn = pytest.importorskip("uvicorn")

from aelab.serve.app import create_app  # noqa: E402
from aelab.serve.workspace import Workspace  # noqa: E402
from conftest import chrome_driver  # noqa: E402

pytestmark = pytest.mark.browser
LIMIT_S = 150  # the most one wait takes before the test fails by name


@pytest.fixture
def server(tmp_path):
    """The lab on a free port of 127.0.0.1, in a thread of this process; stopped (trainings
    checkpointed) at the end."""
    app = create_app(Workspace(tmp_path))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    t = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    end = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < end and t.is_alive(), "the lab server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app, tmp_path
    finally:
        srv.should_exit = True
        t.join(LIMIT_S)
        sock.close()
        assert not t.is_alive(), "the lab server did not stop"


@pytest.fixture
def driver():
    d = chrome_driver(["--window-size=1366,900"], performance_log=True)
    d.set_page_load_timeout(LIMIT_S)
    d.set_script_timeout(30)
    try:
        yield d
    finally:
        d.quit()


def wait_for(driver, cond, what: str, limit: float = LIMIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, limit, poll_frequency=0.2).until(lambda d: cond(d))
    except Exception as exc:  # TimeoutException: say what did not happen
        raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}") from exc


def state(d) -> str:
    return d.find_element("id", "run-state").text


def points(d) -> int:
    return len(d.find_elements("css selector", ".chart-box[data-term='loss'] circle.pt.train"))


class Network:
    """Every request the browser made, from Chrome's performance log, read as the test goes."""

    def __init__(self, driver) -> None:
        self.driver, self.urls, self.failed, self.bad_status = driver, [], [], []

    def read(self) -> None:
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            p = msg.get("params", {})
            if msg["method"] == "Network.requestWillBeSent":
                self.urls.append(p["request"]["url"])
            elif msg["method"] == "Network.loadingFailed" and not p.get("canceled"):
                self.failed.append(p.get("errorText"))
            elif msg["method"] == "Network.responseReceived" and p["response"]["status"] >= 400:
                self.bad_status.append((p["response"]["status"], p["response"]["url"]))

    def check(self, base: str) -> None:
        self.read()
        host = urlsplit(base).netloc
        foreign = [u for u in self.urls if not u.startswith(("data:", "blob:")) and urlsplit(u).netloc != host]
        assert not foreign, f"requests to other hosts: {foreign}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.bad_status, f"error responses: {self.bad_status}"


def console_errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_train_watch_stop_and_resume_in_the_browser(server, driver):
    base, app, root = server
    net = Network(driver)
    driver.get(base + "/")
    assert driver.find_element("tag name", "h1").text == "Workspace"
    driver.find_element("link text", "Train").click()
    wait_for(driver, lambda d: d.find_elements("id", "train-form"), "the train form")

    # a small training, watched to the end: one point per epoch (it may finish before the page
    # connects, on digits; the long run below is the one seen growing)
    form = driver.find_element("id", "train-form")
    for key, value in (("f-train-epochs", "3"), ("f-code_size", "16")):
        box = form.find_element("id", key)
        box.clear()
        box.send_keys(value)
    driver.find_element("id", "start").click()
    wait_for(driver, lambda d: "/train/run/runs/16relu-64sigmoid-digits" in d.current_url, "the run's page")
    wait_for(driver, lambda d: state(d) == "finished", "the run to finish")
    assert points(driver) == 3
    assert driver.find_elements("css selector", ".chart-box[data-term='loss'] circle.pt.val")
    img = wait_for(driver, lambda d: d.find_elements("id", "recon-png"), "the finished run's reconstructions")[0]
    wait_for(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img),
             "recon.png to load")
    assert driver.find_element("id", "epoch-text").text == "epoch 3 of 3"
    # opened again once finished (the job's snapshot, with its last map): still the run's recon.png
    driver.get(driver.current_url)
    img = wait_for(driver, lambda d: d.find_elements("id", "recon-png"), "recon.png on the reopened page")[0]
    wait_for(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img),
             "recon.png to load on the reopened page")
    assert not driver.find_element("id", "codes-empty").is_displayed()  # and the last epoch's code map

    # a long one, seen growing: stop it after its first epoch (a checkpoint), resume it, and see it go on
    driver.get(base + "/train")
    form = driver.find_element("id", "train-form")
    for key, value in (("f-train-epochs", "200"), ("f-name", "stopme")):
        box = form.find_element("id", key)
        box.clear()
        box.send_keys(value)
    driver.find_element("id", "start").click()
    wait_for(driver, lambda d: d.current_url.endswith("/train/run/runs/stopme") and points(d) >= 1, "the first epoch")
    driver.find_element("id", "btn-stop").click()
    wait_for(driver, lambda d: state(d) == "stopped", "the stop")
    stopped_at = points(driver)
    job = app.state.trainer.jobs["runs/stopme"]
    assert not job.alive and (root / "runs" / "stopme" / "checkpoint" / "state.json").is_file()
    wait_for(driver, lambda d: d.find_element("id", "btn-resume").is_enabled(), "Resume to be offered")
    driver.find_element("id", "btn-resume").click()
    wait_for(driver, lambda d: points(d) > stopped_at, "an epoch after the resume")
    assert state(driver) in ("training", "pausing")
    driver.find_element("id", "btn-stop").click()
    wait_for(driver, lambda d: state(d) == "stopped", "the second stop")

    # the workspace page lists both: one finished with its thumbnail, one interrupted
    driver.get(base + "/")
    listed = ("runs/16relu-64sigmoid-digits", "runs/stopme")
    wait_for(driver, lambda d: all(d.find_elements("css selector", f"tr[data-run='{r}']") for r in listed),
             f"the workspace page to list {listed} (it shows: "
             f"{[r.get_attribute('data-run') for r in driver.find_elements('css selector', 'tr[data-run]')]})", 10)
    rows = {r.get_attribute("data-run"): r for r in driver.find_elements("css selector", "tr[data-run]")}
    assert rows["runs/16relu-64sigmoid-digits"].find_element("css selector", ".status").text == "finished"
    assert rows["runs/stopme"].find_element("css selector", ".status").text == "interrupted"
    thumb = rows["runs/16relu-64sigmoid-digits"].find_element("css selector", "img.thumb")
    wait_for(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", thumb),
             "the thumbnail to load")
    assert not console_errors(driver), console_errors(driver)
    net.check(base)


def test_a_bad_upload_shows_its_message_and_a_good_one_is_offered(server, driver):
    base, app, root = server
    net = Network(driver)
    bad = root.parent / "scores.csv"
    bad.write_text("a,b\n1,2\n3,three\n")
    good = root.parent / "points.csv"
    good.write_text("x,y,z\n" + "".join(f"{i % 7},{i % 5},{i % 3}\n" for i in range(40)))
    driver.get(base + "/train")
    driver.find_element("id", "upload-file").send_keys(str(bad))
    driver.find_element("id", "upload-send").click()
    msg = wait_for(driver, lambda d: d.find_elements("id", "upload-error"), "the upload's message")[0]
    assert msg.text == ("scores.csv: row 3, column 'b' holds 'three', not a number; every feature must be a number "
                        "(name a label column in the Label column field)")
    # beside the upload field, and the field marked
    field = driver.find_element("id", "upload-file").find_element("xpath", "..")
    assert "invalid" in field.get_attribute("class") and msg.find_element("xpath", "..") == field
    assert not (root / "uploads").exists() or not any((root / "uploads").iterdir())
    driver.find_element("id", "upload-file").send_keys(str(good))
    driver.find_element("id", "upload-send").click()
    wait_for(driver, lambda d: d.find_elements("id", "upload-ok"), "the upload's confirmation")
    chosen = driver.find_element("id", "f-data-dataset").get_attribute("value")
    assert chosen == "upload:points"
    assert "40 rows × 3 columns" in driver.find_element("css selector", "#f-data-dataset option:checked").text
    # the refused upload's page is answered 400 on purpose (Chrome logs that status): that one, and nothing else
    errors = console_errors(driver)
    assert [e["source"] for e in errors] == ["network"] and "/train/upload" in errors[0]["message"], errors
    net.read()
    assert [u.split("?")[0] for s, u in net.bad_status] == [base + "/train/upload"], net.bad_status
    net.bad_status.clear()
    net.check(base)
