"""What a result's bits depend on: the exercise12 quick study under other kernels and instruction sets.

    python -m benchmarks.cpu_bits [--dataset synthetic] [--variants default,kernels0,...] [--json out.json]

Each variant trains the quick study in a fresh process with some environment switches set (the
ones that choose which CPU code PyTorch, MKL, oneDNN and aelab's C kernels run) and records every
run's final train and validation loss. The table gives each run's largest relative distance from
the default variant: 0 where the arithmetic did not change, ~1e-7 where one rounding moved, and
large where a model amplifies a rounding difference (dead ReLUs, a code pushed to a saturating
penalty). On one machine this emulates another CPU: ``aten-avx2`` runs the ATen kernels an AVX2
CPU (an AMD EPYC before Zen 4) runs; ``mkl-avx2`` the MKL branch it takes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = {
    "default": {},
    "kernels0": {"AELAB_KERNELS": "0"},
    "threads2": {"AELAB_NUM_THREADS": "2"},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "mkl-avx2": {"MKL_CBWR": "AVX2"},
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},
    "avx2-all": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx2-all-kernels0": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                          "AELAB_KERNELS": "0"},
    # other seeds: how far the model's own chaos carries it (the scale a rounding difference can reach)
    "seed+1": {"_SEED": "1"},
    "seed+2": {"_SEED": "2"},
    "seed+3": {"_SEED": "3"},
    "seed+4": {"_SEED": "4"},
}

_CHILD = r"""
import json, sys, tempfile
from aelab.study import load_study, run_study
ov = {"data.dataset": sys.argv[1]}
if sys.argv[2] != "0":
    ov["train.seed"] = 2022 + int(sys.argv[2])
study = load_study("exercise12", quick=True, overrides=ov)
with tempfile.TemporaryDirectory() as out:
    res = run_study(study, out, device="cpu", progress=False, report=False)
print(json.dumps({n: [r["history"]["loss"][-1], r["history"]["val_loss"][-1]] for n, r in res["runs"].items()}))
"""


def run_variant(env_extra: dict, dataset: str) -> dict:
    env = {k: v for k, v in os.environ.items()}
    seed = env_extra.get("_SEED", "0")
    env.update({k: v for k, v in env_extra.items() if not k.startswith("_")})
    out = subprocess.run([sys.executable, "-c", _CHILD, dataset, seed], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cpu_bits", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", help="write every variant's finals here")
    args = ap.parse_args(argv)
    names = args.variants.split(",")
    finals = {}
    for v in names:
        t0 = time.perf_counter()
        finals[v] = run_variant(VARIANTS[v], args.dataset)
        print(f"{v}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    base = finals["default"]
    cols = [v for v in names if v != "default"]
    print("run".ljust(24) + "".join(c[:17].rjust(18) for c in cols))
    for run in base:
        row = run.ljust(24)
        for c in cols:
            d = max(abs(a - b) / abs(b) for a, b in zip(finals[c][run], base[run]))
            row += (f"{d:.1e}" if d else "0").rjust(18)
        print(row)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(finals, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
