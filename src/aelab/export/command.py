"""The ``aelab export`` command's parser (nothing heavy imported until it runs)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    e = sub.add_parser("export", help="write a trained run's encoder and decoder as ONNX graphs")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    e.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    raise NotImplementedError("aelab export is being built")
