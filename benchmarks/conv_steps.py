"""Per-step timing of aelab's autograd path for a preset, several variants interleaved in one process.

    python -m benchmarks.conv_steps [--presets keras-blog-conv,keras-io-denoiser,keras-io-vae,pytorch-vae]
                                    [--threads 1,2] [--compile] [--rounds 5] [--block 10]

For each preset, one ``PlainStepper`` per variant (same seed, so the same initial weights), trained
round-robin: ``block`` steps with each in turn, ``rounds`` times after a warm-up round, on the first
``block × batch_size`` MNIST training images. The variants are the thread counts of ``--threads``
and, with ``--compile``, each of them again with ``torch.compile`` applied to the model's forward
(autograd then runs the compiled graph's backward: what compiling aelab's step would give). Prints
the median and the minimum milliseconds per step of each and the last batch loss (thread counts
give the same losses to float rounding, not bit for bit); for a compiled variant also its compile
time (the warm-up round's extra seconds) and what it saves or loses over the preset's full training
(its own epochs over 60,000 images). The machine's speed drifts, so only numbers from one run
compare. What the thread policy (``engine/steppers.py``, ``_default_threads``) was decided from; run
it on another machine to see its trade-off there. Settings read when PyTorch loads go in the
environment, one process each, e.g. ``OMP_WAIT_POLICY=PASSIVE python -m benchmarks.conv_steps`` or
``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 python -m benchmarks.conv_steps``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

PRESETS = "keras-blog-conv,keras-io-denoiser,keras-io-vae,pytorch-vae"


def main(argv=None) -> int:
    from aelab.engine.loop import STREAM_SAMPLE, flush_denormals, generator
    from aelab.engine.steppers import PlainStepper
    from aelab.presets import load_preset
    from aelab.runs import DataCache, spec_of

    ap = argparse.ArgumentParser(prog="python -m benchmarks.conv_steps", description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default=PRESETS)
    ap.add_argument("--threads", default=f"1,{torch.get_num_threads()}", help="intra-op thread counts to compare")
    ap.add_argument("--compile", action="store_true", help="also each thread count with torch.compile(model.forward)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=10, help="steps per turn")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="first raise glibc's mmap/trim thresholds as the aelab command does (aelab._malloc)")
    args = ap.parse_args(argv)
    if args.keep_freed_memory:
        from aelab._malloc import keep_freed_memory

        print(f"keep_freed_memory: {keep_freed_memory()}", flush=True)
    counts = [int(t) for t in args.threads.split(",")]
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "MALLOC_MMAP_THRESHOLD_") if k in os.environ)
    try:
        print(f"load average {os.getloadavg()[0]:.1f}" + (f"; {env}" if env else ""), flush=True)
    except OSError:
        pass
    data = DataCache()
    for name in args.presets.split(","):
        cfg = load_preset(name)
        t = cfg.train
        bs = t.batch_size
        small = cfg.with_overrides({"data.limit": args.block * bs, "data.test_limit": bs})
        x = data.train_data(small, torch.device("cpu")).x_train[: args.block * bs].contiguous()
        variants = [(n, False) for n in counts] + ([(n, True) for n in counts] if args.compile else [])
        steppers = {}
        for n, comp in variants:
            st = PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu", num_threads=n)
            if comp:
                st.model.forward = torch.compile(st.model.forward)
            steppers[(n, comp)] = st
        loss, pen = torch.zeros(1), torch.zeros(1)
        times: dict = {v: [] for v in variants}
        first: dict = {}
        last: dict = {}
        with flush_denormals(x.device):
            for r in range(args.rounds + 1):
                for v, st in steppers.items():
                    terms = torch.zeros(1, len(st.term_names))
                    t0 = time.perf_counter()
                    for i in range(args.block):
                        rng = generator(t.seed, STREAM_SAMPLE, r, i) if st.needs_rng else None
                        st.train_step([x], x, slice(i * bs, (i + 1) * bs), loss, pen, terms, rng)
                    dt = time.perf_counter() - t0
                    if r:  # round 0 warms up (oneDNN primitive creation, first-touch memory, compiling)
                        times[v].append(dt / args.block)
                    else:
                        first[v] = dt
                    last[v] = float(loss[0])
        full_steps = t.epochs * math.ceil(60_000 / bs)
        for n, comp in variants:
            med = statistics.median(times[(n, comp)])
            line = (f"{name} threads={n}{' compiled' if comp else ''}: median {med * 1e3:.1f} ms/step "
                    f"(min {min(times[(n, comp)]) * 1e3:.1f}), {bs / med:,.0f} img/s; last batch loss {last[(n, comp)]:.6g}")
            if comp:
                base = statistics.median(times[(n, False)])
                compile_s = first[(n, comp)] - med * args.block
                net = (base - med) * full_steps - compile_s
                line += (f"; compile {compile_s:.0f} s, over the preset's {t.epochs} full epochs "
                         f"({full_steps:,} steps) {'saves' if net > 0 else 'loses'} {abs(net):.0f} s")
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
