"""How one run flows through aelab, and what start-up, training and finishing cost.

Command (on an idle machine; MNIST in the cache: ``aelab data fetch``)::

    python -m benchmarks.flow              # trace + --help + 1-epoch train + quick study
    python -m benchmarks.flow --full       # ... and the full `aelab study exercise12`

What it measures, each in a fresh process so nothing is warm that a user's first call would not have:

1. **The trip of one RunConfig** from ``aelab.train_runs`` to its finished run (in-process, one run,
   1 epoch on a folder of 600 PNG images, the kind of data whose fingerprint lists and stats every
   file): the aelab modules whose functions run (module bodies run by imports not counted), how many
   times the flow enters a module of a higher layer than the caller's (a callback climbing back up),
   how many times ``config_hash`` runs, and how many times the folder is listed and its content
   fingerprint looked up (``content_sha256``: a listing each, the hashing memoised by the listing).
2. ``aelab --help`` wall time (median of 5 fresh processes).
3. A 1-epoch ``aelab train`` of the lab model on full MNIST, split into start-up (process start to the
   first epoch), training (the epoch as the history records it) and finishing (evaluation, codes,
   figures, artifacts), from the run's events; and ``aelab train --epochs 1`` itself, in 5 fresh
   processes, less each one's epoch, with the time its garbage collections took.
4. ``aelab study exercise12 --quick`` wall time, and how much of it is finishing.
5. With ``--full``: ``aelab study exercise12`` wall time.

Prints a Markdown block for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the layer of each top-level part of aelab (docs/design-notes.md; the import contracts enforce it)
LAYERS = {
    "cli": 7, "analysis": 7, "api": 7, "trained": 7, "report": 6, "study": 5, "runs": 4, "artifacts": 4,
    "engine": 3, "config": 2, "models": 2, "data": 2,
}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 1) if len(parts) > 1 else 7


def _python(code: str, env: dict | None = None, timeout: float = 1800) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return wall, out.stdout


# -- 1. the trip ------------------------------------------------------------------------------------
TRACE = r"""
import json, sys, tempfile, collections
import numpy as np
from PIL import Image
import aelab
from aelab import RunConfig
# a folder of 600 small images (the digits set as PNGs): the kind of data set whose fingerprint costs
# a listing and a stat of every file, so how often it is taken shows
root = tempfile.mkdtemp()
x, _, _, _, _ = aelab.data.DataCache().raw("digits")
for i, img in enumerate(x[:600]):
    Image.fromarray((np.asarray(img).reshape(8, 8) * 255 / 16).astype(np.uint8)).save(f"{root}/{i:04d}.png")
cfg = aelab.fit_config(RunConfig().with_overrides({"train.epochs": 1, "data.dataset": root,
                                                   "model.encoder": ["8:relu"]}))
out = tempfile.mkdtemp()
seen, order, climbs, counts = set(), [], 0, collections.Counter()
LAYERS = %r
def layer(m):
    p = m.split(".")
    return LAYERS.get(p[1], 1) if len(p) > 1 else 7
COUNTED = {("aelab.config", "config_hash"), ("aelab.data.content", "content_sha256")}
def prof(frame, event, arg):
    global climbs
    if event != "call":
        return
    m = frame.f_globals.get("__name__", "")
    name = frame.f_code.co_name
    if not m.startswith("aelab") or name == "<module>":
        return
    if (m, name) in COUNTED:
        counts[m + "." + name] += 1
    if m not in seen:
        seen.add(m); order.append(m)
    back = frame.f_back
    caller = back.f_globals.get("__name__", "") if back is not None else ""
    if caller.startswith("aelab") and caller != "aelab" and layer(m) > layer(caller):
        climbs += 1
sys.setprofile(prof)
aelab.train_runs([cfg], [out + "/run"], workers=1, progress=False)
sys.setprofile(None)
print(json.dumps({"modules": order, "climbs": climbs, "fingerprints": dict(counts)}))
""" % (LAYERS,)


def trip() -> dict:
    _, out = _python(TRACE)
    return json.loads(out.strip().splitlines()[-1])


# -- 2. --help --------------------------------------------------------------------------------------
def help_wall(n: int = 5) -> float:
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aelab.cli", "--help"], capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


# -- 3. a 1-epoch train, split by its events -------------------------------------------------------
TRAIN = r"""
import json, sys, time
t_start = float(sys.argv[1])
import aelab
from aelab import RunConfig
from aelab.runs import events as ev
stamps = {}
def on_event(e):
    now = time.time()
    stamps.setdefault(type(e).__name__, now)
    if isinstance(e, ev.RunFinished):
        stamps["RunFinished"] = now
cfg = RunConfig().with_overrides({"train.epochs": 1})
(res,) = aelab.train_runs([cfg], [sys.argv[2]], workers=1, progress=False, on_event=on_event, overwrite=True)
t_end = time.time()
print(json.dumps({"t_start": t_start, "t_end": t_end, "stamps": stamps,
                  "epoch_seconds": res.history["epoch_seconds"]}))
"""


#: fresh `aelab train --epochs 1` processes timed (their median is reported)
CLI_REPEATS = 5

#: the aelab command, with the time its garbage collections take summed (``gc.callbacks``) and
#: printed as the last line of stderr
CLI_GC = r"""
import gc, json, sys, time
spent, full, t = [0.0], [0], [0.0]
def timer(phase, info):
    if phase == "start":
        t[0] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - t[0]
        full[0] += info["generation"] == 2
gc.callbacks.append(timer)
from aelab.cli import main
code = main()  # as the aelab program runs it: the arguments from sys.argv
print(json.dumps({"seconds": spent[0], "full": full[0]}), file=sys.stderr)
sys.exit(code)
"""


def train_split(tmp: Path) -> dict:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", TRAIN, str(t0), str(tmp / "train1")], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"train child failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    s = r["stamps"]
    epoch = sum(r["epoch_seconds"])
    started = s["RunStarted"]
    finishing = s["RunFinished"] - s["RunFinishing"]
    total = r["t_end"] - r["t_start"]
    # CLI wall for the same job (argument parsing, config fitting, the same train), the median of
    # CLI_REPEATS fresh processes, each less its own epoch (from the run's history.json)
    walls, beyond, gcs = [], [], []
    for _ in range(CLI_REPEATS):
        t1 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CLI_GC, "train", "--epochs", "1", "--out",
                              str(tmp / "train-cli"), "--overwrite", "--quiet"], capture_output=True, text=True,
                             check=True)
        walls.append(time.perf_counter() - t1)
        hist = json.loads((tmp / "train-cli" / "history.json").read_text())
        beyond.append(walls[-1] - sum(hist["epoch_seconds"]))
        gcs.append(json.loads(out.stderr.strip().splitlines()[-1]))
    return {"start_up": started - r["t_start"], "epoch": epoch, "finishing": finishing, "total": total,
            "beyond_epoch": total - epoch, "cli_wall": statistics.median(walls),
            "cli_beyond_epoch": statistics.median(beyond), "cli_beyond_all": beyond,
            "cli_gc": statistics.median(g["seconds"] for g in gcs), "cli_gc_full": gcs[0]["full"]}


# -- 4/5. studies ------------------------------------------------------------------------------------
STUDY = r"""
import json, sys, time
t0 = time.time()
from aelab import load_study, run_study
from aelab.runs import events as ev
fin = {}
def on_event(e):
    if isinstance(e, ev.RunFinishing):
        fin[e.run] = [time.time(), None]
    elif isinstance(e, ev.RunFinished) and e.run in fin:
        fin[e.run][1] = time.time()
study = load_study("exercise12", quick=sys.argv[2] == "quick")
run_study(study, sys.argv[1], on_event=on_event)
t1 = time.time()
print(json.dumps({"wall": t1 - t0, "finishing": sum(b - a for a, b in fin.values() if b)}))
"""


def study(tmp: Path, quick: bool) -> dict:
    _, out = _python(STUDY.replace("sys.argv[1]", repr(str(tmp / ("quick" if quick else "full"))))
                     .replace("sys.argv[2]", repr("quick" if quick else "full")))
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="also time the full aelab study exercise12")
    ap.add_argument("--skip-study", action="store_true", help="skip the quick study")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = trip()
        h = help_wall()
        tr = train_split(tmp)
        q = None if args.skip_study else study(tmp, quick=True)
        f = study(tmp, quick=False) if args.full else None
    lines = [
        f"Load average at start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; at end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        f"- One RunConfig, `train_runs` → finished run: {len(t['modules'])} aelab modules, {t['climbs']} calls "
        f"into a higher layer (callbacks), calls: "
        f"{', '.join(f'{k} ×{v}' for k, v in t['fingerprints'].items()) or 'never'}.",
        f"  Modules: {', '.join(m.removeprefix('aelab.') for m in t['modules'])}.",
        f"- `aelab --help`: {h:.2f} s (median of 5).",
        f"- 1-epoch lab-model train (full MNIST, in a fresh process): start-up {tr['start_up']:.2f} s, epoch "
        f"{tr['epoch']:.2f} s, finishing {tr['finishing']:.2f} s; {tr['beyond_epoch']:.2f} s beyond the epoch "
        f"({tr['total']:.2f} s in all). `aelab train --epochs 1`: {tr['cli_wall']:.2f} s wall, "
        f"{tr['cli_beyond_epoch']:.2f} s beyond its epoch (medians of {CLI_REPEATS} processes; each: "
        f"{', '.join(f'{b:.2f}' for b in tr['cli_beyond_all'])} s); garbage collection "
        f"{tr['cli_gc']:.2f} s of it ({tr['cli_gc_full']} full collections).",
    ]
    if q:
        lines.append(f"- `aelab study exercise12 --quick` (in-process, no report): {q['wall']:.1f} s, of which "
                     f"finishing {q['finishing']:.1f} s (summed over runs).")
    if f:
        lines.append(f"- `aelab study exercise12` (no report): {f['wall']:.1f} s, finishing {f['finishing']:.1f} s.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
