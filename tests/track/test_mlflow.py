"""The MLflow tracker, read back with MlflowClient from the local SQLite store: parameters equal the
config, each metric's history equals history.json (steps = epochs), the diagnostics metrics.json,
the tags name the data's fingerprint, seed and version, the artifacts are listed; a study's two runs
are two children of one parent run holding the report, also when reused; an interrupted run ends
KILLED and its resume logs every epoch. Tiny runs on scikit-learn's digits (offline). One store for
the module: creating MLflow's SQLite schema alone takes seconds. (The CLI's --track wiring, common to
both trackers, is tested in test_tensorboard.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

# MLflow's SQLite store, not aelab, uses SQLAlchemy's deprecated "noload" (MLflow 3 on SQLAlchemy 2.1);
# pyproject turns warnings into errors, so this one, MLflow's own, is let through here
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")

import aelab  # noqa: E402
import aelab.track  # noqa: E402
from aelab.config import RunConfig  # noqa: E402
from aelab.runs import Interrupted, Stop  # noqa: E402
from aelab.runs.events import EpochEnded  # noqa: E402
from aelab.study import load_study, run_study  # noqa: E402
from aelab.track.base import TrackerError  # noqa: E402

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


def small_report(out: Path) -> None:
    """A study's report step, small (aelab's own takes seconds): report.md and one figure."""
    (out / "report.md").write_text("# tiny\n")
    (out / "figures").mkdir()
    (out / "figures" / "recon-a.png").write_bytes(next((out / "runs").glob("a-*/recon.png")).read_bytes())


def flat(d: dict, prefix: str = "") -> dict[str, str]:
    """A config as MLflow parameters should hold it: dotted keys, lists and None as JSON, all as text."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v) if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A two-run study on digits tracked into a SQLite store; (root, study output, tracker, client)."""
    root = tmp_path_factory.mktemp("mlflow")
    (root / "tiny.toml").write_text(STUDY)
    out = root / "out"
    with aelab.track.mlflow(dir=root / "mlruns", strict=True) as tracker:
        run_study(load_study(root / "tiny.toml"), out, progress=False, workers=1, report=small_report,
                  on_event=tracker)
    assert tracker.tracking_uri == f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    return root, out, tracker, tracker.client


def _run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "runs").iterdir() if p.is_dir())


def test_params_metrics_tags_and_artifacts_read_back(store):
    _, out, tracker, client = store
    for rd in _run_dirs(out):
        run = client.get_run(tracker.run_id(rd))
        assert run.info.status == "FINISHED" and run.info.run_name == rd.name.rsplit("-", 1)[0]
        config = json.loads((rd / "config.json").read_text())
        assert run.data.params == flat(config)
        assert run.data.params["train.epochs"] == "2" and run.data.params["model.encoder"] in ('["8:relu"]',
                                                                                              '["8:sigmoid"]')
        hist = json.loads((rd / "history.json").read_text())
        expected = {"train/loss": hist["loss"], "val/loss": hist["val_loss"], "train/penalty": hist["penalty"],
                    "val/penalty": hist["val_penalty"], "time/images_per_second": hist["images_per_second"],
                    **{f"train/{k}": v for k, v in hist["terms"].items()},
                    **{f"val/{k}": v for k, v in hist["val_terms"].items()}}
        assert "val/reconstruction" in expected
        for key, values in expected.items():
            got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            assert got == list(enumerate(values, start=1)), key  # float64 in SQLite: the very values
        metrics = json.loads((rd / "metrics.json").read_text())
        assert run.data.metrics["diagnostics/mse"] == metrics["mse"]
        assert run.data.metrics["diagnostics/latent.knn_accuracy"] == metrics["latent"]["knn_accuracy"]
        record = json.loads((rd / "run.json").read_text())
        tags = run.data.tags
        assert tags["aelab.data_sha256"] == record["data_source"]["sha256"]
        assert tags["aelab.seed"] == str(config["train"]["seed"]) and tags["aelab.version"] == aelab.__version__
        assert tags["aelab.config_hash"] == record["config_hash"] and tags["aelab.data"] == "digits"
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "history.json", "metrics.json", "run.json", "summary.md", "figures"} <= top
        figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
        assert figures == {"figures/recon.png", "figures/latent_map.png"}
        local = Path(client.download_artifacts(run.info.run_id, "figures/recon.png", str(rd.parent.parent)))
        assert local.read_bytes() == (rd / "recon.png").read_bytes()


def test_a_study_is_one_parent_run_with_its_runs_as_children(store):
    _, out, tracker, client = store
    exp = client.get_experiment_by_name("aelab")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`aelab.call` = '{tracker.call_id}'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 3 and len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == "out" and parent.data.tags["aelab.output"] == str(out)
    children = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert children == ["a", "b"]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"report.md", "results.json", "figures"}
    assert exp.artifact_location == (out.parent / "mlruns" / "artifacts").resolve().as_uri()


def test_a_study_trained_earlier_is_logged_whole(store):
    """Every run reused from its directory (nothing trains, so no event comes): the tracker told the
    output directory logs the study's runs from their directories, and its report."""
    root, out, first, client = store
    with aelab.track.mlflow(dir=root / "mlruns", output=out, strict=True) as again:
        run_study(load_study(root / "tiny.toml"), out, progress=False, workers=1, on_event=again)
    runs = client.search_runs([again.experiment_id], filter_string=f"tags.`aelab.call` = '{again.call_id}'")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and sorted(r.info.run_name for r in children) == ["a", "b"]
    for r in children:
        rd = Path(r.data.tags["aelab.run_dir"])
        hist = json.loads((rd / "history.json").read_text())
        assert r.info.status == "FINISHED"
        got = sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val/loss"))
        assert got == list(enumerate(hist["val_loss"], start=1))
        assert r.data.params == client.get_run(first.run_id(rd)).data.params


def test_an_interrupted_run_ends_killed_and_its_resume_logs_every_epoch(store, tmp_path):
    """A run stopped after its first epoch is a KILLED MLflow run with that epoch; resumed by another
    call, it is a new MLflow run (a lone run: no parent) holding both epochs, the first read from
    history.json, equal to the history."""
    root, client = store[0], store[3]
    cfg = aelab.fit_config(RunConfig(name="e").with_overrides({"data.dataset": "digits", "train.epochs": 2}))
    stop = Stop()
    with aelab.track.mlflow(dir=root / "mlruns", strict=True) as first:
        def stop_after_one(ev):
            first(ev)
            if isinstance(ev, EpochEnded):
                stop.set("test")

        with pytest.raises(Interrupted):
            aelab.train(cfg, tmp_path / "e", on_event=stop_after_one, stop=stop)
    killed = client.get_run(first.run_id(tmp_path / "e"))
    assert killed.info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(killed.info.run_id, "train/loss")] == [1]
    with aelab.track.mlflow(dir=root / "mlruns", strict=True) as again:
        trained = aelab.train(cfg, tmp_path / "e", on_event=again)
    resumed = client.get_run(again.run_id(tmp_path / "e"))
    assert resumed.info.status == "FINISHED" and "mlflow.parentRunId" not in resumed.data.tags
    got = sorted((m.step, m.value) for m in client.get_metric_history(resumed.info.run_id, "train/loss"))
    assert got == list(enumerate(trained.history["loss"], start=1))


def test_a_missing_package_or_a_bad_store_is_one_line(monkeypatch, tmp_path):
    with pytest.raises(TrackerError, match="bogus") as info:
        aelab.track.mlflow("bogus://nowhere")
    assert "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "mlflow.entities", None)  # as if mlflow were not installed
    with pytest.raises(TrackerError) as info:
        aelab.track.mlflow(dir=tmp_path)
    assert str(info.value).endswith("install it with pip install 'aelab[track]'") and "\n" not in str(info.value)
