"""Check aelab's layers against Keras 3 (TensorFlow backend): same weights, same inputs, same outputs.

    .venv-bench/bin/python -m benchmarks.keras_layers_check [--dtype float32|float64] [--verbose]

For every layer kind (odd and even input sizes, H ≠ W, strides 1, 2, 3 and (2, 3), kernels
smaller and larger than the stride, "same" and "valid") and for the reference tutorials' stacks,
build the Keras model and the aelab stack (``aelab.models.layers.build_stack``), copy aelab's
weights into Keras (kernels permuted, never flipped; random non-zero biases), run both on the same
random input (NHWC for Keras, NCHW for aelab) and compare shapes and max |Δ|. The "contrast" rows
show what PyTorch's usual stand-ins (symmetric padding, ``output_padding=1``, a CHW flatten) give
instead. Needs TensorFlow, so it is not a test: the tests check the same semantics on
hand-computed values. Exit code 1 if any aelab row differs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

try:
    from aelab.models.layers import build_stack, parse_layer, pair  # noqa: E402
except ImportError:  # run from a checkout without aelab installed in this venv
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from aelab.models.layers import build_stack, parse_layer, pair  # noqa: E402

import keras  # noqa: E402

ACTS = ("linear", "relu", "sigmoid", "tanh", "elu", "selu", "softplus", "leaky_relu")


def keras_layer(spec):
    L = keras.layers
    k = spec.kind
    if k == "dense":
        return L.Dense(spec.size, activation=spec.activation)
    if k == "conv2d":
        return L.Conv2D(spec.filters, pair(spec.kernel), strides=pair(spec.stride), padding=spec.padding,
                        activation=spec.activation)
    if k == "conv2d-transpose":
        return L.Conv2DTranspose(spec.filters, pair(spec.kernel), strides=pair(spec.stride), padding=spec.padding,
                                 activation=spec.activation)
    if k == "max-pool":
        return L.MaxPooling2D(pair(spec.pool), strides=None if spec.stride is None else pair(spec.stride),
                              padding=spec.padding)
    if k == "up-sample":
        return L.UpSampling2D(pair(spec.size))
    if k == "flatten":
        return L.Flatten()
    return L.Reshape(spec.shape)


def to_keras_kernel(m: nn.Module) -> np.ndarray:
    w = m.weight.detach().cpu().numpy()
    # Dense (out, in) → (in, out). Conv2d (out, in, kh, kw) → (kh, kw, in, out); ConvTranspose2d
    # (in, out, kh, kw) → (kh, kw, out, in): the same permutation, no flip.
    return w.T if w.ndim == 2 else w.transpose(2, 3, 1, 0)


def keras_model(specs, in_hwc, torch_layers, dtype):
    model = keras.Sequential([keras.Input(in_hwc, dtype=dtype), *[keras_layer(s) for s in specs]])
    weighted = [l for l in model.layers if l.weights]
    assert len(weighted) == len(torch_layers)
    for l, m in zip(weighted, torch_layers):
        l.set_weights([to_keras_kernel(m), m.bias.detach().cpu().numpy()])
    return model


def chw(hwc):
    return (hwc[2], hwc[0], hwc[1]) if len(hwc) == 3 else tuple(hwc)


def run_torch(seq, x_nhwc, dtype):
    x = torch.from_numpy(x_nhwc)
    if x.dim() == 4:
        x = x.permute(0, 3, 1, 2)
    with torch.no_grad():
        y = seq.to(getattr(torch, dtype))(x)
    if y.dim() == 4:
        y = y.permute(0, 2, 3, 1)
    return y.contiguous().numpy()


def compare(y_keras, y_torch):
    if y_keras.shape != y_torch.shape:
        return float("inf")
    return float(np.max(np.abs(y_keras - y_torch)))


def check(specs, in_hwc, rng, dtype, seed):
    specs = [parse_layer(s) for s in specs]
    seq, _ = build_stack(specs, chw(in_hwc), generator=torch.Generator().manual_seed(seed))
    layers = [m for m in seq if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    for m in layers:  # non-zero biases, so where the bias lands is checked too
        with torch.no_grad():
            m.bias.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(seed + 1))
    model = keras_model(specs, in_hwc, layers, dtype)
    x = rng.standard_normal((3, *in_hwc)).astype(dtype)
    yk = np.asarray(model(x, training=False))
    yt = run_torch(seq, x, dtype)
    return yk.shape[1:], yt.shape[1:], compare(yk, yt), (seq, model, x)


def cases():
    """(group, label, input (H, W, C) or (D,), specs)."""
    for act in ACTS:
        yield "dense", f"7→5 {act}", (7,), [{"kind": "dense", "size": 5, "activation": act}]
    for (h, w, c), k, s, p in itertools.product([(7, 9, 3), (8, 8, 2)], [1, 3, 4, (2, 5)], [1, 2, 3, (2, 3)],
                                                ["same", "valid"]):
        yield f"conv2d {p}", f"{h}×{w} k{k} s{s}", (h, w, c), [
            {"kind": "conv2d", "filters": 4, "kernel": k, "stride": s, "padding": p, "activation": "relu"}]
    for (h, w, c), k, s, p in itertools.product([(3, 5, 2), (4, 4, 3)], [1, 2, 3, 4, (2, 5)], [1, 2, 3, (2, 3)],
                                                ["same", "valid"]):
        yield f"conv2d-transpose {p}", f"{h}×{w} k{k} s{s}", (h, w, c), [
            {"kind": "conv2d-transpose", "filters": 3, "kernel": k, "stride": s, "padding": p}]
    for (h, w, c), k, s, p in itertools.product([(7, 9, 3), (8, 8, 2)], [2, 3, (2, 3)], [None, 1, 2],
                                                ["same", "valid"]):
        yield f"max-pool {p}", f"{h}×{w} pool{k} s{s}", (h, w, c), [
            {"kind": "max-pool", "pool": k, "stride": s, "padding": p}]
    for size in (2, 3, (2, 3)):
        yield "up-sample", f"3×5 size{size}", (3, 5, 2), [{"kind": "up-sample", "size": size}]
    yield "flatten/reshape", "5×3×4 → flatten → dense 6", (5, 3, 4), [{"kind": "flatten"}, "6:linear"]
    yield "flatten/reshape", "24 → reshape 2×3×4 → conv → flatten", (24,), [
        {"kind": "reshape", "shape": [2, 3, 4]}, {"kind": "conv2d", "filters": 2, "kernel": 2}, {"kind": "flatten"}]
    yield "flatten/reshape", "3×5×2 → reshape (-1, 5, 3)", (3, 5, 2), [{"kind": "reshape", "shape": [-1, 5, 3]}]
    yield "flatten/reshape", "3×5×2 → reshape (30,) → dense 4", (3, 5, 2), [{"kind": "reshape", "shape": [30]}, "4:linear"]
    c = lambda f, a="relu", p="same", s=1: {"kind": "conv2d", "filters": f, "kernel": 3, "stride": s, "padding": p,  # noqa: E731
                                            "activation": a}
    t = lambda f, a="relu", s=2: {"kind": "conv2d-transpose", "filters": f, "kernel": 3, "stride": s,  # noqa: E731
                                  "padding": "same", "activation": a}
    pool = {"kind": "max-pool", "pool": 2, "padding": "same"}
    up = {"kind": "up-sample", "size": 2}
    yield "stacks", "keras blog conv AE 28→4→28", (28, 28, 1), [
        c(16), pool, c(8), pool, c(8), pool, c(8), up, c(8), up, c(16, p="valid"), up, c(1, "sigmoid")]
    yield "stacks", "keras.io VAE encoder 28→7→16→2 (z_mean)", (28, 28, 1), [
        c(32, s=2), c(64, s=2), {"kind": "flatten"}, "16:relu", "2:linear"]
    yield "stacks", "keras.io VAE decoder 2→7→28", (2,), [
        "3136:relu", {"kind": "reshape", "shape": [7, 7, 64]}, t(64), t(32), t(1, "sigmoid", s=1)]
    yield "stacks", "keras.io denoising (transpose) 28→7→28", (28, 28, 1), [
        c(32), pool, c(32), pool, t(32), t(32), c(1, "sigmoid")]


def contrasts(rng, dtype):
    """What PyTorch's usual stand-ins give against Keras (expected to differ)."""
    rows = []
    # Conv2D(3, strides=2, same) on 28: TF pads (0, 1), nn.Conv2d(padding=1) pads (1, 1).
    _, _, _, (seq, model, x) = check([{"kind": "conv2d", "filters": 4, "kernel": 3, "stride": 2, "padding": "same"}],
                                     (28, 28, 1), rng, dtype, 7)
    m = seq[0]
    naive = nn.Conv2d(1, 4, 3, stride=2, padding=1)
    naive.load_state_dict(m.state_dict())
    rows.append(("nn.Conv2d(padding=1) vs Conv2D same s2", "28×28", model, naive, x))
    # Conv2DTranspose(3, strides=2, same) on 7: TF crops (0, 1), ConvTranspose2d(padding=1, output_padding=1) (1, 0).
    _, _, _, (seq, model, x) = check([{"kind": "conv2d-transpose", "filters": 4, "kernel": 3, "stride": 2,
                                       "padding": "same"}], (7, 7, 2), rng, dtype, 8)
    m = seq[0]
    naive = nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1)
    naive.load_state_dict(m.state_dict())
    rows.append(("ConvTranspose2d(p=1, out_p=1) vs same s2", "7×7", model, naive, x))
    # Flatten → Dense with the same weights: nn.Flatten reads (C, H, W).
    _, _, _, (seq, model, x) = check([{"kind": "flatten"}, "6:linear"], (5, 3, 4), rng, dtype, 9)
    naive = nn.Sequential(nn.Flatten(), seq[2])
    rows.append(("nn.Flatten (CHW) → Dense vs Flatten → Dense", "5×3×4", model, naive, x))
    out = []
    for name, size, model, naive, x in rows:
        yk = np.asarray(model(x, training=False))
        yt = run_torch(naive, x, dtype)
        out.append((name, size, compare(yk, yt)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.keras_layers_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--verbose", action="store_true", help="one row per case instead of one per group")
    args = ap.parse_args(argv)
    keras.config.set_floatx(args.dtype)
    # float64: TF's leaky_relu takes its slope as a float32 attribute (0.2f), ~3e-9·|x| off 0.2·x.
    tol = 1e-5 if args.dtype == "float32" else 1e-8
    rng = np.random.default_rng(0)
    groups: dict[str, list] = {}
    for i, (group, label, in_hwc, specs) in enumerate(cases()):
        ks, ts, d, _ = check(specs, in_hwc, rng, args.dtype, seed=i)
        groups.setdefault(group, []).append((label, in_hwc, ks, ts, d))
        if args.verbose:
            print(f"{group:24} {label:40} keras {str(ks):16} aelab {str(ts):16} max|Δ| {d:.2e}")
    print(f"Keras {keras.__version__} (TensorFlow backend) vs aelab, {args.dtype}, batch 3, random N(0,1) inputs\n")
    print(f"| {'layer / stack':54} | {'cases':>5} | {'output sizes (Keras H×W[×C])':34} | {'shapes':6} | {'max |Δ|':>8} |")
    print(f"|{'-' * 56}|{'-' * 7}|{'-' * 36}|{'-' * 8}|{'-' * 10}|")
    bad = 0
    for group, rows in groups.items():
        bad += sum(not (d <= tol) for *_, d in rows)
        singles = rows if group == "stacks" else [(group, None, rows[0][2], rows[0][3], None)]
        for label, _, _ks, _ts, _d in singles:
            sub = [r for r in rows if r[0] == label] if group == "stacks" else rows
            shapes_ok = all(r[2] == r[3] for r in sub)
            dmax = max(r[4] for r in sub)
            sizes = sorted({"×".join(map(str, r[2])) for r in sub}, key=lambda t: [int(v) for v in t.split("×")])
            size_txt = ", ".join(sizes)
            if len(size_txt) > 34:
                size_txt = size_txt[:31] + "..."
            print(f"| {label:54} | {len(sub):>5} | {size_txt:34} | {'ok' if shapes_ok else 'DIFF':6} | {dmax:8.1e} |")
    for name, size, d in contrasts(rng, args.dtype):
        print(f"| {'contrast: ' + name:54} | {1:>5} | {'input ' + size:34} | {'-':6} | {d:8.1e} |")
    print(f"\n{'all aelab rows match' if not bad else f'{bad} case(s) differ'} (tolerance {tol:g})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
