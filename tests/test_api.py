"""The public API (``import aelab``): train one config, open a finished run as an object that takes
and gives arrays in the data's own shape and range, fit a config to its data, and what ``import
aelab`` costs (nothing)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import aelab
from aelab.config import RunConfig
from aelab.errors import AelabError

#: a tiny run: scikit-learn's 8x8 digits (offline, values 0..16), one epoch
DIGITS = {"data.dataset": "digits", "data.limit": 256, "data.test_limit": 64, "train.epochs": 1,
          "train.batch_size": 32, "model.encoder": ["8:relu"]}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    cfg = aelab.fit_config(RunConfig().with_overrides(DIGITS))
    return aelab.train(cfg, tmp_path_factory.mktemp("api") / "digits")


def by_hand(run, x: np.ndarray) -> torch.Tensor:
    """``x`` scaled as training scaled it, through the data layer's own function."""
    d = run.config.data
    ds = aelab.data.load(d)
    _, scaled = aelab.data.scale(ds.x_train, x, method=d.scaling, fit="train", unit_max=ds.value_range[1])
    return torch.from_numpy(scaled)


def test_import_aelab_does_no_work_and_help_lists_the_api():
    code = ("import sys, pydoc, aelab\nprint([m for m in ('torch', 'numpy', 'pydantic') if m in sys.modules])\n"
            "text = pydoc.render_doc(aelab, renderer=pydoc.plaintext)\n"
            "print([n for n in ('train', 'open_run', 'fit_config', 'run_study', 'run_sweep', 'build_report', "
            "'TrainedRun', 'sweep_base') if n + '(' not in text and 'class ' + n not in text])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[]", "[]"]  # nothing heavy on import; help(aelab) documents every name
    for name in aelab.__all__:
        assert getattr(aelab, name) is not None, name
    r = subprocess.run([sys.executable, "-c", "import aelab; print(aelab.data.load.__module__)"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("aelab.data"), r.stderr  # a subpackage, before anything imported it


def test_open_run_takes_and_gives_arrays_in_the_datas_shape_and_range(digits_run):
    run = aelab.open_run(digits_run.run_dir)
    assert run.config == digits_run.config and run.sample_shape == (1, 8, 8)
    assert len(run.history["loss"]) == 1 and "val_loss" in run.history and isinstance(run.metrics, dict)
    ds = aelab.data.load(run.config.data)  # raw: uint8 0..16, (N, 1, 8, 8)
    x = ds.x_test
    with torch.no_grad():
        out = run.model(by_hand(run, x))
    codes = run.encode(x)
    assert codes.shape == (len(x), 8) and codes.dtype == np.float32
    assert np.array_equal(codes, out.code.numpy())
    recon = run.reconstruct(x)
    assert recon.shape == x.shape and recon.dtype == np.float32
    np.testing.assert_allclose(recon, out.recon.numpy().reshape(x.shape) * 16, rtol=1e-6)
    assert 0 <= recon.min() and recon.max() <= 16  # the data's range, not [0, 1]
    dec = run.decode(codes)
    assert dec.shape == x.shape
    np.testing.assert_allclose(dec, recon, rtol=1e-6, atol=1e-6)  # a deterministic AE: decode ∘ encode
    # flat samples are taken too, and one bad shape is one line
    assert np.array_equal(run.encode(x.reshape(len(x), -1)), codes)
    with pytest.raises(AelabError, match=r"shape \(1, 8, 8\)"):
        run.encode(np.zeros((3, 28, 28)))


def test_train_reuses_a_finished_run_and_open_run_refuses_what_is_not_one(digits_run, tmp_path):
    again = aelab.train(digits_run.config, digits_run.run_dir)
    assert again.history == digits_run.history
    with pytest.raises(AelabError):
        aelab.open_run(tmp_path / "missing")


def test_a_run_trained_without_figures_is_the_same_run_and_draws_its_figure_when_asked(digits_run, tmp_path):
    """figures=False skips recon.png while finishing (the scikit-learn estimator's runs): the same
    weights and numbers, and the opened run draws the figure on demand."""
    run = aelab.train(digits_run.config, tmp_path / "nofig", figures=False)
    assert not (run.run_dir / "recon.png").exists() and (digits_run.run_dir / "recon.png").is_file()
    assert run.history["loss"] == digits_run.history["loss"] and run.metrics == digits_run.metrics
    assert run.recon_png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_tells_every_event_and_a_stop_from_code_checkpoints_and_resumes(tmp_path):
    from aelab.runs import EpochEnded, Interrupted, Progress, RunFinished, RunFinishing, RunStarted, Stop

    cfg = aelab.fit_config(RunConfig().with_overrides({**DIGITS, "train.epochs": 3}))
    seen, stop = [], Stop()

    def stop_after_one_epoch(ev):
        seen.append(ev)
        if isinstance(ev, EpochEnded):
            stop.set()

    with pytest.raises(Interrupted):
        aelab.train(cfg, tmp_path / "r", on_event=stop_after_one_epoch, stop=stop, engine="plain")
    assert [type(e) for e in seen if not isinstance(e, Progress)] == [RunStarted, EpochEnded]
    seen.clear()
    run = aelab.train(cfg, tmp_path / "r", on_event=seen.append, engine="plain")  # the same call resumes
    kinds = [type(e) for e in seen if not isinstance(e, Progress)]
    assert kinds[0] is RunStarted and seen[0].start_epoch == 1
    assert kinds.count(EpochEnded) == 2 and RunFinishing in kinds and kinds[-1] is RunFinished
    ends = [e for e in seen if isinstance(e, EpochEnded)]
    assert [e.epoch for e in ends] == [2, 3] and ends[-1].val["loss"] == run.history["val_loss"][-1]
    assert seen[-1].fraction == 1.0 and len(run.history["loss"]) == 3


@pytest.mark.parametrize("scaling, extra", [("minmax", {}), ("standard", {"train.loss": "mse",
                                                                          "model.decoder": ["784:linear"]})])
def test_a_fitted_scaling_is_the_training_splits_and_is_inverted(scaling, extra, tmp_path):
    cfg = aelab.fit_config(RunConfig().with_overrides({**DIGITS, "data.scaling": scaling,
                                                       "data.exclude_labels": [3], **extra}))
    run = aelab.train(cfg, tmp_path / scaling)
    ds = aelab.data.load(cfg.data)
    keep = ds.y_train != 3  # fitted on the samples trained on
    _, by_hand_x = aelab.data.scale(ds.x_train[keep], ds.x_test, method=scaling, fit="train")
    assert np.array_equal(run.scaler.apply(ds.x_test), by_hand_x)
    back = run.scaler.invert(by_hand_x).reshape(ds.x_test.shape)
    np.testing.assert_allclose(back, ds.x_test, atol=1e-4)
    with torch.no_grad():
        ref = run.model(torch.from_numpy(by_hand_x)).code.numpy()
    assert np.array_equal(run.encode(ds.x_test), ref)


def test_a_reports_content_is_built_without_writing_a_file(tmp_path):
    base = aelab.fit_config(RunConfig().with_overrides({**DIGITS, "name": "tiny"}))
    out = tmp_path / "sweep"
    res = aelab.run_sweep(base, "model.activity_l1", [0.0, 1e-3], out, progress=False)
    assert [p["value"] for p in res["points"]] == [0.0, 1e-3]
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))
    rep = aelab.compose_report(out)
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == before  # nothing written
    assert isinstance(rep, aelab.Report) and rep.kind == "sweep" and rep.figures
    assert "activity_l1" in rep.markdown() and "<html" in rep.html().lower()
    paths = aelab.write_report(rep, out)
    assert paths["md"].read_text() == rep.markdown() and not (out / "report.html").read_text() == ""


def test_fit_config_fits_a_models_shapes_to_its_data():
    cfg = RunConfig().with_overrides({"data.dataset": "digits"})  # the default model is MNIST's: 784 wide
    fitted = aelab.fit_config(cfg)
    assert fitted.model.input_shape == (1, 8, 8) and fitted.model.decoder[-1].size == 64
    assert aelab.fit_config(fitted) is fitted  # already fitted: the same config back
    mnist = RunConfig()
    assert aelab.fit_config(mnist) is mnist
