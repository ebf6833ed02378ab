"""The HTML report opens in headless Chromium with every image loaded and no console error."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.browser


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    r = subprocess.run([sys.executable, "-m", "aelab.cli", "study", "exercise12", "--quick", "--set",
                        "data.dataset=synthetic", "--out", str(out), "-q"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def test_report_loads_every_image_without_console_errors(report_dir):
    webdriver = pytest.importorskip("selenium.webdriver")
    chrome, driver_path = _chromium(), shutil.which("chromedriver")
    if not chrome or not driver_path:
        pytest.skip("headless Chromium and chromedriver are not installed (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.get((report_dir / "report.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])")
        assert len(images) >= 10  # loss curves + reconstructions for 5 questions
        for complete, width, src in images:
            assert complete and width > 0, src
            assert src.startswith("data:image/png;base64")  # self-contained: nothing fetched
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        assert "Exercise 12" in driver.title or "Exercise 12" in driver.page_source
    finally:
        driver.quit()
