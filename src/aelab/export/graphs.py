"""The PyTorch side of ``aelab export``: a model's encoder and decoder as modules with graph-shaped
inputs and outputs, exported to ONNX in one pass and split into one graph each.

- :class:`EncoderGraph`: samples ``x`` ``(batch, *sample_shape)`` → the family's code, flat
  ``(batch, K)``: ``code`` (a deterministic code; a discrete one as its indices in float32), or
  ``mu`` and ``logvar`` for a posterior (``Family.code == "mean"``: the VAEs). Nothing is sampled.
- :class:`DecoderGraph`: ``z`` ``(batch, K)`` → ``x_hat`` ``(batch, *sample_shape)``.
- With ``scaler`` given, both take and give the data's own range (pixels 0–255): the run's
  scaling (:class:`aelab.data.Scaler`) is computed inside the graph, in float64 exactly as NumPy
  computes it (the same operations in the same order), then cast to float32.

Why torch.onnx's dynamo exporter (``torch.export`` + onnxscript) and not the TorchScript one: the
TorchScript exporter refuses aelab's convolution layers (``aten::copy``: the channels-last copy of a
one-channel batch, ``models/layers.py``) and is deprecated since torch 2.9; the dynamo exporter
exports every family and preset unchanged, with a symbolic batch dimension from
``torch.export.Dim``, and writes byte-identical graphs for the same weights (the test checks both).
Its fixed cost is the operator registry it builds on every call (3–4 s of a 6 s export here), so
:func:`export_graphs` exports any number of graphs in one call (one module whose forward runs
them side by side, on separate inputs) and cuts the result into one graph each with
:class:`onnx.utils.Extractor` (each graph keeps exactly the nodes and weights its outputs need).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx
import onnx.utils
import torch
from torch import nn

from .layout import BATCH, DECODER_INPUT, DECODER_OUTPUT, ENCODER_INPUT, ENCODER_OUTPUTS


class ScaleIn(nn.Module):
    """Raw samples ``(B, D)`` (float32, the data's range) → the model's input, as ``Scaler.apply``
    computes it: ``unit`` x / max in float32; ``minmax`` float64 x·scale + min; ``standard``
    float64 (x − mean) / std; then float32."""

    def __init__(self, scaler) -> None:
        super().__init__()
        self.method = scaler.method
        if self.method == "unit":
            m = scaler.unit_max
            self.register_buffer("unit", torch.tensor(np.float32(m if m is not None else 1.0)))
            self.identity = m is None
        else:
            self.register_buffer("a", torch.as_tensor(np.asarray(scaler.a, dtype=np.float64)))
            self.register_buffer("b", torch.as_tensor(np.asarray(scaler.b, dtype=np.float64)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "unit":
            return x if self.identity else x / self.unit
        x64 = x.to(torch.float64)
        if self.method == "minmax":
            return (x64 * self.a + self.b).to(torch.float32)
        return ((x64 - self.a) / self.b).to(torch.float32)


class ScaleOut(nn.Module):
    """The model's output ``(B, D)`` → the data's range, as ``Scaler.invert`` computes it (float64,
    then float32): ``unit`` s·max, ``minmax`` (s − min) / scale, ``standard`` s·std + mean."""

    def __init__(self, scaler) -> None:
        super().__init__()
        self.method = scaler.method
        if self.method == "unit":
            m = scaler.unit_max
            self.identity = m is None
            self.register_buffer("unit", torch.tensor(float(m if m is not None else 1.0), dtype=torch.float64))
        else:
            self.register_buffer("a", torch.as_tensor(np.asarray(scaler.a, dtype=np.float64)))
            self.register_buffer("b", torch.as_tensor(np.asarray(scaler.b, dtype=np.float64)))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if self.method == "unit" and self.identity:
            return s
        s64 = s.to(torch.float64)
        if self.method == "unit":
            out = s64 * self.unit
        elif self.method == "minmax":
            out = (s64 - self.b) / self.a
        else:
            out = s64 * self.b + self.a
        return out.to(torch.float32)


class EncoderGraph(nn.Module):
    """``x`` ``(B, *sample_shape)`` → the code ``(B, K)``, or ``(mu, logvar)`` for ``code == "mean"``."""

    def __init__(self, model: nn.Module, sample_shape: Sequence[int], code: str, scaler=None) -> None:
        super().__init__()
        self.model = model
        self.dim = int(math.prod(sample_shape))
        self.code = code
        self.scale = ScaleIn(scaler) if scaler is not None else None
        if code == "mean" and not callable(getattr(model.encoder, "distribution", None)):
            raise TypeError(f"{type(model).__name__}: a family whose code is a posterior mean needs "
                            "model.encoder.distribution(x) -> (mu, logvar) to be exported")

    def forward(self, x: torch.Tensor):
        flat = x.reshape(x.shape[0], self.dim)
        if self.scale is not None:
            flat = self.scale(flat)
        if self.code == "mean":
            mu, logvar = self.model.encoder.distribution(flat)
            return mu.reshape(mu.shape[0], -1), logvar.reshape(logvar.shape[0], -1)
        code = self.model.encode(flat)
        return code.reshape(code.shape[0], -1)


class DecoderGraph(nn.Module):
    """``z`` ``(B, K)`` → ``x_hat`` ``(B, *sample_shape)``."""

    def __init__(self, model: nn.Module, sample_shape: Sequence[int], scaler=None) -> None:
        super().__init__()
        self.model = model
        self.shape = tuple(int(d) for d in sample_shape)
        self.scale = ScaleOut(scaler) if scaler is not None else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.model.decode(z)
        out = out.reshape(out.shape[0], -1)
        if self.scale is not None:
            out = self.scale(out)
        return out.reshape(z.shape[0], *self.shape)


@dataclass
class Part:
    """One graph to export: ``module(example)`` with its input and output names."""

    module: nn.Module
    example: torch.Tensor
    input_name: str
    output_names: tuple[str, ...]


def encoder_part(model: nn.Module, sample_shape: Sequence[int], code: str, scaler=None, batch: int = 3) -> Part:
    """The encoder graph's :class:`Part` (an example batch of ``batch`` samples in [0, 1])."""
    g = torch.Generator().manual_seed(0)
    example = torch.rand((batch, *sample_shape), generator=g)
    return Part(EncoderGraph(model, sample_shape, code, scaler), example, ENCODER_INPUT, ENCODER_OUTPUTS[code])


def decoder_part(model: nn.Module, sample_shape: Sequence[int], code_dim: int, scaler=None, batch: int = 3) -> Part:
    """The decoder graph's :class:`Part` (an example batch of ``batch`` zero codes)."""
    return Part(DecoderGraph(model, sample_shape, scaler), torch.zeros(batch, code_dim), DECODER_INPUT,
                (DECODER_OUTPUT,))


class _SideBySide(nn.Module):
    """Every part's module on its own input; the outputs of all, in order, as one flat tuple."""

    def __init__(self, parts: Sequence[Part]) -> None:
        super().__init__()
        self.mods = nn.ModuleList(p.module for p in parts)

    def forward(self, inputs: tuple[torch.Tensor, ...]):
        outs: list[torch.Tensor] = []
        for m, x in zip(self.mods, inputs):
            o = m(x)
            outs.extend(o if isinstance(o, tuple) else (o,))
        return tuple(outs)


_CONV1_LOCK = threading.Lock()


@contextlib.contextmanager
def pytorch_convolutions():
    """aelab's C kernels for one-output-channel convolutions (``models/conv1.py``) off while the model
    is traced: ``torch.export`` cannot look inside a C call; the graph gets ONNX's own Conv. Through
    their documented switch, ``AELAB_CONV1=0``, restored afterwards (the values are the same
    convolution to float rounding)."""
    with _CONV1_LOCK:
        old = os.environ.get("AELAB_CONV1")
        os.environ["AELAB_CONV1"] = "0"
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("AELAB_CONV1", None)
            else:
                os.environ["AELAB_CONV1"] = old


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines, warnings and log records kept off the user's terminal."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript",
                                             "torch.fx.experimental.symbolic_shapes", "torch.__trace")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _in(i: int, p: Part) -> str:
    return f"p{i}_{p.input_name}"


def _outs(i: int, p: Part) -> list[str]:
    return [f"p{i}_{n}" for n in p.output_names]


def export_graphs(parts: Sequence[Part], opset: int) -> list[onnx.ModelProto]:
    """One ONNX graph per part, in ``opset``, each with its own names and a symbolic ``batch``
    dimension (axis 0 of its input and outputs), from one ``torch.onnx.export`` call.

    The parts' modules are put side by side in one module (each on its own input), exported with
    the dynamo exporter, then each part's graph is cut out (:class:`onnx.utils.Extractor`: the
    nodes its outputs depend on, and only their weights) and its names set to the part's.
    """
    if not parts:
        return []
    whole = _SideBySide(parts)
    n = max(p.example.shape[0] for p in parts)
    inputs = (tuple(_batch_of(p.example, n) for p in parts),)  # one argument, a tuple: one input per part
    batch = torch.export.Dim(BATCH)  # one symbol for all: each part's graph keeps only its own input
    dims = (tuple({0: batch} for _ in parts),)
    in_names = [_in(i, p) for i, p in enumerate(parts)]
    out_names = [n for i, p in enumerate(parts) for n in _outs(i, p)]
    with pytorch_convolutions(), _quiet(), torch.no_grad():
        program = torch.onnx.export(whole, inputs, dynamo=True, opset_version=opset, input_names=in_names,
                                    output_names=out_names, dynamic_shapes=dims, verbose=False, optimize=True,
                                    external_data=False)
    full = program.model_proto
    extractor = onnx.utils.Extractor(full)
    graphs = []
    for i, p in enumerate(parts):
        g = extractor.extract_model([_in(i, p)], _outs(i, p))
        _rename(g, {_in(i, p): p.input_name, **dict(zip(_outs(i, p), p.output_names))})
        graphs.append(g)
    return graphs


def _batch_of(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` with ``n`` samples (its first ones repeated), so every part's example shares one batch size."""
    reps = -(-n // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:n]


def _rename(model: onnx.ModelProto, names: dict[str, str]) -> None:
    """Graph inputs and outputs renamed (and every node's reference to them), their axis 0 the
    symbolic ``batch``; the intermediate shape annotations (``value_info``, optional) dropped."""
    g = model.graph
    for node in g.node:
        for k, n in enumerate(node.input):
            if n in names:
                node.input[k] = names[n]
        for k, n in enumerate(node.output):
            if n in names:
                node.output[k] = names[n]
    for v in (*g.input, *g.output):
        v.name = names.get(v.name, v.name)
        dims = v.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = BATCH
    del g.value_info[:]


def graph_signature(model: onnx.ModelProto) -> dict[str, list[dict]]:
    """``{"inputs": [...], "outputs": [...]}``: each with its name, dtype and shape (``"batch"`` for the
    symbolic axis), as the graph declares them."""
    def one(v) -> dict:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": shape}
    return {"inputs": [one(v) for v in model.graph.input], "outputs": [one(v) for v in model.graph.output]}


# -- parity ----------------------------------------------------------------------------------------
#: ONNX Runtime against PyTorch: |ort − torch| ≤ RTOL·|torch| + ATOL·max(1, max |torch|), elementwise
RTOL = 1e-5
#: the absolute floor, relative to the output array's own scale: two float32 implementations of the
#: same layer sum their products in different orders (ONNX Runtime's MLAS, PyTorch's oneDNN), which
#: moves a result by a few units in the last place of the *largest* terms it sums — so an entry that
#: cancels to near 0 (a code unit, a pre-sigmoid pixel at 0.5) can differ by far more than 1e-5 of
#: itself. 1e-6 of the array's largest value (at least of 1) is about 8 float32 ulps of it.
ATOL = 1e-6


def differences(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """``max_abs`` |got − ref|; ``max_rel`` |got − ref| / |ref| over the entries with |ref| ≥ 1e-3
    (below that the absolute floor is what holds them); ``max_rel_to_max``: ``max_abs`` / max |ref|,
    the difference at the scale of the whole output; ``excess``: the largest |got − ref| over its
    tolerance (≤ 1 passes)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"shapes differ: {got.shape} and {ref.shape}")
    if ref.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0, "max_rel_to_max": 0.0, "excess": 0.0}
    d = np.abs(got - ref)
    big = np.abs(ref) >= 1e-3
    rel = float((d[big] / np.abs(ref[big])).max()) if big.any() else 0.0
    tol = RTOL * np.abs(ref) + ATOL * max(1.0, float(np.abs(ref).max()))
    top = float(np.abs(ref).max())
    return {"max_abs": float(d.max()), "max_rel": rel, "max_rel_to_max": float(d.max()) / top if top > 0 else 0.0,
            "excess": float((d / tol).max())}


def run_graph(model: onnx.ModelProto, feed: np.ndarray) -> list[np.ndarray]:
    """The graph run by ONNX Runtime on the CPU, one thread (deterministic), on its one input."""
    import onnxruntime as ort  # deferred: ONNX Runtime only for the checks, not to write graphs

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: np.ascontiguousarray(feed, dtype=np.float32)})


def torch_outputs(part_module: nn.Module, feed: np.ndarray) -> list[np.ndarray]:
    """What PyTorch computes for the same graph module (aelab's C kernels as training uses them)."""
    with torch.no_grad():
        out = part_module(torch.from_numpy(np.ascontiguousarray(feed, dtype=np.float32)))
    return [o.detach().cpu().numpy() for o in (out if isinstance(out, tuple) else (out,))]


__all__ = ["EncoderGraph", "DecoderGraph", "ScaleIn", "ScaleOut", "Part", "encoder_part", "decoder_part",
           "export_graphs", "graph_signature", "differences", "run_graph", "torch_outputs", "pytorch_convolutions",
           "RTOL", "ATOL"]
