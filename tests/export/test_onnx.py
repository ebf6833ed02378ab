"""The ONNX export's contract: every family in ``aelab.models.FAMILIES`` (the registry, iterated here,
so a family added later is covered without touching this file) and every preset in ``aelab.presets``
exports an encoder graph and a decoder graph that ``onnx.checker`` accepts and whose ONNX Runtime
outputs match PyTorch's on test images — for encoder and decoder separately, at batch sizes other
than the one traced — within ``aelab.export.graphs``' tolerance: |ort − torch| ≤ 1e-5·|torch| +
1e-6·max(1, max |torch|) (the absolute floor is ~8 float32 ulps of the array's largest value: two
libraries summing a layer's products in different orders move an entry that cancels to near 0 by that
much; see ``graphs.ATOL``). A discrete code (VQ-VAE's indices) must match exactly.

The models of the parity cases are built, not trained: the graph does not depend on the values of
the weights, and training adds nothing to a parity check beyond weights that are not their
initial ones — so the biases (which Keras' init leaves at 0) are drawn, and every term of every
layer is non-trivial. Cases whose graphs are necessarily the same — the same encoder and decoder
modules (``repr``-equal: classes, layers, shapes) and the same ``encode``/``decode`` methods, as
keras-blog-dense and keras-blog-sparse, which differ only in a loss term — share one graph pair. All graphs
come from one ``export_graphs`` call, the function ``to_onnx`` itself uses (the exporter's fixed
cost, its operator registry, is paid once). One real run — a VAE, the family with two encoder
outputs and sampling left outside — is trained and exported end to end through the CLI (``aelab
train`` then ``aelab export --raw-input``), exported twice (byte-identical graphs), and its decoder
decodes a code the way a web page would.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from conftest import mnist_available, one_line  # noqa: E402

from aelab.cli import main  # noqa: E402
from aelab.data import DataConfig, Scaler, load  # noqa: E402
from aelab.errors import AelabError, ConfigError  # noqa: E402
from aelab.export import graphs as G  # noqa: E402
from aelab.export import layout, to_onnx  # noqa: E402
from aelab.models import FAMILIES, build_model, family_of  # noqa: E402
from aelab.presets import load_preset, preset_names  # noqa: E402

DIGITS = (1, 8, 8)
IMAGES = (1, 28, 28)
# a conditional family (cvae) is refused: its graphs would need the label as a second input
CASES = [f"family:{name}" for name in FAMILIES if not FAMILIES[name].conditional] + [f"preset:{name}" for name in preset_names()]
#: raw-input graphs (the scaling inside) of the ae family on digits, one per fitted scaling
RAW_CASES = ["minmax", "standard"]


def _model_config(case: str):
    """The case's model config on digits (8×8) where it fits, else on 28×28 images (the conv presets)."""
    kind, name = case.split(":", 1)
    cfg = load_preset(name).model if kind == "preset" else FAMILIES[name].Config()
    try:
        return cfg.fitted_to(DIGITS, "digits")
    except ConfigError:
        return cfg.fitted_to(IMAGES, "28×28 images")


def _drawn_biases(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.copy_(torch.empty_like(p).uniform_(-0.2, 0.2, generator=g))
    return model.eval()


def _images(shape: tuple[int, ...], n: int = 16) -> np.ndarray:
    """``n`` test images of ``shape``, scaled to [0, 1]: digits', MNIST's (the synthetic set without it)."""
    if shape == DIGITS:
        return load(DataConfig(dataset="digits")).x_test[:n].astype(np.float32) / 16
    ds = load(DataConfig(dataset="mnist" if mnist_available() else "synthetic", limit=64, test_limit=n))
    return ds.x_test[:n].astype(np.float32) / 255


def _differences_ok(got: np.ndarray, ref: np.ndarray, what: str) -> dict:
    d = G.differences(got, ref)
    assert d["excess"] <= 1.0, f"{what}: ONNX Runtime differs from PyTorch beyond tolerance: {d}"
    return d


@pytest.fixture(scope="module")
def zoo():
    """Every case's model, and its encoder and decoder graphs, from one export."""
    built, parts, index = {}, [], {}
    for i, case in enumerate(CASES):
        cfg = _model_config(case)
        model = _drawn_biases(build_model(cfg, torch.Generator().manual_seed(i)), i)
        fam = family_of(cfg)
        # the graphs are a function of the encoder's and decoder's modules and of the methods called on them
        key = (repr(model.encoder), repr(model.decoder), type(model).encode, type(model).decode, fam.code,
               tuple(cfg.input_shape))
        if key not in index:
            index[key] = len(parts)
            parts += [G.encoder_part(model, cfg.input_shape, fam.code),
                      G.decoder_part(model, cfg.input_shape, cfg.code_dim)]
        built[case] = (cfg, fam, index[key])
    ds = load(DataConfig(dataset="digits"))
    raw = {}
    cfg = FAMILIES["ae"].Config().fitted_to(DIGITS)
    model = _drawn_biases(build_model(cfg, torch.Generator().manual_seed(99)), 99)
    for method in RAW_CASES:
        scaler = Scaler.fit(method, ds.x_train, 16)
        raw[method] = (scaler, len(parts))
        parts += [G.encoder_part(model, DIGITS, "deterministic", scaler), G.decoder_part(model, DIGITS, 32, scaler)]
    graphs = G.export_graphs(parts, layout.OPSET)
    return {"built": built, "parts": parts, "graphs": graphs, "raw": raw, "digits": ds}


@pytest.mark.parametrize("case", CASES)
def test_encoder_and_decoder_graphs_match_pytorch(zoo, case):
    cfg, fam, at = zoo["built"][case]
    enc, dec = zoo["parts"][at], zoo["parts"][at + 1]
    genc, gdec = zoo["graphs"][at], zoo["graphs"][at + 1]
    for g in (genc, gdec):
        onnx.checker.check_model(g, full_check=True)
        assert [o.version for o in g.opset_import if o.domain in ("", "ai.onnx")] == [layout.OPSET]
    assert [i.name for i in genc.graph.input] == ["x"]
    assert [o.name for o in genc.graph.output] == list(layout.ENCODER_OUTPUTS[fam.code])
    assert [i.name for i in gdec.graph.input] == ["z"] and [o.name for o in gdec.graph.output] == ["x_hat"]
    sig = G.graph_signature(genc)
    assert sig["inputs"][0]["shape"] == ["batch", *cfg.input_shape]
    x = _images(tuple(cfg.input_shape))
    for n in (len(x), 1):  # the traced example had 3 samples: the batch axis is symbolic
        ref, got = G.torch_outputs(enc.module, x[:n]), G.run_graph(genc, x[:n])
        assert len(got) == len(ref) == len(layout.ENCODER_OUTPUTS[fam.code])
        for name, a, b in zip(layout.ENCODER_OUTPUTS[fam.code], got, ref):
            assert a.shape == b.shape == (n, cfg.code_dim)
            if fam.code == "discrete":
                assert np.array_equal(a, b), f"{case}: the codebook indices differ"
            else:
                _differences_ok(a, b, f"{case} encoder {name}")
        z = ref[0]
        want, have = G.torch_outputs(dec.module, z), G.run_graph(gdec, z)
        assert have[0].shape == (n, *cfg.input_shape)
        _differences_ok(have[0], want[0], f"{case} decoder")


@pytest.mark.parametrize("method", RAW_CASES)
def test_raw_input_graphs_scale_inside_exactly_as_the_run_does(zoo, method):
    """--raw-input: the encoder takes digits' own values (0–16) and computes the run's scaling in
    float64 exactly as Scaler.apply does; the decoder gives back what Scaler.invert gives."""
    scaler, at = zoo["raw"][method]
    enc = zoo["parts"][at]
    raw = zoo["digits"].x_test[:32].astype(np.float32)
    model = enc.module.model
    with torch.no_grad():
        want_code = model.encode(torch.from_numpy(scaler.apply(raw))).numpy()
    code = G.run_graph(zoo["graphs"][at], raw)[0]
    _differences_ok(code, want_code, f"{method} raw encoder")
    # the scaling itself is the same bits: the graph's first step against NumPy's
    assert np.array_equal(G.ScaleIn(scaler)(torch.from_numpy(raw.reshape(32, -1))).numpy(), scaler.apply(raw))
    with torch.no_grad():
        want = scaler.invert(model.decode(torch.from_numpy(want_code)).numpy()).reshape(32, *DIGITS)
    got = G.run_graph(zoo["graphs"][at + 1], want_code)[0]
    _differences_ok(got, want, f"{method} raw decoder")
    assert np.array_equal(G.ScaleOut(scaler)(torch.from_numpy(want_code[:, :1].repeat(64, 1))).numpy(),
                          scaler.invert(want_code[:, :1].repeat(64, 1)))


# -- one real run, end to end through the CLI ----------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A VAE trained for one epoch on digits by ``aelab train``, exported by ``aelab export --raw-input``."""
    root = tmp_path_factory.mktemp("export")
    run = root / "run"
    assert main(["train", "--dataset", "digits", "--family", "vae", "--encoder", "32:relu", "--decoder",
                 "32:relu,64:sigmoid", "--set", "model.latent=4", "--epochs", "1", "--out", str(run), "-q"]) == 0
    assert main(["export", str(run), "--format", "onnx", "--raw-input"]) == 0
    return run


def test_cli_export_writes_checked_graphs_with_their_metadata(exported, capsys):
    out = exported / "onnx"
    assert sorted(p.name for p in out.iterdir()) == sorted(layout.EXPORT_LAYOUT)
    rec = json.loads((out / "export.json").read_text())
    assert rec["family"] == "vae" and rec["code"] == "mean" and rec["opset"] == layout.OPSET
    assert rec["raw_input"] is True and rec["scaling"] == {"method": "unit", "in_graph": True, "unit_max": 16.0,
                                                            "formula": "scaled = raw / unit_max, raw = scaled * unit_max"}
    assert rec["encoder"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    assert rec["encoder"]["outputs"] == [{"name": "mu", "dtype": "float32", "shape": ["batch", 4]},
                                         {"name": "logvar", "dtype": "float32", "shape": ["batch", 4]}]
    assert rec["decoder"]["inputs"] == [{"name": "z", "dtype": "float32", "shape": ["batch", 4]}]
    assert "sampling stays outside the graph" in rec["sampling"] and rec["check"]["images"] == 10
    assert set(rec["check"]) >= {"encoder.mu", "encoder.logvar", "decoder.x_hat"}
    for role in ("encoder", "decoder"):
        blob = (out / f"{role}.onnx").read_bytes()
        assert hashlib.sha256(blob).hexdigest() == rec[role]["sha256"]
        g = onnx.load_from_string(blob)
        onnx.checker.check_model(g, full_check=True)
        props = {p.key: p.value for p in g.metadata_props}
        assert props["aelab.graph"] == role and props["aelab.run"] == rec["run"]
        assert props["aelab.weights_sha256"] == json.loads((exported / "run.json").read_text())["weights_sha256"]
        assert json.loads(props["aelab.inputs"]) == rec[role]["inputs"]
        assert json.loads(props["aelab.scaling"])["in_graph"] is True and props["aelab.sampling"] == rec["sampling"]
    # raw values in, raw values out: the run's own test images as aelab.data.load gives them
    from aelab import open_run

    run = open_run(exported)
    x = run.dataset.x_test.astype(np.float32)
    sess = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    code, logvar = sess.run(None, {"x": x})
    _differences_ok(code, run.encode(x), "trained run encoder (mu)")
    with torch.no_grad():
        want = run.model.encoder.distribution(torch.from_numpy(run.scaler.apply(x)))[1].numpy()
    _differences_ok(logvar, want, "trained run encoder (logvar)")
    dec = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    _differences_ok(dec.run(None, {"z": code})[0], run.decode(code), "trained run decoder")
    # the same export again into its own (marked) directory: replaced, the graphs byte for byte the same
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".onnx"}
    capsys.readouterr()
    assert main(["export", str(exported), "--raw-input", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "encoder.onnx: x (batch, 1, 8, 8) -> mu (batch, 4), logvar (batch, 4)" in said and "-> " + str(out) in said
    assert "sampling stays outside the graph" in said
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".onnx"} == before
    again = json.loads((out / "export.json").read_text())
    assert {k: v for k, v in again.items() if k != "check"} == {k: v for k, v in rec.items() if k != "check"}


def test_the_decoder_is_what_a_web_page_can_load_and_feed_a_code(exported):
    """The browser lab's path: one self-contained file (weights inside, no external data, no custom
    domain or local function), input ``z`` (batch, K) float32 → ``x_hat`` (batch, C, H, W); a code
    from the run's codes.npz decodes to the run's own decoding of it."""
    path = exported / "onnx" / "decoder.onnx"
    g = onnx.load(str(path), load_external_data=False)
    assert not g.functions and {n.domain for n in g.graph.node} <= {"", "ai.onnx"}
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in g.graph.initializer)
    sig = G.graph_signature(g)
    assert sig == {"inputs": [{"name": layout.DECODER_INPUT, "dtype": "float32", "shape": ["batch", 4]}],
                   "outputs": [{"name": layout.DECODER_OUTPUT, "dtype": "float32", "shape": ["batch", 1, 8, 8]}]}
    codes = np.load(exported / "codes.npz", allow_pickle=False)["test_codes"][:5].astype(np.float32)
    sess = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    from aelab import open_run

    _differences_ok(sess.run(["x_hat"], {"z": codes})[0], open_run(exported).decode(codes), "page decode")


# -- refusals: one line, nothing written --------------------------------------------------------------
def test_a_conditional_vae_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    run = tmp_path / "cvae"
    assert main(["train", "--dataset", "digits", "--family", "cvae", "--encoder", "32:relu", "--decoder",
                 "32:relu,64:sigmoid", "--set", "model.latent=2", "--epochs", "1", "--out", str(run), "-q"]) == 0
    capsys.readouterr()
    assert main(["export", str(run)]) == 2
    assert "a conditional VAE's encoder and decoder both take the class label" in one_line(capsys)
    assert not (run / "onnx").exists()


def test_a_run_that_is_not_finished_or_whose_weights_do_not_verify_is_refused(exported, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(exported, unfinished, ignore=shutil.ignore_patterns("onnx"))
    (unfinished / "DONE").unlink()
    assert main(["export", str(unfinished)]) == 2
    assert "is not a finished run" in one_line(capsys)
    tampered = tmp_path / "tampered"
    shutil.copytree(exported, tampered, ignore=shutil.ignore_patterns("onnx"))
    w = bytearray((tampered / "weights.safetensors").read_bytes())
    w[-1] ^= 0xFF
    (tampered / "weights.safetensors").write_bytes(bytes(w))
    assert main(["export", str(tampered)]) == 2
    one_line(capsys)
    assert not (unfinished / "onnx").exists() and not (tampered / "onnx").exists()


def test_an_output_directory_aelab_did_not_write_is_left_as_it_is(exported, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "encoder.onnx").write_text("my own model")
    assert main(["export", str(exported), "--out", str(mine)]) == 2
    assert "did not write there (encoder.onnx)" in one_line(capsys)
    assert (mine / "encoder.onnx").read_text() == "my own model" and len(list(mine.iterdir())) == 1
    assert main(["export", str(exported), "--out", str(exported)]) == 2
    assert "is a run directory" in one_line(capsys)
    other = tmp_path / "other"
    shutil.copytree(exported / "onnx", other)
    mark = json.loads((other / layout.EXPORT_MARK).read_text())
    (other / layout.EXPORT_MARK).write_text(json.dumps({**mark, "run": "else", "config_hash": "0123456789abcdef"}))
    with pytest.raises(AelabError, match="holds the export of another run"):
        to_onnx(exported, other)


def test_missing_onnx_and_a_bad_opset_are_one_line(exported, capsys, monkeypatch):
    assert main(["export", str(exported), "--opset", "12"]) == 2
    assert "--opset 12: give an ONNX opset from 18 to" in one_line(capsys)
    import aelab.export.checks as checks

    monkeypatch.setattr(checks.importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else 1)
    assert main(["export", str(exported)]) == 2
    assert "needs onnxscript, which is not installed; install them with pip install 'aelab[onnx]'" in one_line(capsys)


def test_the_export_command_and_package_load_nothing_heavy():
    code = ("import sys, aelab.export, aelab.export.command, aelab.export.layout; "
            "print(sorted(m for m in ('torch', 'numpy', 'onnx', 'onnxscript', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_the_run_directory_layout_knows_the_default_export_directory():
    from aelab.runs import RUN_LAYOUT

    if layout.DEFAULT_DIR not in RUN_LAYOUT:
        pytest.skip("runs/directory.py's RUN_LAYOUT has no 'onnx' entry yet (requested from the lead)")
    assert RUN_LAYOUT[layout.DEFAULT_DIR] == layout.EXPORT_LAYOUT
