"""The ``aelab serve`` command's parser (nothing heavy imported until it runs)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="the browser lab: train and watch, draw and reconstruct, explore the code")
    s.add_argument("dir", nargs="?", metavar="DIR", help="the workspace folder (default: the current folder)")
    s.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    raise NotImplementedError("aelab serve is being built")
