"""``aelab.export.to_onnx``: a finished run's encoder and decoder as two ONNX graphs, checked
against PyTorch by ONNX Runtime, with what a program needs to use them written down.

An export directory (default ``RUN_DIR/onnx``) holds:

- ``encoder.onnx``: ``x`` ``(batch, *sample_shape)`` float32 → ``code`` ``(batch, K)``; for a
  family whose code is a posterior (the VAEs) → ``mu`` and ``logvar`` (log σ²), both ``(batch, K)``.
  A discrete code (VQ-VAE) is its indices, as float32.
- ``decoder.onnx``: ``z`` ``(batch, K)`` float32 → ``x_hat`` ``(batch, *sample_shape)``.
- ``export.json``: the run (name, config hash, weights SHA-256), the family and its code, each
  graph's inputs and outputs (names, dtypes, shapes) and SHA-256, the opset, the scaling (method
  and parameters) and whether it is inside the graphs, how to sample a VAE's z, and the check:
  the largest differences between ONNX Runtime and PyTorch on the run's own test images.
- ``.aelab-export.json``: the mark that says this directory is aelab's export of this run.

Each graph also carries the same facts in its ``metadata_props`` (``aelab.*`` keys), so a graph
copied alone still says what it takes. Sampling stays outside the graphs: ONNX's random operators
(``RandomNormal``) take no seed a caller controls and do not give the same numbers across runtimes
or runs, so a graph with them would not be deterministic; ``z = mu + exp(0.5·logvar)·ε`` with
ε ~ N(0, I) is one line in any language.

Scaling. By default the graphs take and give the model's own (scaled) values, as PyTorch's
``model.encode``/``model.decode`` do, and ``export.json`` records the scaling to apply outside. With
``raw_input=True`` (``--raw-input``) the run's scaling is inside both graphs: the encoder takes the
data's own values (pixels 0–255, or 0–16 for ``digits``, as float32) and the decoder gives them back
in that range — the arrays ``aelab.data.load`` gives and ``TrainedRun.encode``/``decode`` take.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import platform
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnx
import onnxruntime
import onnxscript
import torch

from .. import __version__
from .._atomic import atomic_path, check_out_path, ensure_dir, write_json
from .._lock import dir_lock, is_lock_file
from .._owned import clean_temps, names_text, output_contents, write_mark
from ..artifacts import read_json, read_samples, retrain_fix
from ..config import config_hash
from ..errors import AelabError, ConfigError
from ..models import family_of
from ..runs.trained import TrainedRun, open_run
from . import graphs as G
from .checks import check_opset, require_onnx
from .layout import (BATCH, DECODER_FILE, DECODER_INPUT, DECODER_OUTPUT, DEFAULT_DIR, ENCODER_FILE, ENCODER_INPUT,
                     ENCODER_OUTPUTS, EXPORT_FORMAT, EXPORT_JSON, EXPORT_LAYOUT, EXPORT_MARK, OPSET)

SAMPLING = ("sampling stays outside the graph: draw z = mu + exp(0.5 * logvar) * eps with eps ~ N(0, I) "
            "(one standard normal per latent dimension), then feed z to decoder.onnx; ONNX's random operators "
            "are neither seeded nor deterministic across runtimes, so the graphs hold none")


# -- the output directory: new, empty, or this run's export -------------------------------------------
def export_mark(run) -> dict:
    """The mark of a directory holding ``run``'s export: its config hash says whose it is."""
    return {"format": EXPORT_FORMAT, "version": 1, "run": run.config.name, "run_dir": str(Path(run.run_dir).resolve()),
            "config_hash": config_hash(run.config)}


def check_export_out(out: Path, mark: dict, given: bool = True) -> None:
    """Refuse, with one line and before anything is written, an output directory that is not new,
    empty, or this run's export: one holding files ``aelab export`` does not write (a user's
    ``encoder.onnx`` included: without the mark it is not known to be aelab's), another run's
    export, or a run directory."""
    where = f"--out {out}" if given else str(out)
    contents = output_contents(out, EXPORT_LAYOUT, EXPORT_MARK, EXPORT_FORMAT, where)
    if contents is None:
        return
    entries, others, theirs = contents
    if theirs is None:
        if (out / ".aelab-run.json").exists() or (out / "config.json").exists():
            what = "is a run directory"
        else:
            what = f"holds files aelab export did not write there ({names_text(others or entries)})"
    elif others:
        what = f"holds files aelab export did not write there ({names_text(others)})"
    elif theirs.get("config_hash") != mark["config_hash"]:
        what = (f"holds the export of another run (run {theirs.get('run', '?')}, config hash "
                f"{theirs.get('config_hash', '?')}; this is run {mark['run']}, {mark['config_hash']})")
    else:
        return  # this run's own export: replaced file by file
    raise AelabError(f"{where} {what}; aelab export replaces nothing it did not write: give --out a new or empty "
                     "directory")


# -- scaling, as data ----------------------------------------------------------------------------------
def scaling_record(scaler, raw_input: bool) -> dict[str, Any]:
    """The run's scaling as ``export.json`` and the graphs' metadata hold it: the method, its
    parameters, the formula, and whether the graphs apply it themselves (``raw_input``)."""
    rec: dict[str, Any] = {"method": scaler.method, "in_graph": bool(raw_input)}
    if scaler.method == "unit":
        rec["unit_max"] = None if scaler.unit_max is None else float(scaler.unit_max)
        rec["formula"] = ("scaled = raw / unit_max, raw = scaled * unit_max" if scaler.unit_max is not None
                          else "none: the model takes the values as they are")
    elif scaler.method == "minmax":
        rec["scale"] = [float(v) for v in np.asarray(scaler.a).ravel()]
        rec["min"] = [float(v) for v in np.asarray(scaler.b).ravel()]
        rec["formula"] = ("per feature (flat sample order): scaled = raw * scale + min (float64, then float32), "
                          "raw = (scaled - min) / scale")
    else:
        rec["mean"] = [float(v) for v in np.asarray(scaler.a).ravel()]
        rec["std"] = [float(v) for v in np.asarray(scaler.b).ravel()]
        rec["formula"] = ("per feature (flat sample order): scaled = (raw - mean) / std (float64, then float32), "
                          "raw = scaled * std + mean")
    return rec


# -- the export ----------------------------------------------------------------------------------------
def to_onnx(run_or_dir, out_dir: Optional[str | Path] = None, *, opset: int = OPSET, raw_input: bool = False,
            data=None) -> dict[str, Path]:
    """Write a finished run's encoder and decoder as ONNX graphs; returns their paths
    (``{"encoder": …, "decoder": …, "metadata": …export.json}``).

    ``run_or_dir``: a :class:`~aelab.runs.TrainedRun` or a run directory (opened with
    :func:`aelab.open_run`, which refuses a run that has not finished or whose weights do not
    verify). ``out_dir``: a new or empty directory, or one holding this run's export (replaced);
    default ``RUN_DIR/onnx``. ``opset``: the ONNX opset (default :data:`OPSET`). ``raw_input``: the
    run's scaling inside the graphs (raw values in, raw values out). ``data``: where the run's data
    comes from when its scaling needs fitting (``minmax``/``standard``), as for ``open_run``.

    Before anything is written, both graphs are run by ONNX Runtime on the run's own test images
    (``samples.npz``) and compared with PyTorch; a difference beyond ``graphs.RTOL``/``ATOL`` is an
    error. Every file is written atomically; ``export.json``, written last, names the SHA-256 of
    each graph it goes with.
    """
    require_onnx()
    opset = check_opset(opset)
    run = run_or_dir if isinstance(run_or_dir, TrainedRun) else open_run(run_or_dir, data=data)
    if family_of(run.config.model).conditional:
        raise ConfigError(f"{run.config.name}: a conditional VAE's encoder and decoder both take the class label as a "
                          "second input, and aelab export writes one-input graphs; export a run of another family")
    given = out_dir is not None and str(out_dir) != ""
    out = Path(out_dir) if given else Path(run.run_dir) / DEFAULT_DIR
    if given:
        check_out_path(out)
    mark = export_mark(run)
    check_export_out(out, mark, given)  # before anything is computed or created
    graphs, record = _build(run, opset, bool(raw_input))
    created = not out.exists()
    try:
        ensure_dir(out)
        with dir_lock(out):
            check_export_out(out, mark, given)  # under the lock: what another process wrote meanwhile
            with contextlib.suppress(OSError):
                clean_temps(out, EXPORT_LAYOUT)
            write_mark(out, EXPORT_MARK, mark)
            for name, blob in graphs.items():
                with atomic_path(out / name) as tmp:
                    tmp.write_bytes(blob)
            write_json(out / EXPORT_JSON, record)
    except BaseException:
        if created:
            _drop_if_bare(out)
        raise
    return {"encoder": out / ENCODER_FILE, "decoder": out / DECODER_FILE, "metadata": out / EXPORT_JSON}


def _drop_if_bare(out: Path) -> None:
    """After a failure in a directory this call created: remove it when only the mark is there."""
    with contextlib.suppress(OSError):
        rest = [p.name for p in out.iterdir() if not is_lock_file(p.name) and p.name != EXPORT_MARK]
        if not rest:
            (out / EXPORT_MARK).unlink(missing_ok=True)
            out.rmdir()


def _build(run, opset: int, raw_input: bool) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The two graphs (serialised, metadata set) and ``export.json``'s record, checked."""
    cfg = run.config
    fam = family_of(cfg.model)
    shape = tuple(int(d) for d in cfg.model.input_shape)
    model = run.model
    if next(model.parameters(), torch.zeros(())).device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    was_training = model.training
    model.eval()
    scaler = run.scaler if raw_input else None
    try:
        enc = G.encoder_part(model, shape, fam.code, scaler)
        dec = G.decoder_part(model, shape, _code_width(model, shape, fam.code), scaler)
        encoder, decoder = G.export_graphs([enc, dec], opset)
        check = _check(run, enc, dec, encoder, decoder, raw_input)
    finally:
        model.train(was_training)

    fix = retrain_fix(Path(run.run_dir))
    rec = read_json(Path(run.run_dir) / "run.json", fix)
    scaling = scaling_record(run.scaler, raw_input)
    sig_e, sig_d = G.graph_signature(encoder), G.graph_signature(decoder)
    common = {
        "aelab.format": f"{EXPORT_FORMAT}/1",
        "aelab.version": __version__,
        "aelab.run": cfg.name,
        "aelab.config_hash": config_hash(cfg),
        "aelab.weights_sha256": str(rec.get("weights_sha256", "")),
        "aelab.family": fam.name,
        "aelab.code": fam.code,
        "aelab.sample_shape": json.dumps(list(shape)),
        "aelab.raw_input": json.dumps(raw_input),
        "aelab.scaling": json.dumps(scaling),
        "aelab.opset": str(opset),
    }
    if fam.code == "mean":
        common["aelab.sampling"] = SAMPLING
    blobs: dict[str, bytes] = {}
    files: dict[str, Any] = {}
    for file, graph, sig, role in ((ENCODER_FILE, encoder, sig_e, "encoder"), (DECODER_FILE, decoder, sig_d, "decoder")):
        props = {**common, "aelab.graph": role, "aelab.inputs": json.dumps(sig["inputs"]),
                 "aelab.outputs": json.dumps(sig["outputs"])}
        del graph.metadata_props[:]
        onnx.helper.set_model_props(graph, props)
        graph.doc_string = _doc(role, cfg.name, fam, shape, raw_input)
        graph.graph.name = f"{cfg.name}-{role}"
        onnx.checker.check_model(graph, full_check=True)
        blob = graph.SerializeToString()
        blobs[file] = blob
        files[role] = {"file": file, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob), **sig}
    record = {
        "format": EXPORT_FORMAT, "version": 1,
        "run": cfg.name, "run_dir": str(Path(run.run_dir).resolve()),
        "config_hash": common["aelab.config_hash"], "weights_sha256": common["aelab.weights_sha256"],
        "family": fam.name, "code": fam.code, "sample_shape": list(shape),
        "code_size": int(files["decoder"]["inputs"][0]["shape"][1]),
        "opset": opset, "batch_axis": BATCH, "raw_input": raw_input,
        "encoder": files["encoder"], "decoder": files["decoder"],
        "scaling": scaling,
        "sampling": SAMPLING if fam.code == "mean" else None,
        "check": check,
        "exported_with": {"aelab": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                          "onnxscript": onnxscript.__version__, "onnxruntime": onnxruntime.__version__,
                          "python": platform.python_version(),
                          "exporter": "torch.onnx.export(dynamo=True): torch.export, then onnxscript's torchlib"},
    }
    return blobs, record


def _code_width(model, shape: tuple[int, ...], code: str) -> int:
    """K, the width of the flat code the decoder takes (what ``encode`` gives, flattened)."""
    with torch.no_grad():
        x = torch.zeros((1, math.prod(shape)))
        c = model.encoder.distribution(x)[0] if code == "mean" else model.encode(x)
    return int(c.reshape(1, -1).shape[1])


def _check(run, enc, dec, encoder, decoder, raw_input: bool) -> dict[str, Any]:
    """ONNX Runtime against PyTorch on the run's test images (``samples.npz``'s originals): each graph
    output's largest absolute and relative difference; one error line when one is past tolerance."""
    run_dir = Path(run.run_dir)
    x = read_samples(run_dir / "samples.npz", retrain_fix(run_dir))["original"].astype(np.float32)
    shape = tuple(int(d) for d in run.config.model.input_shape)
    if raw_input:
        x = run.scaler.invert(x)
    x = x.reshape(len(x), *shape)
    out: dict[str, Any] = {"images": int(len(x)), "source": "samples.npz (the run's first test images)",
                           "rtol": G.RTOL, "atol": G.ATOL,
                           "tolerance": "|onnxruntime - torch| <= rtol * |torch| + atol * max(1, max |torch|), "
                                        "per output array"}
    worst = 0.0
    ref_e = G.torch_outputs(enc.module, x)
    got_e = G.run_graph(encoder, x)
    for name, g, r in zip(enc.output_names, got_e, ref_e):
        d = G.differences(g, r)
        out[f"encoder.{name}"] = {"max_abs": d["max_abs"], "max_rel": d["max_rel"]}
        worst = max(worst, d["excess"])
    z = ref_e[0]
    got_d, ref_d = G.run_graph(decoder, z), G.torch_outputs(dec.module, z)
    d = G.differences(got_d[0], ref_d[0])
    out[f"decoder.{DECODER_OUTPUT}"] = {"max_abs": d["max_abs"], "max_rel": d["max_rel"]}
    worst = max(worst, d["excess"])
    if worst > 1.0:
        raise AelabError(f"{run.config.name}: ONNX Runtime's outputs differ from PyTorch's beyond the tolerance on the "
                         f"run's test images ({json.dumps(out)}); nothing was written — please report this as a bug")
    return out


def _doc(role: str, name: str, fam, shape: tuple[int, ...], raw_input: bool) -> str:
    where = ("in the data's own range (the run's scaling is inside the graph)" if raw_input
             else "scaled as the run trained on them (export.json: scaling)")
    dims = ", ".join(map(str, shape))
    if role == "encoder":
        outs = ", ".join(ENCODER_OUTPUTS[fam.code])
        what = {"mean": "the posterior's mean and log-variance (nothing is sampled)",
                "discrete": "the codebook indices (float32)"}.get(fam.code, "the code")
        return (f"aelab {fam.label} '{name}': encoder. Input {ENCODER_INPUT} (batch, {dims}) float32, {where}; "
                f"output {outs} (batch, K): {what}.")
    return (f"aelab {fam.label} '{name}': decoder. Input {DECODER_INPUT} (batch, K) float32 (a code; a VAE's z); "
            f"output {DECODER_OUTPUT} (batch, {dims}) float32, {where}.")


__all__ = ["to_onnx", "check_export_out", "export_mark", "scaling_record", "SAMPLING"]
