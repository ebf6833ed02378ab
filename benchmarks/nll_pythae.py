"""pythae's published test NLLs on binarised MNIST, reproduced with aelab, with the NLL's learning curve.

pythae (clementchadebec/benchmark_VAE, examples/scripts/reproducibility, README "Reproducibility")
reports a VAE at 89.78 nats (200 importance samples; the paper it follows, Rezende & Mohamed 2015:
89.9) and an IWAE with K = 50 at 86.82 nats (5000 importance samples; Burda et al. 2016: 87.1).
Its scripts, and what aelab's configs below take from them:

- VAE (``vae.py`` + ``configs/binary_mnist/vae/vae_config.json``): encoder 784 → 400 relu → μ, log σ²
  of 40; decoder 40 → 400 relu → 784 sigmoid; PyTorch's default init; BCE summed over the pixels,
  mean over the batch, plus the KL (aelab: ``reduction = "sum_mean"``, ``loss = "torch_bce"``, PyTorch's
  ``F.binary_cross_entropy``); ``torch.optim.Adam`` lr 1e-3; MultiStepLR at epochs 200, 350, 500, 750,
  1000 by 10^(−1/5); seed 123.
- IWAE (``iwae.py``): encoder 784 → 200 tanh → 200 tanh → μ, log σ² of 50; decoder 50 → 200 tanh →
  200 tanh → 784 sigmoid; Glorot-uniform weights, zero biases (aelab's ``init = "keras"``); K = 50;
  Adam lr 1e-3 with ε 1e-4; batch 20; 3,280 epochs with MultiStepLR at 2, 5, 14, 28, 41, 122, 365,
  1094 by 10^(−1/7) (Burda et al.'s 3^i schedule).

Where this deviates (aelab's configs, or this machine's time):

- data: pythae trains on the fixed Larochelle binarisation (binarized_mnist_*.amat: 50,000 train /
  10,000 valid / 10,000 test); the issue asks for dynamic binarisation, so aelab trains on all
  60,000 MNIST training images, each epoch a fresh Bernoulli sample (``data.binarize = "dynamic"``),
  and scores the NLL on MNIST's 10,000 test images binarised once from a fixed stream;
- the VAE's batch size: pythae's VAE training config is not in the repository (its script reads
  ``configs/base_training_config.json``); 100 here (Rezende & Mohamed's and Burda et al.'s minibatch);
- the learning-rate schedules: aelab has step, cosine and plateau schedules but no MultiStepLR; the
  VAE's first milestone (epoch 200) lies beyond what this CPU reaches in the time given, so the
  constant rate is the schedule up to there; the IWAE's is not reproduced (and its 3,280 epochs
  at batch 20 do not fit this CPU);
- the curve's NLL is on the first ``--nll-images`` test images (default 1,000) with K = 200; the
  final figure (``final``) on all 10,000.

Commands (one thread; checkpoints every epoch, so the same command again resumes; the NLL curve is
appended to ``<run>.nll_curve.csv``, beside the run directory, and printed)::

    OMP_NUM_THREADS=1 python benchmarks/nll_pythae.py train vae  --out /tmp/h/nll/vae  --every 5
    OMP_NUM_THREADS=1 python benchmarks/nll_pythae.py train iwae --out /tmp/h/nll/iwae --every 1
    python benchmarks/nll_pythae.py curve /tmp/h/nll/vae
    OMP_NUM_THREADS=1 python benchmarks/nll_pythae.py final /tmp/h/nll/vae --k 200 --images 10000

``train --epochs E`` sets the length (default: pythae's, 1,000 for the VAE past its last milestone;
3,280 for the IWAE); a run stopped with Ctrl-C or SIGTERM checkpoints and resumes with the same
command. The CSV records, per evaluated epoch, the training and validation loss per image (on the
binarised sets), the NLL with its standard error over the images, and the wall time since the start.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

#: pythae's published figures: (its own, the paper's), nats
PUBLISHED = {"vae": (89.78, 89.9), "iwae": (86.82, 87.1)}
#: the issue's bars
TARGET = {"vae": 90.5, "iwae": 87.5}

COMMON = {"data.dataset": "mnist", "data.binarize": "dynamic", "data.scaling": "unit",
          "train.loss": "torch_bce", "train.optimizer": "torch_adam", "train.lr": 1e-3, "train.seed": 123}
CONFIGS = {
    "vae": {**COMMON, "model.family": "vae", "model.init": "torch", "model.latent": 40,
            "model.encoder": ["400:relu"], "model.decoder": ["400:relu", "784:sigmoid"],
            "model.reduction": "sum_mean", "train.batch_size": 100, "train.epochs": 1000},
    "iwae": {**COMMON, "model.family": "iwae", "model.init": "keras", "model.latent": 50, "model.samples": 50,
             "model.encoder": ["200:tanh", "200:tanh"], "model.decoder": ["200:tanh", "200:tanh", "784:sigmoid"],
             "model.reduction": "sum_mean", "train.batch_size": 20, "train.epochs": 3280,
             "train.optimizer": {"name": "torch_adam", "eps": 1e-4}},
}
FIELDS = ["epoch", "wall_s", "train_loss", "val_loss", "nll", "nll_stderr", "k", "images", "nll_s"]


def run_config(which: str, epochs: int | None = None):
    import aelab  # deferred: after the thread setting
    from aelab.data.registry import with_overrides

    ov = dict(CONFIGS[which])
    if epochs:
        ov["train.epochs"] = epochs
    return with_overrides(aelab.RunConfig(), ov)


def checkpoint_model(cfg, run_dir: Path):
    """The model as the run's checkpoint (or, once finished, its final weights) holds it."""
    import safetensors.torch

    import aelab

    ck = run_dir / "checkpoint" / "state.safetensors"
    if ck.exists():
        model = aelab.build_model(cfg.model)
        state = safetensors.torch.load_file(str(ck))
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith(("adam.", "opt.", "loop."))})
        return model
    return aelab.load_model(run_dir)[0]


def test_set(cfg, data=None) -> torch.Tensor:
    """MNIST's test split binarised once from aelab's fixed stream (every run's the same)."""
    from aelab.data.cache import DataCache

    return (data or DataCache()).tensors(cfg.data, torch.device("cpu"))[1]


def nll_of(model, x: torch.Tensor, k: int, images: int):
    from aelab.models.vae import test_nll

    return test_nll(model, x, "torch_bce", k=k, n=images, seed=0)


def cmd_train(args) -> None:
    import aelab
    from aelab.data.cache import DataCache
    from aelab.runs.events import EpochEnded

    torch.set_num_threads(1)
    cfg = run_config(args.which, args.epochs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    curve = Path(str(out) + ".nll_curve.csv")  # beside the run directory: aelab owns what is inside it
    done = set()
    if curve.exists():
        done = {int(r["epoch"]) for r in csv.DictReader(curve.open())}
    data = DataCache()
    x_test = test_set(cfg, data)
    t0 = time.perf_counter()
    print(f"{args.which}: {cfg.model.family} {list(cfg.model.encoder)} latent {cfg.model.latent}, batch "
          f"{cfg.train.batch_size}, {cfg.train.epochs} epochs, config {cfg.hash()[:12]}, run {out}", flush=True)

    def on_event(ev) -> None:
        if not isinstance(ev, EpochEnded):
            return
        e = ev.epoch
        line = f"epoch {e:4d}  {ev.seconds:6.1f} s  train {ev.train['loss']:8.3f}  val {ev.val['loss']:8.3f}"
        if (e % args.every == 0 or e == ev.epochs or e == 1) and e not in done:
            t = time.perf_counter()
            est = nll_of(checkpoint_model(cfg, out), x_test, args.k, args.nll_images)
            dt = time.perf_counter() - t
            line += f"  NLL {est.nats:8.3f} ± {est.stderr:.3f} (K {est.k}, {est.n} images, {dt:.0f} s)"
            new = not curve.exists()
            with curve.open("a", newline="") as f:
                w = csv.DictWriter(f, FIELDS)
                if new:
                    w.writeheader()
                w.writerow({"epoch": e, "wall_s": round(time.perf_counter() - t0, 1), "train_loss": ev.train["loss"],
                            "val_loss": ev.val["loss"], "nll": est.nats, "nll_stderr": est.stderr, "k": est.k,
                            "images": est.n, "nll_s": round(dt, 1)})
            done.add(e)
        print(line, flush=True)

    aelab.train_runs([cfg], [out], device="cpu", data=data, progress=False, resume=True, on_event=on_event)


def cmd_curve(args) -> None:
    curve = Path(str(Path(args.run).resolve()) + ".nll_curve.csv")
    rows = list(csv.DictReader(curve.open()))
    print(f"{'epoch':>5} {'wall':>8} {'train':>8} {'val':>8} {'NLL':>8} {'± se':>6}  (K, images)")
    for r in rows:
        print(f"{int(r['epoch']):5d} {float(r['wall_s']) / 60:7.1f}m {float(r['train_loss']):8.2f} "
              f"{float(r['val_loss']):8.2f} {float(r['nll']):8.2f} {float(r['nll_stderr']):6.2f}  ({r['k']}, {r['images']})")


def cmd_final(args) -> None:
    torch.set_num_threads(1)
    which = "iwae" if "iwae" in Path(args.run).name else "vae"
    cfg = run_config(which)
    import json

    ck = Path(args.run) / "checkpoint" / "state.json"
    epoch = json.loads(ck.read_text())["epoch"] if ck.exists() else "final"
    t = time.perf_counter()
    est = nll_of(checkpoint_model(cfg, Path(args.run)), test_set(cfg), args.k, args.images)
    ours, paper = PUBLISHED[which]
    print(f"{which} after epoch {epoch}: test NLL {est.nats:.2f} ± {est.stderr:.2f} nats (K {est.k}, {est.n} "
          f"images, {time.perf_counter() - t:.0f} s); pythae {ours}, paper {paper}, bar {TARGET[which]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("which", choices=sorted(CONFIGS))
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int)
    t.add_argument("--every", type=int, default=5, help="NLL every N epochs (and after the first and last)")
    t.add_argument("--k", type=int, default=200)
    t.add_argument("--nll-images", type=int, default=1000)
    c = sub.add_parser("curve")
    c.add_argument("run")
    f = sub.add_parser("final")
    f.add_argument("run")
    f.add_argument("--k", type=int, default=200)
    f.add_argument("--images", type=int, default=10000)
    args = p.parse_args(argv)
    from aelab.errors import AelabError

    try:
        {"train": cmd_train, "curve": cmd_curve, "final": cmd_final}[args.cmd](args)
    except AelabError as exc:  # a stop (Ctrl-C, SIGTERM: checkpointed, the same command resumes) or a bad config
        print(f"nll_pythae: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
