"""The TensorBoard tracker, read back with TensorBoard's own event reader: the scalars per epoch are
history.json's, the diagnostics metrics.json's, the figures and tags are there, the hparams hold the
config, and the Embedding Projector folder is consistent (as many metadata rows as codes, a sprite
with one cell per code, a config naming the files). Tiny runs on scikit-learn's digits (offline)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard")

import aelab.track  # noqa: E402
from aelab.cli import main  # noqa: E402
from aelab.runs.events import EpochEnded, RunStarted  # noqa: E402
from aelab.study import load_study, run_study  # noqa: E402
from aelab.track.tensorboard_tracker import projector_folder  # noqa: E402

STUDY = """
title = "tiny"
[defaults]
data.dataset = "digits"
train.epochs = 2
[baselines.a]
model.encoder = ["8:relu"]
[variants.b]
base = "a"
model.encoder = ["8:sigmoid"]
[[questions]]
id = "1"
baseline = "a"
variant = "b"
claims = [{ text = "lower", kind = "less_than_baseline", params = { metric = "final.val_loss" } }]
"""


def _events(run_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_path), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    return ea


def _text(ea, tag: str) -> str:
    from tensorboard.util import tensor_util

    (ev,) = ea.Tensors(f"{tag}/text_summary")
    return tensor_util.make_ndarray(ev.tensor_proto).item().decode()


def _raw(run_path: Path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    for f in sorted(run_path.glob("events.out.tfevents.*")):
        yield from EventFileLoader(str(f)).Load()


def small_report(out: Path) -> None:
    """A study's report step, small (aelab's own takes seconds): report.md and one figure."""
    (out / "report.md").write_text("# tiny\n\nb's val loss against a's.\n")
    (out / "figures").mkdir()
    (out / "figures" / "recon-a.png").write_bytes(next((out / "runs").glob("a-*/recon.png")).read_bytes())


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A two-run study on digits tracked into a TensorBoard log directory; (output, log dir, tracker)."""
    root = tmp_path_factory.mktemp("tb")
    (root / "tiny.toml").write_text(STUDY)
    out, logs = root / "out", root / "logs"
    with aelab.track.tensorboard(logs, strict=True) as tracker:
        run_study(load_study(root / "tiny.toml"), out, progress=False, workers=1, report=small_report,
                  on_event=tracker)
    return out, logs, tracker


def _run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "runs").iterdir() if p.is_dir())


def test_scalars_per_epoch_equal_the_history_and_diagnostics_the_metrics(study):
    out, logs, tracker = study
    for rd in _run_dirs(out):
        tb = tracker.run_path(rd)
        assert tb.parent == logs / "out"  # grouped under the study's output directory's name
        ea = _events(tb)
        hist = json.loads((rd / "history.json").read_text())
        expected = {"train/loss": hist["loss"], "val/loss": hist["val_loss"], "train/penalty": hist["penalty"],
                    "val/penalty": hist["val_penalty"], "time/epoch_seconds": hist["epoch_seconds"],
                    **{f"train/{k}": v for k, v in hist["terms"].items()},
                    **{f"val/{k}": v for k, v in hist["val_terms"].items()}}
        assert "train/reconstruction" in expected and len(hist["loss"]) == 2
        for tag, values in expected.items():
            got = [(e.step, e.value) for e in ea.Scalars(tag)]
            # TensorBoard keeps scalars as float32: the history's values, rounded once
            assert got == [(i + 1, float(np.float32(v))) for i, v in enumerate(values)], tag
        metrics = json.loads((rd / "metrics.json").read_text())
        for tag, v in (("diagnostics/bce", metrics["bce"]), ("diagnostics/latent.probe_accuracy",
                                                             metrics["latent"]["probe_accuracy"])):
            (e,) = ea.Scalars(tag)
            assert (e.step, e.value) == (2, float(np.float32(v)))


def test_figures_tags_config_and_hparams_are_written(study):
    out, _, tracker = study
    rd = _run_dirs(out)[0]
    tb = tracker.run_path(rd)
    ea = _events(tb)
    (recon,) = ea.Images("figures/recon")
    assert recon.encoded_image_string == (rd / "recon.png").read_bytes()  # the run's own PNG, byte for byte
    (latent_map,) = ea.Images("figures/latent_map")
    assert latent_map.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and latent_map.width > 100
    record = json.loads((rd / "run.json").read_text())
    config = json.loads((rd / "config.json").read_text())
    assert _text(ea, "tags/data_sha256") == record["data_source"]["sha256"]
    assert _text(ea, "tags/seed") == str(config["train"]["seed"])
    assert _text(ea, "tags/version") == aelab.__version__
    assert json.loads(_text(ea, "config").strip("`\n").removeprefix("json\n")) == config
    from tensorboard.plugins.hparams import metadata as hp

    starts = [hp.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
              for ev in _raw(tb) for v in ev.summary.value if v.tag == hp.SESSION_START_INFO_TAG]
    (start,) = starts
    params = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    assert params["train.epochs"] == 2 and params["data.dataset"] == "digits"
    assert params["model.encoder"] == json.dumps(config["model"]["encoder"])


def test_the_projector_folder_opens_the_codes_with_their_images(study):
    from google.protobuf import text_format
    from PIL import Image
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    out, _, tracker = study
    for rd in _run_dirs(out):
        folder = projector_folder(tracker.run_path(rd))
        cfg = text_format.Parse((folder / "projector_config.pbtxt").read_text(), ProjectorConfig())
        (emb,) = cfg.embeddings
        codes = np.load(rd / "codes.npz")
        z = np.loadtxt(folder / emb.tensor_path, delimiter="\t", ndmin=2)
        assert z.shape == codes["test_codes"].shape == tuple(emb.tensor_shape)
        np.testing.assert_allclose(z, codes["test_codes"], rtol=1e-7)
        rows = (folder / emb.metadata_path).read_text().splitlines()
        assert rows[0].split("\t") == ["label", "class", "reconstruction_error", "test_index"]
        assert len(rows) - 1 == len(z)  # a header, then one row per code
        assert [int(r.split("\t")[0]) for r in rows[1:]] == codes["test_labels"].tolist()
        w, h = emb.sprite.single_image_dim
        assert (w, h) == (8, 8)
        side = math.ceil(math.sqrt(len(z)))
        with Image.open(folder / emb.sprite.image_path) as im:
            assert im.size == (side * w, side * h)
            sprite = np.asarray(im.convert("L"), dtype=np.float32) / 255
        # cell 0 is the first code's test image, the data scaled to [0, 1] (digits' pixels are 0..16)
        x = aelab.data.load(aelab.RunConfig.model_validate(
            {k: v for k, v in json.loads((rd / "config.json").read_text()).items() if k != "config_hash"}).data).x_test
        first = x[codes["test_index"][0]].reshape(8, 8) / 16
        np.testing.assert_allclose(sprite[:8, :8], first, atol=1 / 255)


def test_tensorboards_projector_plugin_finds_each_runs_embedding(study):
    """What ``tensorboard --logdir`` serves at /data/plugin/projector/runs, from the plugin's own code."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin

    out, logs, _ = study
    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logs))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logs))
    plugin = ProjectorPlugin(base_plugin.TBContext(logdir=str(logs), data_provider=provider, multiplexer=mux))
    plugin._update_configs()  # what its /runs route does first
    assert sorted(plugin._configs) == ["out/a", "out/b"]
    assert [r.run_name for r in provider.list_runs(context.RequestContext(), experiment_id="")]
    (emb,) = plugin._configs["out/a"].embeddings
    assert list(emb.tensor_shape) == list(np.load(next((out / "runs").glob("a-*/codes.npz")))["test_codes"].shape)


def test_the_study_report_goes_to_the_group(study):
    out, logs, _ = study
    ea = _events(logs / "out")
    assert _text(ea, "report") == (out / "report.md").read_text()
    assert _text(ea, "study").startswith("study tiny (")  # the output mark's description: study, data
    assert "| a | 2 |" in _text(ea, "runs")
    figures = sorted(p.stem for p in (out / "figures").glob("*.png"))
    assert figures and sorted(t.removeprefix("report/") for t in ea.Tags()["images"]) == figures


def test_aelab_train_track_tensorboard(tmp_path, monkeypatch, capsys):
    """The CLI flag: the console's epoch lines still print, and the run's TensorBoard directory is
    named after the run, beside nothing else (a second one would get a timestamped name)."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--name", "d", "--track", "tensorboard",
                 "--track-dir", "logs"]) == 0
    assert "d epoch 2/2" in capsys.readouterr().out
    ea = _events(tmp_path / "logs" / "d")
    hist = json.loads((tmp_path / "runs" / "d" / "history.json").read_text())
    assert [e.value for e in ea.Scalars("val/loss")] == [float(np.float32(v)) for v in hist["val_loss"]]
    assert (projector_folder(tmp_path / "logs" / "d") / "sprite.png").is_file()


def test_track_flags_without_track_and_a_missing_package_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "digits", "--track-dir", "logs"]) == 2
    assert "--track-dir goes with --track tensorboard|mlflow" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    assert main(["train", "--dataset", "digits", "--track", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'aelab[track]'" in err
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_a_failing_tracker_never_stops_training(tmp_path, capsys):
    """Not strict (the default): a logging failure is one line, then the tracker is quiet."""
    tracker = aelab.track.tensorboard(tmp_path / "logs")

    def broken(*a):
        raise OSError("disk full")

    tracker._epoch = broken
    rd = tmp_path / "run"
    tracker(RunStarted("r", 0, rd, 2))
    for e in (1, 2):
        tracker(EpochEnded("r", 0, rd, e, 2, {"loss": 1.0}, {"loss": 1.0}, 0.1, 10.0))
    tracker.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["aelab: the tensorboard tracker stopped (OSError: disk full); training goes on untracked"]


def test_importing_the_trackers_imports_no_tracker_package():
    code = ("import sys, aelab.track, aelab.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mlflow', 'tensorboard'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_a_named_group_holds_every_run_of_the_tracker(tmp_path):
    with aelab.track.tensorboard(tmp_path / "logs", group="g", strict=True) as tracker:
        for i, name in enumerate("xy"):
            tracker(RunStarted(name, i, tmp_path / name, 1))
        assert [tracker.run_path(tmp_path / n) for n in "xy"] == [tmp_path / "logs" / "g" / n for n in "xy"]
