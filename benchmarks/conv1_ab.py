"""The one-output-channel C kernels (``models/conv1.py``) on and off, interleaved in one process.

    python -m benchmarks.conv1_ab [--threads 1] [--presets keras-blog-conv,keras-io-denoiser,keras-io-vae]
                                  [--rounds 6] [--block 10]

For each preset, two ``PlainStepper`` from the same seed, one trained with the kernels
(``AELAB_CONV1=1``) and one without (``AELAB_CONV1=0``: PyTorch's convolution), ``block`` steps each
in turn, ``rounds`` times after a warm-up round, on the first ``block × batch_size`` MNIST training
images, with the allocator setting of the ``aelab`` command. Prints the median and the minimum
milliseconds per step of each. Alternating inside one process is what makes the comparison hold on a
VM whose speed drifts by tens of % between processes. Run it with ``OMP_WAIT_POLICY=PASSIVE`` in the
environment for the ``aelab`` command's wait policy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.conv1_ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--presets", default="keras-blog-conv,keras-io-denoiser,keras-io-vae")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--block", type=int, default=10)
    args = ap.parse_args(argv)

    from aelab._malloc import keep_freed_memory

    keep_freed_memory()
    from aelab.engine.loop import STREAM_SAMPLE, flush_denormals, generator
    from aelab.engine.steppers import PlainStepper
    from aelab.presets import load_preset
    from aelab.runs import DataCache, spec_of

    data = DataCache()
    for name in args.presets.split(","):
        cfg = load_preset(name)
        t, bs = cfg.train, cfg.train.batch_size
        small = cfg.with_overrides({"data.limit": args.block * bs, "data.test_limit": bs})
        x = data.train_data(small, torch.device("cpu")).x_train[: args.block * bs].contiguous()
        steppers = {flag: PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu", num_threads=args.threads)
                    for flag in ("0", "1")}
        loss, pen = torch.zeros(1), torch.zeros(1)
        times: dict = {flag: [] for flag in steppers}
        old = os.environ.get("AELAB_CONV1")
        try:
            with flush_denormals(x.device):
                for r in range(args.rounds + 1):
                    for flag, st in steppers.items():
                        os.environ["AELAB_CONV1"] = flag
                        terms = torch.zeros(1, len(st.term_names))
                        t0 = time.perf_counter()
                        for i in range(args.block):
                            rng = generator(t.seed, STREAM_SAMPLE, r, i) if st.needs_rng else None
                            st.train_step([x], x, slice(i * bs, (i + 1) * bs), loss, pen, terms, rng)
                        if r:  # round 0 warms up
                            times[flag].append((time.perf_counter() - t0) / args.block * 1e3)
        finally:
            if old is None:
                os.environ.pop("AELAB_CONV1", None)
            else:
                os.environ["AELAB_CONV1"] = old
        off, on = times["0"], times["1"]
        print(f"{name}, {args.threads} thread(s): PyTorch's conv {statistics.median(off):.1f} ms/step "
              f"(min {min(off):.1f}), C kernels {statistics.median(on):.1f} (min {min(on):.1f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
