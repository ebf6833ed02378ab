"""The browser lab's interactive speed, measured in headless Chromium against a real server.

* **Draw → reconstruction round trip**: a stroke is drawn on the Draw page's canvas (pointer events
  dispatched to it, each stroke a different random "digit"), the page sends it, the server
  rasterises and preprocesses it, the model reconstructs it, and the page paints the result; the
  time from the first pointer event of the stroke to the painted reconstruction, over ``--strokes``
  strokes (after ``--warmup``), for the lab's undercomplete AE (``aelab train``'s default), the Keras
  blog's conv AE (preset ``keras-blog-conv``) and the keras.io VAE (preset ``keras-io-vae``).
  Target (issue 20): p95 ≤ 50 ms for the lab AE on the project's 2-core CPU.
* **Hover feedback on the latent map** of 5,000 test codes (the lab AE's PCA map): from a pointer
  move over the map to the hovered image and markers drawn (the handler is synchronous: what it
  draws is on screen at the next frame); a frame is 16.7 ms at 60 Hz.

* **Training through the page vs ``aelab train``** (``--what train``): the same run (the lab AE on
  ``--train-limit`` MNIST images, ``--train-epochs`` epochs) trained by :func:`aelab.train` and by
  the lab's trainer (events, the per-epoch reconstruction row and the map of 300 test codes, drawn
  between epochs), alternated ``--rounds`` times; the median seconds per epoch of each, and
  the preview's own time per epoch (issue 20: the page no slower per epoch than ``aelab train``).

The server's share is measured too: the same requests handled in-process (no HTTP, no browser),
in wall time and in CPU time (what a request costs whatever else the machine runs).

``python -m benchmarks.serve`` trains the three runs (one epoch on ``--limit`` MNIST images; the
speed does not depend on how well they are trained) into a temporary workspace, or measures the
runs of ``--workspace DIR`` (``--ae``, ``--conv``, ``--vae``: their paths in it). The machine's
load average is printed with the figures: on a shared machine, other processes' work shows in them.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

DRAW_SCRIPT = r"""
const [n, warm, seed, done] = [arguments[0], arguments[1], arguments[2], arguments[arguments.length - 1]];
const st = window.aelabDraw, pad = document.getElementById("pad"), r = pad.getBoundingClientRect();
let s = seed;
const rnd = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; };
const out = [];
function ev(type, x, y) {
  pad.dispatchEvent(new PointerEvent(type, {bubbles: true, cancelable: true, pointerId: 1, pointerType: "mouse",
    isPrimary: true, buttons: type === "pointerup" ? 0 : 1, clientX: r.left + x * r.width, clientY: r.top + y * r.height}));
}
function stroke() {
  // a random "digit": a clear, then one stroke of 12 points wandering over the pad
  document.getElementById("clear").click();
  let x = 0.2 + 0.6 * rnd(), y = 0.15 + 0.2 * rnd();
  const t0 = performance.now();
  ev("pointerdown", x, y);
  for (let k = 0; k < 12; k++) {
    x = Math.min(0.95, Math.max(0.05, x + (rnd() - 0.5) * 0.3)); y = Math.min(0.95, y + 0.06 * rnd());
    ev("pointermove", x, y);
  }
  ev("pointerup", x, y);
  const gen = st.gen;
  return new Promise(ok => { st.onPaint = g => { if (g === gen) { st.onPaint = null; ok(performance.now() - t0); } }; });
}
(async () => {
  for (let i = 0; i < warm + n; i++) {
    const ms = await stroke();
    if (i >= warm) out.push(ms);
    await new Promise(ok => setTimeout(ok, 5));
  }
  done(out);
})().catch(e => done(String(e)));
"""

HOVER_SCRIPT = r"""
const [n, done] = [arguments[0], arguments[arguments.length - 1]];
const st = window.aelabExplore, ov = document.getElementById("overlay"), r = ov.getBoundingClientRect();
const out = [];
let s = 7;
const rnd = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; };
(async () => {
  for (let k = 0; k < n; k++) {
    const i = Math.floor(rnd() * (st.pts.length / 2));
    const x = st.view.sx(st.pts[2 * i]) / st.view.dpr, y = st.view.sy(st.pts[2 * i + 1]) / st.view.dpr;
    const t0 = performance.now();
    ov.dispatchEvent(new PointerEvent("pointermove", {bubbles: true, clientX: r.left + x, clientY: r.top + y,
                                                      pointerType: "mouse", isPrimary: true}));
    out.push(performance.now() - t0);
    await new Promise(ok => requestAnimationFrame(() => ok()));
  }
  done([out, st.pts.length / 2, document.getElementById("hover").style.display]);
})().catch(e => done(String(e)));
"""


RESOURCE_SCRIPT = """return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/lab/draw'))
  .map(e => [e.startTime, e.requestStart, e.responseStart, e.responseEnd])"""


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * len(xs) + 0.5)) - 1))]


def _line(name: str, xs: list[float]) -> str:
    return (f"{name:<34} n={len(xs):<4} p50 {statistics.median(xs):6.1f} ms   p95 {_pct(xs, 95):6.1f} ms   "
            f"max {max(xs):6.1f} ms")


def _train(root: Path, limit: int) -> dict[str, str]:
    import aelab  # deferred: only when the runs are trained here
    from aelab.presets import load_preset  # deferred: only when the runs are trained here

    base = {"data.limit": limit, "data.test_limit": 5000, "train.epochs": 1}
    out = {}
    for key, preset in (("ae", None), ("conv", "keras-blog-conv"), ("vae", "keras-io-vae")):
        cfg = aelab.RunConfig() if preset is None else load_preset(preset)
        cfg = aelab.fit_config(cfg.with_overrides(base))
        print(f"training {key} ({preset or 'the lab AE'}), 1 epoch on {limit} images…", file=sys.stderr, flush=True)
        aelab.train(cfg, root / "runs" / key)
        out[key] = f"runs/{key}"
    return out


def train_speed(limit: int, epochs: int, rounds: int) -> list[str]:
    """Seconds per epoch: :func:`aelab.train` alone, and the lab's trainer with its per-epoch preview."""
    import aelab  # deferred: only when measured
    from aelab.serve.training import Trainer  # deferred: the serve extra
    from aelab.serve.workspace import Workspace  # deferred: the serve extra

    cfg = aelab.fit_config(aelab.RunConfig().with_overrides(
        {"data.limit": limit, "data.test_limit": 1000, "train.epochs": epochs, "name": "speed"}))
    tmp = Path(tempfile.mkdtemp(prefix="aelab-serve-speed-"))
    cli, page, frames = [], [], []
    try:
        trainer = Trainer(Workspace(tmp))
        for r in range(rounds):
            res = aelab.train(cfg, tmp / f"cli-{r}", data=trainer.data(), progress=False)
            cli += list(res.history["epoch_seconds"])[1:]  # the first epoch warms up in both
            job = trainer.start(cfg, tmp / "runs" / f"page-{r}")
            job.thread.join(600)
            if job.state != "finished":
                raise SystemExit(f"the page's training ended {job.state}: {job.message}")
            secs = [ev["seconds"] for ev in job.events if ev["type"] == "epoch"]
            page += secs[1:]
            frames += job.frame_seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ms = [1000 * s for s in frames]
    return [f"{'seconds per epoch, aelab.train':<34} n={len(cli):<4} median {statistics.median(cli):6.3f} s",
            f"{'seconds per epoch, the lab page':<34} n={len(page):<4} median {statistics.median(page):6.3f} s   "
            f"({100 * (statistics.median(page) / statistics.median(cli) - 1):+.1f} %)",
            _line("  the page's preview per epoch", ms) + "   (recon row + 300-code map, between epochs)"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", help="measure the runs of this workspace (default: train them in a temporary one)")
    ap.add_argument("--ae", default="runs/ae", help="the lab AE's path in --workspace")
    ap.add_argument("--conv", default="runs/conv", help="the conv AE's path in --workspace")
    ap.add_argument("--vae", default="runs/vae", help="the VAE's path in --workspace")
    ap.add_argument("--strokes", type=int, default=120, help="strokes measured per run (default 120)")
    ap.add_argument("--warmup", type=int, default=10, help="strokes drawn first, not measured")
    ap.add_argument("--hovers", type=int, default=300, help="pointer moves measured on the map")
    ap.add_argument("--limit", type=int, default=2000, help="training images when training the runs")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads of the server (default 1)")
    ap.add_argument("--what", default="draw,hover,train", help="what to measure: draw, hover, train (comma-separated)")
    ap.add_argument("--train-limit", type=int, default=12000, help="MNIST images of the training-speed runs")
    ap.add_argument("--train-epochs", type=int, default=5, help="epochs of each training-speed run")
    ap.add_argument("--rounds", type=int, default=2, help="training-speed runs of each kind, alternated")
    args = ap.parse_args(argv)
    what = set(args.what.split(","))
    if what == {"train"}:
        for line in train_speed(args.train_limit, args.train_epochs, args.rounds):
            print(line, flush=True)
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
        return 0

    import torch  # deferred: --help answers without the heavy imports
    import uvicorn  # deferred: the serve extra
    from selenium import webdriver  # deferred: the test extra
    from selenium.webdriver.chrome.service import Service  # deferred: the test extra

    from aelab.serve.app import create_app  # deferred: the serve extra
    from aelab.serve.command import listen_socket  # deferred: the serve extra
    from aelab.serve.lab import Lab  # deferred: the serve extra
    from aelab.serve.workspace import Workspace  # deferred: the serve extra

    torch.set_num_threads(args.threads)
    tmp = None
    if args.workspace:
        root = Path(args.workspace)
        runs = {"ae": args.ae, "conv": args.conv, "vae": args.vae}
    else:
        tmp = tempfile.mkdtemp(prefix="aelab-serve-bench-")
        root = Path(tmp)
        runs = _train(root, args.limit)
    ws = Workspace(root)
    sock = listen_socket("127.0.0.1", 0)  # as aelab serve listens (its connections without Nagle's delay)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(ws), log_level="warning", lifespan="on"))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    while not srv.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--window-size=1366,900"):
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    d.set_script_timeout(600)
    lines = []
    try:
        labels = {"ae": "lab AE (Dense 32 → 784)", "conv": "conv AE (keras-blog-conv)", "vae": "VAE (keras-io-vae)"}
        for key, rel in runs.items():
            ws.open_run(rel)  # opened once (as a first visit would), not part of a round trip
            d.get(f"{base}/draw?run={rel}&b=")
            t0 = time.monotonic()
            while not d.execute_script("return !!(window.aelabDraw && window.aelabDraw.ready && !window.aelabDraw.inflight)"):
                if time.monotonic() - t0 > 120:
                    raise SystemExit(f"the draw page did not load the runs for {rel}")
                time.sleep(0.05)
            d.execute_script("performance.clearResourceTimings(); performance.setResourceTimingBufferSize(10000)")
            ms = d.execute_async_script(DRAW_SCRIPT, args.strokes, args.warmup, 12345)
            if isinstance(ms, str):
                raise SystemExit(f"draw benchmark failed on {rel}: {ms}")
            lines.append(_line(f"draw → reconstruction, {labels[key]}", ms))
            # where a round trip goes, from the browser's Resource Timing of the measured requests
            ents = d.execute_script(RESOURCE_SCRIPT)[args.warmup:]
            if ents:
                lines.append(f"  {'of which':<32} request sent {statistics.median(e[1] - e[0] for e in ents):.1f} ms, "
                             f"to its first byte {statistics.median(e[2] - e[1] for e in ents):.1f} ms, "
                             f"to its end {statistics.median(e[3] - e[2] for e in ents):.1f} ms (p50 each)")
            print("\n".join(lines[-2:]), flush=True)
        d.get(f"{base}/explore?run={runs['ae']}")
        t0 = time.monotonic()
        while not d.execute_script("return !!(window.aelabExplore && window.aelabExplore.loaded)"):
            if time.monotonic() - t0 > 300:
                raise SystemExit("the explore page did not load its map")
            time.sleep(0.1)
        res = d.execute_async_script(HOVER_SCRIPT, args.hovers)
        if isinstance(res, str):
            raise SystemExit(f"hover benchmark failed: {res}")
        ms, n, shown = res
        lines.append(_line(f"hover feedback, {int(n):,}-point map", ms) + f"   (hover image shown: {shown == 'block'})")
        print(lines[-1], flush=True)
        # the server's share: the same kind of request handled in-process (no HTTP, no browser)
        lab, rng = Lab(ws), random.Random(1)
        for key, rel in runs.items():
            ms, cpu = [], []
            for i in range(args.warmup + args.strokes):
                pts, x, y = [], 0.2 + 0.6 * rng.random(), 0.15 + 0.2 * rng.random()
                for _ in range(13):
                    pts.append([round(x * 336, 1), round(y * 336, 1)])
                    x, y = min(0.95, max(0.05, x + (rng.random() - 0.5) * 0.3)), min(0.95, y + 0.06 * rng.random())
                t0, c0 = time.perf_counter(), time.thread_time()
                lab.draw({"runs": [rel], "strokes": [pts], "size": [336, 336], "pen": 24})
                if i >= args.warmup:
                    ms.append((time.perf_counter() - t0) * 1000)
                    cpu.append((time.thread_time() - c0) * 1000)
            # CPU time: what the request costs whatever else the machine runs (wall time counts the waits)
            lines.append(_line(f"  of which server work, {key}", ms) + f"   CPU p50 {statistics.median(cpu):.1f} ms "
                         f"p95 {_pct(cpu, 95):.1f} ms")
            print(lines[-1], flush=True)
    finally:
        d.quit()
        srv.should_exit = True
        th.join(timeout=15)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if "train" in what:
        for line in train_speed(args.train_limit, args.train_epochs, args.rounds):
            print(line, flush=True)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min); "
          f"server: PyTorch {torch.__version__}, {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
