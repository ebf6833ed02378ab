"""Per-step timing of aelab's autograd path for a preset, several thread counts interleaved.

    python -m benchmarks.conv_steps [--presets keras-blog-conv,keras-io-vae] [--threads 1,2]
                                    [--rounds 5] [--block 10]

For each preset, one ``PlainStepper`` per thread count (same seed, so the same initial weights),
trained round-robin: ``block`` steps with each in turn, ``rounds`` times after a warm-up round, on
the first ``block × batch_size`` MNIST training images. Prints the median and the minimum
milliseconds per step of each and the last batch loss (thread counts give the same losses to
float rounding, not bit for bit). The machine's speed drifts, so only numbers from one run compare.
What the thread policy (``engine/steppers.py``, ``_default_threads``) was decided from; run it on
another machine to see its trade-off there, e.g. with glibc told to keep freed memory:
``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 python -m benchmarks.conv_steps``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv=None) -> int:
    from aelab.engine.loop import STREAM_SAMPLE, flush_denormals, generator
    from aelab.engine.steppers import PlainStepper
    from aelab.models.presets import load_preset
    from aelab.runs import DataCache, spec_of

    ap = argparse.ArgumentParser(prog="python -m benchmarks.conv_steps", description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="keras-blog-conv,keras-io-vae")
    ap.add_argument("--threads", default=f"1,{torch.get_num_threads()}", help="intra-op thread counts to compare")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=10, help="steps per turn")
    args = ap.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    data = DataCache()
    for name in args.presets.split(","):
        cfg = load_preset(name)
        t = cfg.train
        bs = t.batch_size
        x = data.train_data(cfg, torch.device("cpu")).x_train[: args.block * bs].contiguous()
        steppers = {n: PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu", num_threads=n) for n in counts}
        loss, pen = torch.zeros(1), torch.zeros(1)
        times: dict[int, list[float]] = {n: [] for n in counts}
        last: dict[int, float] = {}
        with flush_denormals(x.device):
            for r in range(args.rounds + 1):
                for n, st in steppers.items():
                    terms = torch.zeros(1, len(st.term_names))
                    t0 = time.perf_counter()
                    for i in range(args.block):
                        rng = generator(t.seed, STREAM_SAMPLE, r, i) if st.needs_rng else None
                        st.train_step([x], x, slice(i * bs, (i + 1) * bs), loss, pen, terms, rng)
                    dt = (time.perf_counter() - t0) / args.block
                    if r:  # round 0 warms up (oneDNN primitive creation, first-touch memory)
                        times[n].append(dt)
                    last[n] = float(loss[0])
        for n in counts:
            med = statistics.median(times[n])
            print(f"{name} threads={n}: median {med * 1e3:.1f} ms/step (min {min(times[n]) * 1e3:.1f}), "
                  f"{bs / med:,.0f} img/s; last batch loss {last[n]:.6g}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
