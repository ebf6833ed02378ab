"""Early stopping and learning-rate schedules: Keras 3's rules on hand-made sequences, in real training,
and resumed bit for bit from the middle of a patience."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

import aelab
from aelab.config import RunConfig
from aelab.engine.loop import Hooks, fit
from aelab.engine.schedules import Controls, EarlyStopping, ReduceLROnPlateau, cosine_lr, step_lr
from aelab.engine.steppers import PlainStepper
from aelab.errors import ConfigError
from aelab.runs import DataCache, EpochEnded, Interrupted, Stop, spec_of

from conftest import StopAfterNextStep


def _stops_at(values, **kw):
    """(the epoch from 0 Keras' EarlyStopping stops after or None, best epoch, copies of weights taken at)."""
    es = EarlyStopping(**kw)
    copies = []
    for epoch, v in enumerate(values):
        stop, copy_now = es.update(epoch, v)
        if copy_now:
            copies.append(epoch)
        if stop:
            return epoch, es.best_epoch, copies
    return None, es.best_epoch, copies


# Each case worked out by hand from keras/src/callbacks/early_stopping.py (Keras 3): wait += 1 at every
# monitored epoch; an improvement (current − min_delta < best) resets it only when it also beats the
# baseline, and returns before the stop check; stop when wait ≥ patience and epoch > 0.
V = [1.0, 0.9, 0.95, 0.93, 0.91, 0.85, 0.86, 0.87, 0.88]


@pytest.mark.parametrize("kw, stop, best", [
    ({"patience": 2}, 3, 1),  # 0.95, 0.93 do not beat 0.9: wait 1, 2 → stop after epoch 3
    ({"patience": 3}, 4, 1),  # 0.91 neither: wait 3 at epoch 4
    ({"patience": 4}, None, 5),  # 0.85 at epoch 5 resets; 0.86, 0.87, 0.88 wait 1–3 < 4: runs to the end
    ({"patience": 0}, 2, 1),  # patience 0: the first epoch that does not improve (never epoch 0)
    ({"patience": 2, "min_delta": 0.12}, 2, 0),  # 0.9 is not 0.12 below 1.0: epochs 1, 2 wait → stop after 2
    ({"patience": 1, "start_from_epoch": 3}, 6, 5),  # 0–2 ignored; 0.93 first best, 0.91, 0.85 improve; 0.86 stops
    ({"patience": 2, "baseline": 0.5}, 2, 1),  # never beats the baseline: wait 1 (e0), 2 (e1 improves: no check), 3
    ({"patience": 2, "mode": "max"}, 2, 0),  # max mode: 1.0 is the best; 0.9, 0.95 are worse
])
def test_early_stopping_stops_where_keras_does(kw, stop, best):
    assert _stops_at(V, **kw)[:2] == (stop, best)


def test_improving_without_beating_the_baseline_never_stops_while_it_improves():
    """Keras returns on an improvement before checking patience: a steady fall above the baseline runs on."""
    assert _stops_at([1.0, 0.9, 0.8, 0.7, 0.6, 0.55], patience=1, baseline=0.1)[0] is None
    assert _stops_at([1.0, 0.9, 0.8, 0.8], patience=1, baseline=0.1)[0] == 3


def test_best_weights_are_copied_at_the_first_monitored_epoch_and_at_each_improvement():
    assert _stops_at(V, patience=2, restore_best_weights=True)[2] == [0, 1]
    assert _stops_at(V, patience=2, restore_best_weights=False)[2] == []
    assert _stops_at([1.0, 1.1, 1.2], patience=5, restore_best_weights=True, start_from_epoch=1)[2] == [1]


def test_reduce_on_plateau_with_cooldown_as_keras():
    """factor 0.5, patience 1, cooldown 2, min_delta 1e-4 (absolute): hand-computed from Keras 3's source."""
    p = ReduceLROnPlateau(1e-3, factor=0.5, patience=1, cooldown=2, min_delta=1e-4)
    lrs = []
    for v in [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.49995, 0.4]:
        lrs.append(p.lr)  # the rate the epoch trained with
        p.update(v)
    f = lambda x: float(np.float32(x))  # noqa: E731  (Keras stores its rate in float32)
    r1 = f(f(1e-3) * 0.5)
    r2 = f(r1 * 0.5)
    r3 = f(r2 * 0.5)
    # epoch 1 reduces; 2, 3 rest (cooldown 2; at 3 it is back to 0 and waits 1 → reduces); 4 rests;
    # 5 improves; 6 is within min_delta of 0.5 (no improvement, counter ran out at 5 → reduces); 7 improves
    assert lrs == [1e-3, 1e-3, r1, r1, r2, r2, r2, r3]
    assert p.lr == r3


def test_reduce_on_plateau_respects_min_lr_and_its_float32_test():
    p = ReduceLROnPlateau(1e-3, factor=0.1, patience=0, min_lr=2e-5)
    for _ in range(4):
        p.update(1.0)
    assert p.lr == float(np.float32(2e-5))  # 1e-3 → 1e-4 → max(1e-5, 2e-5) → stays (lr > f32(min_lr) fails)


def test_step_and_cosine_rates_are_the_hand_computed_ones():
    assert [step_lr(0.01, e, 2, 0.5) for e in range(5)] == [0.01, 0.01, 0.005, 0.005, 0.0025]
    want = [0.01, 0.001 + 0.009 * (1 + math.cos(math.pi / 4)) / 2, 0.0055, 0.001 + 0.009 * (1 + math.cos(3 * math.pi / 4)) / 2,
            0.001, 0.001]
    got = [cosine_lr(0.01, e, 4, 0.001) for e in range(6)]
    assert got == pytest.approx(want, rel=1e-15, abs=0)


def test_schedule_and_early_stopping_settings_are_checked():
    for over, msg in [
        ({"train.lr_schedule": "exponential"}, "unknown schedule kind 'exponential'; allowed: step, cosine, plateau"),
        ({"train.lr_schedule.kind": "plateau", "train.lr_schedule.factor": 1.0}, "train.lr_schedule.factor: got 1.0"),
        ({"train.early_stopping.monitor": "val_kl"}, "train.early_stopping.monitor: 'val_kl' is not a value this run records"),
        ({"train.early_stopping.mode": "biggest"}, "train.early_stopping.mode: got 'biggest'"),
    ]:
        with pytest.raises(ConfigError) as err:
            RunConfig().with_overrides(over)
        assert msg in str(err.value) and "\n" not in str(err.value)
    assert RunConfig().with_overrides({"train.early_stopping": True}).train.early_stopping.patience == 0
    vae = RunConfig().with_overrides({"model.family": "vae", "train.early_stopping.monitor": "val_kl"})
    assert vae.train.early_stopping.monitor == "val_kl"
    assert RunConfig().with_overrides({"train.early_stopping": False}).hash() == RunConfig().hash()


# -- in real training ---------------------------------------------------------------------------------
def _cfg(over):
    base = {"data.dataset": "synthetic", "data.limit": 512, "data.test_limit": 128, "model.encoder": ["16:relu"],
            "train.epochs": 5, "train.batch_size": 64}
    return aelab.fit_config(RunConfig().with_overrides({**base, **over}))


def _run(cfg, controls=None, **kw):
    t = cfg.train
    stepper = PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu", optimizer=t.optimizer)
    datas = [DataCache().train_data(cfg, torch.device("cpu"))]
    st = fit(stepper, datas, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed, shuffle=t.shuffle, progress=False,
             controls=controls if controls is not None else Controls(t), **kw)
    return stepper, st.histories[0]


def test_schedules_set_the_rate_each_epoch_trains_with():
    cfg = _cfg({"train.lr": 0.01, "train.lr_schedule.kind": "step", "train.lr_schedule.step_size": 2,
                "train.lr_schedule.gamma": 0.5, "train.epochs": 3})
    stepper, h = _run(cfg)
    assert h.lr == [0.01, 0.01, 0.005] and stepper.opt.param_groups[0]["lr"] == 0.005
    cos = _cfg({"train.lr": 0.01, "train.lr_schedule.kind": "cosine", "train.lr_schedule.min_lr": 0.001, "train.epochs": 3})
    assert _run(cos)[1].lr == [cosine_lr(0.01, e, 3, 0.001) for e in range(3)]


def test_early_stopping_stops_and_restores_the_best_weights():
    # min_delta 10 on a loss below 1: no epoch after the first improves, so patience 1 stops after epoch 2
    cfg = _cfg({"train.early_stopping.patience": 1, "train.early_stopping.min_delta": 10.0,
                "train.early_stopping.restore_best_weights": True})
    stepper, h = _run(cfg)
    assert len(h.loss) == 2 and h.stopped_epoch == 2 and h.restored_epoch == 1
    one, _ = _run(cfg.with_overrides({"train.early_stopping": False, "train.epochs": 1}))
    for (k, a), b in zip(stepper.model.state_dict().items(), one.model.state_dict().values()):
        assert torch.equal(a, b), k  # the weights of the end of epoch 1, the best


def test_keras3_restores_the_best_weights_even_without_stopping():
    cfg = _cfg({"train.epochs": 2, "train.early_stopping.patience": 5, "train.early_stopping.min_delta": 10.0,
                "train.early_stopping.restore_best_weights": True})
    stepper, h = _run(cfg)
    assert h.stopped_epoch is None and h.restored_epoch == 1 and len(h.loss) == 2
    one, _ = _run(cfg.with_overrides({"train.early_stopping": False, "train.epochs": 1}))
    assert all(torch.equal(a, b) for a, b in zip(stepper.model.state_dict().values(), one.model.state_dict().values()))


def test_interrupted_in_the_middle_of_a_patience_and_a_plateau_resumes_bit_for_bit():
    over = {"train.epochs": 5, "train.early_stopping.patience": 3, "train.early_stopping.min_delta": 10.0,
            "train.early_stopping.restore_best_weights": True, "train.lr_schedule.kind": "plateau",
            "train.lr_schedule.patience": 1, "train.lr_schedule.min_delta": 10.0, "train.lr_schedule.factor": 0.5}
    cfg = _cfg(over)
    whole, h_whole = _run(cfg)
    assert h_whole.stopped_epoch == 4 and h_whole.lr[0] > h_whole.lr[2] > h_whole.lr[3]
    # stopped after batch 1 of epoch 3: early stopping waits (2 of 3), the rate was cut once
    ctl, saved = Controls(cfg.train), {}
    t = cfg.train
    first = PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu")
    flag = StopAfterNextStep()

    def end(st):
        if st.epoch == 2:
            flag.arm()

    def interrupt(st):
        saved.update(tensors={**first.state()[0], **ctl.state_tensors()}, loop=copy.deepcopy(st))

    datas = [DataCache().train_data(cfg, torch.device("cpu"))]
    with pytest.raises(Interrupted):
        fit(first, datas, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed, shuffle=t.shuffle, progress=False,
            controls=ctl, stop=flag, hooks=Hooks(on_epoch_end=end, on_interrupt=interrupt))
    assert saved["loop"].epoch == 2 and saved["loop"].batch == 1 and ctl.early.wait == 1
    again_ctl = Controls(cfg.train)
    again_ctl.load_state_tensors(saved["tensors"])
    assert again_ctl.early.wait == 1 and again_ctl.plateau.lr == ctl.plateau.lr and again_ctl.best_weights is not None
    again = PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu")
    again.load_state([{k: v for k, v in saved["tensors"].items() if not k.startswith("loop.")}])
    h = fit(again, datas, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed, shuffle=t.shuffle, progress=False,
            controls=again_ctl, state=saved["loop"]).histories[0]
    assert h.to_dict() | {"epoch_seconds": 0, "images_per_second": 0} == h_whole.to_dict() | {"epoch_seconds": 0, "images_per_second": 0}
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), again.model.state_dict().values()))


def test_a_run_with_early_stopping_resumes_through_train_and_records_it(tmp_path):
    """Keras Adam with early stopping trains alone on the fast path; its checkpoint carries the
    controls' state (loop.ctl.*, loop.best.*), so a run stopped mid-patience ends as the whole one."""
    cfg = _cfg({"train.epochs": 4, "train.early_stopping.patience": 2, "train.early_stopping.min_delta": 10.0,
                "train.early_stopping.restore_best_weights": True})
    whole = aelab.train(cfg, tmp_path / "whole", figures=False)
    stop = Stop()

    def on_event(ev):
        if isinstance(ev, EpochEnded) and ev.epoch == 2:
            stop.set()

    with pytest.raises(Interrupted):
        aelab.train(cfg, tmp_path / "cut", on_event=on_event, stop=stop, figures=False)
    again = aelab.train(cfg, tmp_path / "cut", figures=False)
    h1 = json.loads((tmp_path / "whole" / "history.json").read_text())
    h2 = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert h1["stopped_epoch"] == h2["stopped_epoch"] == 3 and h1["restored_epoch"] == 1
    assert h1["lr"] == [1e-3] * 3 and h1["val_loss"] == h2["val_loss"]
    assert json.loads((tmp_path / "whole" / "run.json").read_text())["engine"] == "StackedDenseStepper"
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), again.model.state_dict().values()))
