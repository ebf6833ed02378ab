"""ONNX Runtime against PyTorch, per family and preset: the largest differences of the exported
encoder and decoder on a trained run's test images.

Command (MNIST in the cache for the convolutional presets, else the synthetic set stands in)::

    python -m benchmarks.onnx_parity                 # every family and preset, 1 epoch each, scaled graphs
    python -m benchmarks.onnx_parity --raw-input     # the same with the run's scaling inside the graphs
    python -m benchmarks.onnx_parity --only vae,keras-io-vae

For every family in ``aelab.models.FAMILIES`` (its default model) and every preset in
``aelab.presets``: a run trained for one epoch on 512 images — ``digits`` where the model fits 8×8
images, else MNIST — exported by :func:`aelab.export.to_onnx` (the path ``aelab export`` takes; it
checks 10 test images itself), then both graphs run by ONNX Runtime (CPU) on the run's test images
(256) and compared with the run's PyTorch model: for each encoder output (``code``, or ``mu`` and
``logvar``) and the decoder's ``x_hat`` (fed the PyTorch code), the largest absolute difference,
the largest relative difference over entries with |PyTorch| ≥ 1e-3, the largest absolute difference
over the output's largest value, and whether every entry is
within |ort − torch| ≤ 1e-5·|torch| + 1e-6·max(1, max |torch|) (``aelab.export.graphs``). Each run
is exported twice; "same bytes" says whether both exports wrote identical graphs. Prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cases(only: set[str]) -> list[tuple[str, str, object]]:
    from aelab.config import RunConfig
    from aelab.models import FAMILIES
    from aelab.presets import load_preset, preset_names

    out = [("family", n, RunConfig.from_dict({"model": {"family": n}})) for n in FAMILIES]
    out += [("preset", n, load_preset(n)) for n in preset_names()]
    return [c for c in out if not only or c[1] in only]


def _config(base, name: str):
    from aelab.data import with_overrides
    from aelab.errors import ConfigError

    common = {"name": name, "train.epochs": 1, "data.limit": 512, "data.test_limit": 256, "data.noise_factor": 0.0}
    try:
        return with_overrides(base, {**common, "data.dataset": "digits"})
    except ConfigError:
        return with_overrides(base, {**common, "data.dataset": "mnist" if _mnist() else "synthetic"})


def _mnist() -> bool:
    """Whether verified MNIST files are in the cache (the conv presets then train on MNIST)."""
    from aelab.data import mnist_info

    try:
        files = mnist_info().get("files", {})
    except Exception:
        return False
    return bool(files) and all(f.get("verified") for f in files.values())


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raw-input", action="store_true", help="export with the run's scaling inside the graphs")
    ap.add_argument("--only", default="", help="comma-separated family or preset names")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime
    import torch

    import aelab
    from aelab.export import graphs as G
    from aelab.export import to_onnx
    from aelab.export.layout import OPSET
    from aelab.models import family_of

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="aelab-onnx-parity-") as tmp:
        for kind, name, base in _cases({s for s in args.only.split(",") if s}):
            cfg = _config(base, f"{kind}-{name}")
            run_dir = Path(tmp) / f"{kind}-{name}"
            run = aelab.train(cfg, run_dir)
            t = time.perf_counter()
            paths = to_onnx(run, raw_input=args.raw_input)
            export_s = time.perf_counter() - t
            again = to_onnx(run, Path(tmp) / f"{kind}-{name}-again", raw_input=args.raw_input)
            same = all(_sha(paths[k]) == _sha(again[k]) for k in ("encoder", "decoder"))
            fam = family_of(cfg.model)
            enc = G.encoder_part(run.model, cfg.model.input_shape, fam.code, run.scaler if args.raw_input else None)
            dec = G.decoder_part(run.model, cfg.model.input_shape, 1, run.scaler if args.raw_input else None)
            x = run.dataset.x_test[:256]
            x = x.astype(np.float32) if args.raw_input else run.scaler.apply(x).reshape(len(x), *cfg.model.input_shape)
            genc, gdec = onnx.load(str(paths["encoder"])), onnx.load(str(paths["decoder"]))
            ref = G.torch_outputs(enc.module, x)
            got = G.run_graph(genc, x)
            diffs = {n: G.differences(a, b) for n, a, b in zip(enc.output_names, got, ref)}
            if fam.code == "discrete":
                diffs = {n: {**d, "exact": bool(np.array_equal(a, b))} for (n, d), a, b in zip(diffs.items(), got, ref)}
            diffs["x_hat"] = G.differences(G.run_graph(gdec, ref[0])[0], G.torch_outputs(dec.module, ref[0])[0])
            ok = all(d["excess"] <= 1 for d in diffs.values())
            rows.append((kind, name, cfg.data.dataset, fam.code, diffs, ok, same, export_s,
                         paths["encoder"].stat().st_size + paths["decoder"].stat().st_size))
            print(f"{kind} {name}: done ({export_s:.1f} s export)", file=sys.stderr, flush=True)

    print(f"ONNX Runtime vs PyTorch, {'raw' if args.raw_input else 'scaled'} graphs, 256 test images per run, "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, opset {OPSET}\n")
    print("| case | data | code | output | max abs diff | max rel diff (\\|torch\\| ≥ 1e-3) | max abs / max \\|torch\\| | "
          "within tolerance | same bytes twice |")
    print("|---|---|---|---|--:|--:|--:|---|---|")
    for kind, name, data, code, diffs, _ok, same, _s, _b in rows:
        for i, (out, d) in enumerate(diffs.items()):
            first = f"{kind} `{name}`" if i == 0 else ""
            print(f"| {first} | {data if i == 0 else ''} | {code if i == 0 else ''} | {out} | {d['max_abs']:.2e} | "
                  f"{d['max_rel']:.2e} | {d['max_rel_to_max']:.2e} | {'yes' if d['excess'] <= 1 else 'NO'} | {('yes' if same else 'NO') if i == 0 else ''} |")
    worst = max(d["excess"] for r in rows for d in r[4].values())
    print(f"\nlargest difference as a fraction of its tolerance: {worst:.3f}; every output within tolerance: "
          f"{all(r[5] for r in rows)}; every export byte-identical twice: {all(r[6] for r in rows)}")
    return 0 if all(r[5] and r[6] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
