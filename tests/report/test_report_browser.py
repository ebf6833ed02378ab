"""The HTML report opens in headless Chromium with every image loaded and no console error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import chrome_driver

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    r = subprocess.run([sys.executable, "-m", "aelab.cli", "study", "exercise12", "--quick", "--set",
                        "data.dataset=synthetic", "--out", str(out), "-q"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def _run_cli(args, timeout=600):
    r = subprocess.run([sys.executable, "-m", "aelab.cli", *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    """The families comparison study on a small synthetic slice, one epoch (six families, every figure)."""
    out = tmp_path_factory.mktemp("compare")
    _run_cli(["study", "compare", "--quick", "--set", "data.dataset=synthetic", "--set", "data.limit=256",
              "--set", "data.test_limit=64", "--set", "train.epochs=1", "--out", str(out), "-q"])
    return out


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """A sweep on scikit-learn's 8×8 digits (bundled: offline), two seeds: bands and 8×8 grids."""
    out = tmp_path_factory.mktemp("digits")
    _run_cli(["sweep", "--dataset", "digits", "--param", "model.code_size", "--values", "8,32", "--epochs", "1",
              "--seeds", "2", "--out", str(out), "-q"])
    return out


def _driver():
    return chrome_driver()


def _check_page(directory, min_images: int) -> str:
    """Open report.html: every image loaded from a data URI, no console error; returns the page text."""
    driver = _driver()
    try:
        driver.get((directory / "report.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])")
        assert len(images) >= min_images
        for complete, width, src in images:
            assert complete and width > 0, src
            assert src.startswith("data:image/png;base64")  # self-contained: nothing fetched
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        return driver.execute_script("return document.body.innerText")
    finally:
        driver.quit()


def test_report_loads_every_image_without_console_errors(report_dir):
    text = _check_page(report_dir, 10)  # loss curves + reconstructions for 5 questions
    assert "Exercise 12" in text


def test_compare_report_loads_every_image(compare_dir):
    text = _check_page(compare_dir, 16)  # the gallery, and loss, reconstructions and code maps for 5 questions
    assert "Every run" in text and "Data: synthetic" in text


def test_digits_sweep_report_loads_every_image(digits_dir):
    text = _check_page(digits_dir, 2)  # the sweep plot and the reconstructions
    assert "Data: digits" in text and "8×8 grayscale images" in text
    assert "seeds per value" in text
