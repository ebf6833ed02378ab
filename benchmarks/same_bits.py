"""Check on full MNIST that the fast engine path trains to the autograd path's weights, bit for bit.

    python -m benchmarks.same_bits [--epochs 2] [--runs lab_undercomplete,q2_1_swapped,...]

For each exercise12 run: train with ``PlainStepper`` (autograd, the reference) and with
``StackedDenseStepper`` (the hand-written step and the C kernels), same seed and data, then compare
every weight. The tests check the same on synthetic data; this is the full-size confirmation
(minutes, so it is not a test). Exit code 1 if any run differs.
"""

from __future__ import annotations

import argparse
import sys

import torch

from aelab.engine.loop import fit
from aelab.engine.steppers import PlainStepper, StackedDenseStepper
from aelab.runs import DataCache, spec_of
from aelab.study.spec import load_study

DEFAULT = "lab_undercomplete,q2_1_swapped,q3_1_l1_x100,q4_1_noise_double,lab_deep,q5_1_sigmoid_decoder"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.same_bits", description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--runs", default=DEFAULT, help="exercise12 run names, comma-separated")
    args = ap.parse_args(argv)
    study, data = load_study("exercise12"), DataCache()
    bad = 0
    for name in args.runs.split(","):
        cfg = study.runs[name]
        t = cfg.train
        d = data.train_data(cfg, torch.device("cpu"))
        plain = PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu")
        fast = StackedDenseStepper([spec_of(cfg)], t.lr, t.beta1, t.beta2, t.eps, "cpu")
        for s in (plain, fast):
            fit(s, [d], epochs=args.epochs, batch_size=t.batch_size, seed=t.seed, shuffle=t.shuffle, progress=False)
        a, b = plain.model.state_dict(), fast.export_models()[0].state_dict()
        diff = [k for k in a if not torch.equal(a[k], b[k])]
        bad += bool(diff)
        print(f"{name}: {args.epochs} epochs, weights {'bit-identical' if not diff else 'differ in ' + ', '.join(diff)}",
              flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
