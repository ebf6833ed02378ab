"""Events of ``train_runs`` (aelab.runs.events): what a callback receives, in order, from this
process and from worker processes; stopping from code as Ctrl-C does; the progress display as
one consumer of the events, covering the finishing work."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from aelab.runs import (FINISH_STEPS, EpochEnded, FinishStep, Interrupted, Progress, RunFinished, RunFinishing,
                        RunProgress, RunStarted, Stop, train_runs)
from conftest import make_cfg

SMALL = {"data.limit": 256, "data.test_limit": 64, "train.epochs": 3}


def _kinds(events, index=None):
    return [type(e).__name__ for e in events if not isinstance(e, Progress) and (index is None or e.index == index)]


def test_a_callback_gets_every_event_of_a_run_in_order(tmp_path):
    events = []
    cfg = make_cfg(**SMALL)
    (res,) = train_runs([cfg], [tmp_path / "r"], device="cpu", progress=False, on_event=events.append)
    assert _kinds(events) == (["RunStarted"] + ["EpochEnded"] * 3 + ["RunFinishing"] + ["FinishStep"] * len(FINISH_STEPS)
                              + ["RunFinished"])
    started = events[0]
    assert isinstance(started, RunStarted) and (started.epochs, started.start_epoch) == (3, 0)
    assert started.run_dir == tmp_path / "r" and started.run == cfg.name and started.index == 0
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    assert [e.epoch for e in epochs] == [1, 2, 3] and all(e.epochs == 3 for e in epochs)
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    for e in epochs:  # every term and metric, as history.json records it
        assert e.train["loss"] == history["loss"][e.epoch - 1] and e.val["loss"] == history["val_loss"][e.epoch - 1]
        assert {"loss", "penalty", *history["terms"]} == set(e.train)
        assert {"loss", "penalty", *history["val_terms"]} == set(e.val)
        assert e.seconds > 0 and e.images_per_second > 0
    finishing = next(e for e in events if isinstance(e, RunFinishing))
    assert finishing.steps == FINISH_STEPS
    assert [e.step for e in events if isinstance(e, FinishStep)] == list(FINISH_STEPS)
    finished = events[-2]
    assert isinstance(finished, RunFinished) and finished.result.metrics == res.metrics
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].done == progress[-1].total == 3 + len(FINISH_STEPS)
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert isinstance(events[-1], Progress) and events[-1].running == ()


def test_a_stop_from_a_callback_after_epoch_1_checkpoints_and_the_resume_is_bitwise_an_uninterrupted_run(tmp_path):
    cfg = make_cfg(**SMALL)
    stop = Stop()
    seen = []

    def after_epoch_1(ev):
        seen.append(ev)
        if isinstance(ev, EpochEnded) and ev.epoch == 1:
            stop.set()

    cut = tmp_path / "cut"
    with pytest.raises(Interrupted, match=r"^stop requested: training stopped; checkpoint saved for cut \(epoch 2, batch 0\)"):
        train_runs([cfg], [cut], device="cpu", progress=False, stop=stop, on_event=after_epoch_1)
    meta = json.loads((cut / "checkpoint" / "state.json").read_text())
    assert (meta["epoch"], meta["batch"]) == (1, 0) and not (cut / "DONE").exists()
    assert not any(isinstance(e, RunFinishing) for e in seen)

    resumed = []
    train_runs([cfg], [cut], device="cpu", progress=False, on_event=resumed.append)
    assert resumed[0].start_epoch == 1 and [e.epoch for e in resumed if isinstance(e, EpochEnded)] == [2, 3]
    assert resumed[-1].done == resumed[-1].total  # the resumed run's progress counts the epochs it held
    ref = tmp_path / "ref"
    train_runs([cfg], [ref], device="cpu", progress=False)
    wa, wb = load_file(str(ref / "weights.safetensors")), load_file(str(cut / "weights.safetensors"))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)  # bit for bit
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (ref, cut))
    assert ha["loss"] == hb["loss"] and ha["val_loss"] == hb["val_loss"]


def test_events_from_worker_processes_reach_the_callback_and_a_stop_reaches_the_workers(tmp_path):
    cfgs = [make_cfg(**SMALL, name="narrow", **{"model.encoder": ["16:relu"]}),
            make_cfg(**SMALL, name="wide", **{"model.encoder": ["48:relu"]})]  # two groups: they do not stack
    dirs = [tmp_path / "a" / c.name for c in cfgs]
    events = []
    train_runs(cfgs, dirs, device="cpu", progress=False, workers=2, on_event=events.append)
    for i, d in enumerate(dirs):
        assert _kinds(events, i) == (["RunStarted"] + ["EpochEnded"] * 3 + ["RunFinishing"]
                                     + ["FinishStep"] * len(FINISH_STEPS) + ["RunFinished"])
        assert {e.run_dir for e in events if not isinstance(e, Progress) and e.index == i} == {d}
    assert events[-1].done == events[-1].total == 2 * (3 + len(FINISH_STEPS))

    stop = Stop()
    long = [c.with_overrides({"train.epochs": 200}) for c in cfgs]  # long enough to be stopped on a loaded machine
    dirs = [tmp_path / "b" / c.name for c in long]

    def stop_after_first_epoch(ev):
        if isinstance(ev, EpochEnded):
            stop.set()

    with pytest.raises(Interrupted, match="^stop requested: training stopped; checkpoint saved for "):
        train_runs(long, dirs, device="cpu", progress=False, workers=2, stop=stop, on_event=stop_after_first_epoch)
    # the run that sent the first epoch checkpointed; the other checkpointed too, or never began
    assert not any((d / "DONE").exists() for d in dirs)
    assert any((d / "checkpoint" / "state.json").exists() for d in dirs)


def test_the_progress_display_covers_finishing_and_ends_at_100_percent(tmp_path, capsys):
    cfg = make_cfg(**SMALL)
    train_runs([cfg], [tmp_path / "r"], device="cpu", progress=True, overall_progress=True)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("training: ")]
    total = 3 + len(FINISH_STEPS)
    assert lines[-1].startswith(f"training: {total}/{total} steps (100 %)")
    assert any("finishing" in ln for ln in lines)  # the steps after the last epoch move the display too


def test_run_progress_is_a_plain_consumer(capsys):
    bar = RunProgress("work")
    for done in range(0, 11):
        bar(Progress(done, 10, ("a",), ("a",) if done > 5 else ()))
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("work: 10/10 steps (100 %)") and "finishing a" in lines[-1]


def test_a_run_spec_computes_the_fingerprint_once_and_carries_it_to_other_processes(tmp_path, monkeypatch):
    import pickle

    import aelab.config
    from aelab.data import fingerprint
    from aelab.data.cache import data_key
    from aelab.runs import RunSpec
    from aelab.runs import spec as spec_mod

    cfg = make_cfg(**SMALL)
    spec = RunSpec.of(cfg, tmp_path / "r", 3)
    assert spec.fingerprint == aelab.config.config_hash(cfg) and spec.data_key == data_key(cfg.data)
    assert spec.data_key[-1] == fingerprint(cfg.data)  # what RunSpec.of passes to config_hash
    calls = []
    real = spec_mod.config_hash
    monkeypatch.setattr(spec_mod, "config_hash", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    monkeypatch.setattr(aelab.config, "config_hash", spec_mod.config_hash)
    again = pickle.loads(pickle.dumps(spec))  # as a worker process or a Ray task gets it
    assert again == spec and not calls
    train_runs([cfg], [tmp_path / "r"], device="cpu", progress=False)
    assert len(calls) == 1  # one run, one fingerprint, for the whole trip
