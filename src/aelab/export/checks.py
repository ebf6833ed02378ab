"""What ``aelab export`` checks before it loads anything heavy: the ONNX extra is installed, the
opset is one the exporter and ONNX Runtime both run. Light on purpose (the CLI calls it first)."""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import AelabError
from .layout import OPSET, OPSET_MAX, OPSET_MIN

#: the packages the export needs, as ``pip install 'aelab[onnx]'`` installs them: the exporter's
#: translator (onnxscript), the graph format and its checker (onnx), the runtime the graphs are checked with
NEEDS = ("onnx", "onnxscript", "onnxruntime")


class OnnxMissing(AelabError):
    """The ONNX extra is not installed."""


def missing_packages() -> list[str]:
    """The packages of :data:`NEEDS` that are not installed (looked up without importing them)."""
    return [m for m in NEEDS if importlib.util.find_spec(m) is None]


def require_onnx() -> None:
    """One line naming what to install when the ONNX extra is missing."""
    missing = missing_packages()
    if missing:
        are = "is" if len(missing) == 1 else "are"
        raise OnnxMissing(f"aelab export --format onnx needs {', '.join(missing)}, which {are} not installed; install "
                          "them with pip install 'aelab[onnx]'")


def check_opset(opset: Any) -> int:
    """``opset`` as an int within what the exporter and ONNX Runtime both run, or one line saying which."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSET_MIN <= opset <= OPSET_MAX:
        raise AelabError(f"--opset {opset!r}: give an ONNX opset from {OPSET_MIN} to {OPSET_MAX} (default {OPSET}, the "
                         f"exporter's own; below {OPSET_MIN} its graphs would go through a version converter)")
    return opset


__all__ = ["NEEDS", "OnnxMissing", "missing_packages", "require_onnx", "check_opset"]
