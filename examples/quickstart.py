"""aelab from Python: train the seed's lab sparse autoencoder next to the 3.1 variant and compare.

    python examples/quickstart.py                 # full MNIST, 30 epochs (about a minute on 2 cores)
    python examples/quickstart.py --limit 6000 --epochs 3   # a quick look

The two runs have the same layer sizes, so aelab trains them side by side in one stacked step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aelab import RunConfig, load_model, train_runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="first N training images")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "synthetic"])
    ap.add_argument("--out", default="runs/quickstart")
    args = ap.parse_args()

    base = RunConfig().with_overrides({
        "data.dataset": args.dataset, "data.limit": args.limit, "train.epochs": args.epochs,
        "model.activity_l1": 1e-4,  # Keras: λ·Σ|h| / batch on the 32-unit code layer
    })
    runs = {"lab_sparse": base, "l1_x100": base.with_overrides({"model.activity_l1": 1e-2})}
    cfgs = [cfg.model_copy(update={"name": name}) for name, cfg in runs.items()]
    results = train_runs(cfgs, [Path(args.out) / c.name for c in cfgs], progress=True)

    for r in results:
        m = r.metrics
        print(f"{r.config.name:>10}: val loss {r.history['val_loss'][-1]:.4f}  SSIM {m['ssim']:.3f}  "
              f"dead code units {m['code']['dead_units']}/{m['code']['units']}  diversity {m['diversity']:.3f}")
    model, _ = load_model(results[0].run_dir)  # the encoder and decoder work alone, as in the notebook
    print("encoder:", model.encoder)


if __name__ == "__main__":
    main()
