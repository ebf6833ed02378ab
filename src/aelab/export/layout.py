"""What ``aelab export`` writes and under which names: constants only (no imports), so the CLI's
parser, the run-directory layout and a web page can read them without PyTorch or ONNX.

The names are the contract with whatever loads the graphs (ONNX Runtime, onnxruntime-web in a
page): the encoder takes ``x``, the decoder takes ``z`` and gives ``x_hat``, the batch dimension is
the symbolic ``batch`` everywhere.
"""

from __future__ import annotations

#: the ONNX opset the graphs are written in, unless ``--opset`` says otherwise: 18 is the opset
#: torch.onnx's exporter (torch 2.13, its torchlib) translates to natively — a lower one goes through
#: ONNX's version converter — and what ONNX Runtime ≥ 1.14 and onnxruntime-web run
OPSET = 18
#: the opsets ``--opset`` takes: from the exporter's own up to the newest this ONNX Runtime release runs
OPSET_MIN, OPSET_MAX = 18, 21

EXPORT_MARK = ".aelab-export.json"
EXPORT_FORMAT = "aelab-export"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
EXPORT_JSON = "export.json"
#: the files an export directory holds (``aelab._owned``'s layout): nothing else is ever removed or replaced
EXPORT_LAYOUT = {EXPORT_MARK: None, ENCODER_FILE: None, DECODER_FILE: None, EXPORT_JSON: None}
#: the default output directory, inside the run directory
DEFAULT_DIR = "onnx"

#: graph input and output names
ENCODER_INPUT = "x"
DECODER_INPUT = "z"
DECODER_OUTPUT = "x_hat"
#: the encoder's outputs by ``Family.code``: a deterministic code, a posterior's mean and log-variance,
#: discrete codes
ENCODER_OUTPUTS = {"deterministic": ("code",), "mean": ("mu", "logvar"), "discrete": ("code",)}
BATCH = "batch"

__all__ = ["OPSET", "OPSET_MIN", "OPSET_MAX", "EXPORT_MARK", "EXPORT_FORMAT", "ENCODER_FILE", "DECODER_FILE",
           "EXPORT_JSON", "EXPORT_LAYOUT", "DEFAULT_DIR", "ENCODER_INPUT", "DECODER_INPUT", "DECODER_OUTPUT",
           "ENCODER_OUTPUTS", "BATCH"]
