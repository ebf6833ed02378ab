"""Start-up time of the ``aelab`` command: how long ``aelab --help`` takes, wall clock.

Run::

    python -m benchmarks.startup            # aelab --help, median of 5
    python -m benchmarks.startup --repeat 9 -- train --help

Each try is a fresh process (the installed ``aelab`` program when it is on PATH, else
``python -m aelab.cli``), so it pays Python's own start, the imports of ``aelab.cli`` and building
the parser; the target is 0.5 s on an idle 2-vCPU machine. It also says whether the command loaded
PyTorch (it should not: the parser is built from light modules, tests/test_cli.py checks that).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def command(args: list[str]) -> list[str]:
    exe = shutil.which("aelab")
    return [exe, *args] if exe else [sys.executable, "-m", "aelab.cli", *args]


def wall_times(args: list[str], repeat: int) -> list[float]:
    cmd = command(args)
    subprocess.run(cmd, capture_output=True, check=False)  # warm the file cache once
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return times


def loads_torch(args: list[str]) -> bool:
    code = ("import sys\nfrom aelab.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)" % (args,))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return r.stdout.strip().endswith("True")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="fresh processes timed (default 5); the median is reported")
    p.add_argument("args", nargs="*", default=["--help"], help="the aelab arguments (default: --help)")
    a = p.parse_args()
    times = wall_times(a.args, a.repeat)
    print(f"aelab {' '.join(a.args)}: median {statistics.median(times):.3f} s over {len(times)} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}); PyTorch loaded: {loads_torch(a.args)}")


if __name__ == "__main__":
    main()
