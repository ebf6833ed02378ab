"""``aelab export``: a trained run's encoder and decoder as graphs that leave Python (ONNX).

:func:`to_onnx` (and ``aelab export RUN_DIR --format onnx``) writes ``encoder.onnx``,
``decoder.onnx`` and ``export.json`` (:mod:`aelab.export.writer`); the names and constants a
program loading them relies on are in :mod:`aelab.export.layout`, the PyTorch side in
:mod:`aelab.export.graphs`. Importing this package loads neither PyTorch nor ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .checks import OnnxMissing, check_opset, require_onnx
from .layout import (DECODER_FILE, DECODER_INPUT, DECODER_OUTPUT, ENCODER_FILE, ENCODER_INPUT, ENCODER_OUTPUTS,
                     EXPORT_JSON, OPSET)


def to_onnx(run_or_dir: Any, out_dir: Optional[str | Path] = None, *, opset: int = OPSET, raw_input: bool = False,
            data: Any = None) -> dict[str, Path]:
    """Write a finished run's encoder and decoder as ONNX graphs; returns
    ``{"encoder": …/encoder.onnx, "decoder": …/decoder.onnx, "metadata": …/export.json}``.

    ``run_or_dir``: a :class:`~aelab.runs.TrainedRun` or a run directory (a run that has not
    finished, or whose weights do not verify, is refused in one line). ``out_dir``: a new or empty
    directory, or one holding this run's export (default ``RUN_DIR/onnx``). ``opset``: the ONNX
    opset (:data:`OPSET`). ``raw_input``: the run's scaling inside the graphs, so the encoder takes
    the data's own values (pixels 0–255) and the decoder gives them back. ``data``: where the run's
    data comes from when its scaling must be fitted (as for :func:`aelab.open_run`).

    The encoder takes ``x`` ``(batch, *sample_shape)`` and gives ``code`` ``(batch, K)`` — for a VAE
    ``mu`` and ``logvar``: sampling z stays outside the graph. The decoder takes ``z`` ``(batch, K)``
    and gives ``x_hat`` ``(batch, *sample_shape)``. Both are checked against PyTorch by ONNX Runtime
    on the run's test images before anything is written (see :mod:`aelab.export.writer`).
    """
    require_onnx()  # one line naming the extra, not an ImportError from inside PyTorch's exporter
    check_opset(opset)
    from .writer import to_onnx as write  # deferred: PyTorch and ONNX load only when a graph is written

    return write(run_or_dir, out_dir, opset=opset, raw_input=raw_input, data=data)


__all__ = ["to_onnx", "OnnxMissing", "OPSET", "ENCODER_FILE", "DECODER_FILE", "EXPORT_JSON", "ENCODER_INPUT", "ENCODER_OUTPUTS",
           "DECODER_INPUT", "DECODER_OUTPUT"]
