"""What the tests share: fixtures, a config builder, and the helpers several test modules use (a stop
flag that stops after n steps, a bitwise run comparison, fake study results for the report tests, an
HTML table reader, a file-tree digest) — here, so no test module imports another."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aelab.config import RunConfig
from aelab.data import mnist_info
from aelab.engine.loop import StopFlag


@pytest.fixture(autouse=True)
def _torch_threads():
    # Small tensors: one thread keeps the tests fast and their timings steady on 2 cores.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_cfg(**kw) -> RunConfig:
    """A RunConfig on synthetic data; keyword args are dotted overrides with '__' for '.'."""
    base = {"data.dataset": "synthetic", "data.limit": 512, "data.test_limit": 128, "train.epochs": 2,
            "train.batch_size": 64}
    base.update({k.replace("__", "."): v for k, v in kw.items()})
    return RunConfig().with_overrides(base)


@pytest.fixture
def cfg_factory():
    return make_cfg


# -- training: stop after n steps, compare two runs bit for bit ------------------------------------
class StopAfter(StopFlag):
    """Requests a stop when the flag is asked for the (n+1)-th time (the loop asks before each step)."""

    def __init__(self, n: int) -> None:
        self._n, self._asked, self._req = n, 0, None
        self._old = {}

    @property
    def requested(self):
        self._asked += 1
        return "test stop" if self._asked > self._n else None

    @requested.setter
    def requested(self, value):
        self._req = value


class StopAfterNextStep(StopFlag):
    """Once armed (``arm()``, from an epoch-end hook for instance), requests a stop after one more
    training step: the loop asks before each step, so the first ask lets a step through."""

    def __init__(self) -> None:
        super().__init__()
        self._asks: Optional[int] = None

    def arm(self) -> None:
        self._asks = 0

    @property
    def requested(self):
        if self._asks is None:
            return None
        self._asks += 1
        return "test stop" if self._asks > 1 else None

    @requested.setter
    def requested(self, value):
        pass



def same_run(a: Path, b: Path, exact: bool = True) -> None:
    wa, wb = load_file(str(a / "weights.safetensors")), load_file(str(b / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        if exact:
            assert (wa[k] == wb[k]).all(), k  # bit for bit
        else:
            assert torch.allclose(wa[k], wb[k], rtol=1e-4, atol=1e-5), k
    ha, hb = json.loads((a / "history.json").read_text()), json.loads((b / "history.json").read_text())
    for k in ("epoch", "loss", "val_loss", "penalty", "val_penalty"):
        if exact:
            assert ha[k] == hb[k], k
        else:
            assert ha[k] == pytest.approx(hb[k], rel=1e-5), k


# -- fake study results for the report tests ------------------------------------------------------
def curve(start: float, end: float, epochs: int, shape: float = 3.0) -> list[float]:
    """An exponential-looking decay from start to end."""
    return [end + (start - end) * math.exp(-shape * i / max(epochs - 1, 1)) for i in range(epochs)]



def make_run(name, epochs, loss0, loss1, val_gap=0.002, noise=0.0, penalty=0.0, ssim=0.8, psnr=20.0,
             dead=2, diversity=0.9, noisy=None):
    loss = curve(loss0, loss1, epochs)
    history = {
        "epoch": list(range(1, epochs + 1)),
        "loss": loss,
        "val_loss": [x - val_gap for x in loss],
        "penalty": [penalty] * epochs,
        "val_penalty": [penalty] * epochs,
        "epoch_seconds": [1.5] * epochs,
        "images_per_second": [40000.0] * epochs,
    }
    metrics = {
        "n_test": 10000, "bce": loss1 - val_gap, "mse": loss1 / 9, "psnr": psnr, "ssim": ssim,
        "code": {"units": 32, "dead_units": dead, "dead_fraction": dead / 32,
                 "mean_activation": 2.3, "zero_fraction": 0.41},
        "diversity": diversity,
    }
    if noisy is not None:
        metrics["noisy"] = noisy
    return {
        "name": name,
        "dir": f"runs/{name}-0123abcd",
        "config": {"config_hash": "0123abcd" * 8, "data": {"noise_factor": noise}, "train": {"epochs": epochs}},
        "history": history,
        "metrics": metrics,
    }



def write_samples(root: Path, run: dict, rng: np.random.Generator, noisy: bool) -> None:
    d = root / run["dir"]
    d.mkdir(parents=True, exist_ok=True)
    arrays = {"original": rng.random((10, 784), dtype=np.float32),
              "recon": rng.random((10, 784), dtype=np.float32)}
    if noisy:
        arrays["noisy"] = rng.random((10, 784), dtype=np.float32)
        arrays["recon_noisy"] = rng.random((10, 784), dtype=np.float32)
    np.savez(d / "samples.npz", **arrays)



class Tables(HTMLParser):
    """Collects every <table id=...> as a list of rows of cell texts, and every <img src>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.imgs: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "table":
            self._table = a.get("id") or f"anon{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)



def parse(html: str) -> Tables:
    p = Tables()
    p.feed(html)
    p.close()
    return p


def cfg(run: dict, **data) -> dict:
    """Give a make_run() record a realistic config (model/data/train blocks)."""
    run = copy.deepcopy(run)
    run["config"] = {
        "name": run["name"],
        "model": {"encoder": ["32:relu"], "decoder": ["784:sigmoid"], "activity_l1": 0.0},
        "data": {"dataset": "mnist", "scaling": "minmax", "scaler_fit": "per_split", "noise_factor": 0.0,
                 "limit": None, "test_limit": None, **data},
        "train": {"epochs": len(run["history"]["loss"]), "batch_size": 64, "seed": 2022},
        "config_hash": "0123abcd" * 2,
    }
    return run



def write_study(root: Path, runs: dict, questions: list, **extra) -> Path:
    rng = np.random.default_rng(0)
    for run in runs.values():
        write_samples(root, run, rng, noisy="noisy" in run["metrics"])
    results = {"study": "toy", "title": "Toy study", "protocol": "seed", "quick": False, "wall_seconds": 3.0,
               "runs": runs, "questions": questions, **extra}
    (root / "results.json").write_text(json.dumps(results))
    return root



def q(qid, b, v, claims=()):
    return {"id": qid, "section": "S", "question": f"Question {qid}?", "baseline": b, "variant": v,
            "claims": list(claims)}


# -- output checks --------------------------------------------------------------------------------
def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("aelab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err



def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) → the SHA-256 of its bytes."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def mnist_available() -> bool:
    """Whether verified MNIST files are in the cache."""
    try:
        info = mnist_info()
    except Exception:
        return False
    files = info.get("files", {})
    return bool(files) and all(f.get("verified") for f in files.values()) if isinstance(files, dict) else False


# -- headless Chromium (the report's and the lab's browser tests) --------------------------------------
def chromium():
    """The path of Debian's chromium (or another Chrome), or None."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chrome_driver(extra_flags=(), performance_log: bool = False):
    """A headless Chrome driven by chromedriver, its console log kept (and Chrome's performance log, to
    see every request); the test is skipped where either is not installed (.ci/run installs them)."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver")
    chrome, driver_path = chromium(), shutil.which("chromedriver")
    if not chrome or not driver_path:
        pytest.skip("headless Chromium and chromedriver are not installed (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", *extra_flags):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", **({"performance": "ALL"} if performance_log else {})})
    return webdriver.Chrome(service=Service(driver_path), options=opts)
