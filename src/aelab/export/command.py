"""The ``aelab export`` command's parser (nothing heavy imported until it runs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .._atomic import check_out_path
from .checks import check_opset, require_onnx
from .layout import DEFAULT_DIR, OPSET, OPSET_MAX, OPSET_MIN


def add_parser(sub) -> None:
    e = sub.add_parser(
        "export", help="write a trained run's encoder and decoder as ONNX graphs",
        description="Write a finished run's encoder and decoder as two ONNX graphs (encoder.onnx: x -> code, or mu "
                    "and logvar for a VAE, whose sampling stays outside the graph; decoder.onnx: z -> x_hat) with a "
                    "dynamic batch dimension, and export.json: names, shapes, the run's scaling and the check of "
                    "ONNX Runtime against PyTorch on the run's test images. Needs pip install 'aelab[onnx]'.")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    e.add_argument("--format", choices=["onnx"], default="onnx", help="the graph format (onnx, the default)")
    e.add_argument("--out", metavar="DIR",
                   help=f"where the graphs go: a new or empty directory, or this run's earlier export "
                        f"(default: RUN_DIR/{DEFAULT_DIR})")
    e.add_argument("--opset", type=int, default=OPSET, metavar="N",
                   help=f"the ONNX opset, {OPSET_MIN}-{OPSET_MAX} (default {OPSET})")
    e.add_argument("--raw-input", action="store_true",
                   help="put the run's scaling inside the graphs: the encoder takes the data's own values (pixels "
                        "0-255 as float32) and the decoder gives them back in that range")
    g = e.add_argument_group("data source (read only when the scaling is minmax or standard)")
    g.add_argument("--data-dir", metavar="DIR", help="MNIST cache directory (default: $AELAB_DATA_DIR or ~/.cache/aelab/mnist)")
    g.add_argument("--data-file", metavar="PATH", action="append", default=[], help="a local MNIST copy (repeatable)")
    g.add_argument("--offline", action="store_true", help="never use the network")
    e.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    require_onnx()  # before PyTorch loads: the missing extra is the first thing said
    check_opset(args.opset)
    if args.out:
        check_out_path(args.out)
    from ..data import DataOptions  # deferred: keeps aelab --help free of PyTorch
    from .writer import to_onnx  # deferred: PyTorch and ONNX, once the arguments are known good

    data = DataOptions(data_dir=args.data_dir, files=tuple(args.data_file), offline=args.offline, progress=False)
    paths = to_onnx(args.run_dir, args.out, opset=args.opset, raw_input=args.raw_input, data=data)
    rec = json.loads(Path(paths["metadata"]).read_text(encoding="utf-8"))
    out = Path(paths["metadata"]).parent
    enc = ", ".join(f"{o['name']} {_shape(o['shape'])}" for o in rec["encoder"]["outputs"])
    dec_in = rec["decoder"]["inputs"][0]
    dec_out = rec["decoder"]["outputs"][0]
    x = rec["encoder"]["inputs"][0]
    values = "raw values in and out" if rec["raw_input"] else f"values scaled ({rec['scaling']['method']}) in and out"
    print(f"{rec['run']} ({rec['family']}): opset {rec['opset']}, {values}")
    print(f"  encoder.onnx: {x['name']} {_shape(x['shape'])} -> {enc}")
    print(f"  decoder.onnx: {dec_in['name']} {_shape(dec_in['shape'])} -> {dec_out['name']} {_shape(dec_out['shape'])}")
    chk = rec["check"]
    worst = max(v["max_abs"] for k, v in chk.items() if isinstance(v, dict))
    print(f"  checked with ONNX Runtime on {chk['images']} test images: largest difference from PyTorch {worst:.1e}")
    if rec.get("sampling"):
        print("  sampling stays outside the graph: z = mu + exp(0.5 * logvar) * eps, eps ~ N(0, I)")
    print(f"encoder.onnx, decoder.onnx and export.json -> {out}")
    return 0


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
