"""The engine: loss falls, the fast path equals the plain path, runs are deterministic, Keras Adam."""

from __future__ import annotations

import math

import pytest
import torch

from aelab.config import RunConfig
from aelab.engine.adam import KerasAdam, keras_adam_step_
from aelab.engine.loop import TrainData, _EpochRows, fit, permutation
from aelab.engine.steppers import PlainStepper, StackedDenseStepper
from aelab.errors import TrainingError
from aelab.runs import DataCache, spec_of


def _data(cfgs, n=640, nv=128):
    cache = DataCache()
    return [cache.train_data(c, torch.device("cpu")) for c in cfgs]


def _cfg(**over):
    base = {"data.dataset": "synthetic", "data.limit": 640, "data.test_limit": 128, "train.epochs": 3}
    base.update(over)
    return RunConfig().with_overrides(base)


def _fit(stepper, datas, cfg, **kw):
    t = cfg.train
    return fit(stepper, datas, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed, shuffle=t.shuffle,
               progress=False, **kw)


def _plain(cfg):
    t = cfg.train
    return PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu")


def _stacked(cfgs, **kw):
    t = cfgs[0].train
    return StackedDenseStepper([spec_of(c) for c in cfgs], t.lr, t.beta1, t.beta2, t.eps, "cpu", **kw)


VARIANTS = [
    {},
    {"model.encoder": ["32:sigmoid"], "model.decoder": ["784:relu"]},
    {"model.encoder": ["32:relu"], "model.decoder": ["784:relu"]},
    {"model.activity_l1": 0.01},
    {"data.noise_factor": 0.5},
    {"model.encoder": ["32:tanh"], "model.decoder": ["784:linear"], "train.loss": "mse"},
    {"model.encoder": ["32:elu"], "model.decoder": ["784:softplus"], "train.loss": "mse"},
    {"model.encoder": ["32:selu"], "model.decoder": ["784:leaky_relu"], "train.loss": "mse"},
]


def test_loss_falls_on_synthetic_digits():
    cfg = _cfg(**{"train.epochs": 4})
    st = _fit(_plain(cfg), _data([cfg]), cfg)
    h = st.histories[0]
    assert h.loss[-1] < 0.7 * h.loss[0]
    assert h.val_loss[-1] < h.val_loss[0]


def test_fast_path_equals_plain_path_for_every_activation_and_loss():
    """Stacked side-by-side training gives each model the plain path's history (same kernels, same order)."""
    cfgs = [_cfg(**v) for v in VARIANTS]
    datas = _data(cfgs)
    plain = [_fit(_plain(c), [d], c).histories[0] for c, d in zip(cfgs, datas)]
    fast = _fit(_stacked(cfgs), datas, cfgs[0]).histories
    for v, p, f in zip(VARIANTS, plain, fast):
        for a, b in zip(p.loss + p.val_loss, f.loss + f.val_loss):
            assert math.isclose(a, b, rel_tol=1e-5), (v, p.loss, f.loss)


DEEP = {"model.encoder": ["128:relu", "64:relu", "32:relu"], "model.decoder": ["64:relu", "128:relu", "784:sigmoid"]}
DEEP_SIGMOID = {**DEEP, "model.decoder": ["64:sigmoid", "128:sigmoid", "784:sigmoid"]}


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[1], VARIANTS[3], VARIANTS[4], DEEP, DEEP_SIGMOID],
                         ids=["undercomplete", "relu-output", "sparse", "denoising", "deep", "deep-sigmoid"])
def test_fast_path_trains_to_the_plain_paths_bits(variant):
    """The hand-written step computes the gradient with autograd's operations in autograd's order
    (same matmul kernels, same activation backwards, (σ(z) − y)/n for the logits, the same Adam):
    after 3 epochs the weights are identical, not just close."""
    cfg = _cfg(**variant)
    d = _data([cfg])
    ps, fs = _plain(cfg), _stacked([cfg])
    _fit(ps, d, cfg)
    _fit(fs, d, cfg)
    for (k, a), b in zip(ps.model.state_dict().items(), fs.export_models()[0].state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("group", [VARIANTS[:5], [DEEP, DEEP_SIGMOID]], ids=["shallow", "deep-mixed-activations"])
def test_stacked_models_train_to_their_plain_bits(group):
    cfgs = [_cfg(**v) for v in group]
    datas = _data(cfgs)
    fs = _stacked(cfgs)
    _fit(fs, datas, cfgs[0])
    for c, d, m in zip(cfgs, datas, fs.export_models()):
        ps = _plain(c)
        _fit(ps, [d], c)
        for (k, a), b in zip(ps.model.state_dict().items(), m.state_dict().values()):
            assert torch.equal(a, b), (c.model.encoder, k)


def _epoch_rows(rows, order):
    return rows if order is None else rows[order]


def test_epoch_rows_by_index_or_copied_are_the_epochs_rows_and_a_copy_in_use_is_never_overwritten():
    """Each epoch gets its permutation's rows, whether copied ahead or gathered by index; the copy
    made for the next epoch goes into the buffers of the epoch before last, never the one in use."""
    cfg = _cfg()
    (d,) = _data([cfg])
    rows = _EpochRows([d], d.x_train, seed=5, shuffle=True, epochs=6)
    seen, buffers = set(), set()
    try:
        for epoch in range(6):
            (x_in,), y, _, order = rows.get(epoch, by_index=True)
            seen.add(order is None)
            want = d.x_train[permutation(d.x_train.shape[0], 5, epoch, True, "cpu")]
            if rows.pending is not None:
                rows.pending[1].result()  # the next epoch's copy is made: this one's rows are untouched
            assert torch.equal(_epoch_rows(y, order), want) and torch.equal(_epoch_rows(x_in, order), want)
            if order is None:
                buffers.add(y.data_ptr())
    finally:
        rows.close()
    assert seen == {True, False}  # the first epoch went by index, the later ones by copies
    assert len(buffers) == 2  # five copies made into two buffers, in turn


def test_a_run_trains_to_the_same_bits_whether_its_epochs_go_by_index_or_by_copies(monkeypatch):
    cfg = _cfg(**{"model.activity_l1": 0.01})
    d = _data([cfg])
    mixed = _stacked([cfg])
    _fit(mixed, d, cfg)  # the first epoch by index, the others copies when ready
    real_get = _EpochRows.get
    monkeypatch.setattr(_EpochRows, "get", lambda self, epoch, by_index=False: real_get(self, epoch, False))
    copied = _stacked([cfg])
    _fit(copied, d, cfg)  # every epoch a copy, waited for
    for a, b in zip(mixed.export_models()[0].state_dict().values(), copied.export_models()[0].state_dict().values()):
        assert torch.equal(a, b)
    plain = _plain(cfg)
    monkeypatch.setattr(_EpochRows, "get", lambda self, epoch, by_index=False: real_get(self, epoch, True) if epoch == 0
                        else real_get(self, epoch, False))
    _fit(plain, d, cfg)  # the plain stepper, its first epoch by index
    for a, b in zip(plain.model.state_dict().values(), copied.export_models()[0].state_dict().values()):
        assert torch.equal(a, b)


def test_fused_adam_matches_keras_rule():
    torch.manual_seed(0)
    p = torch.randn(1000)
    g = torch.randn(1000)
    ref, fast = p.clone(), p.clone()
    m1, v1, m2, v2 = (torch.zeros(1000) for _ in range(4))
    s1, s2 = torch.zeros(()), torch.zeros(())
    for t in range(1, 6):
        keras_adam_step_(ref, g, m1, v1, s1, t, 1e-3, 0.9, 0.999, 1e-7, fused=False)
        keras_adam_step_(fast, g, m2, v2, s2, t, 1e-3, 0.9, 0.999, 1e-7, fused=True)
    assert torch.allclose(ref, fast, rtol=1e-5, atol=1e-7)


def test_keras_adam_first_step_by_hand():
    # t = 1: m = 0.1 g, v = 0.001 g², lr_t = lr·sqrt(0.001)/0.1 → p −= lr_t · m / (sqrt(v) + ε)
    p = torch.tensor([1.0], requires_grad=True)
    opt = KerasAdam([p], lr=0.1, eps=1e-7)
    p.grad = torch.tensor([2.0])
    opt.step()
    lr_t = 0.1 * math.sqrt(1 - 0.999) / (1 - 0.9)
    expected = 1.0 - lr_t * 0.2 / (math.sqrt(0.004) + 1e-7)
    assert p.item() == pytest.approx(expected, rel=1e-6)


def test_same_seed_same_history_and_different_seed_differs():
    a, b = _cfg(), _cfg()
    h1 = _fit(_stacked([a]), _data([a]), a).histories[0]
    h2 = _fit(_stacked([b]), _data([b]), b).histories[0]
    assert h1.loss == h2.loss and h1.val_loss == h2.val_loss
    c = _cfg(**{"train.seed": 7})
    assert _fit(_stacked([c]), _data([c]), c).histories[0].loss != h1.loss


def test_permutation_depends_only_on_seed_and_epoch():
    assert torch.equal(permutation(100, 1, 3, True, "cpu"), permutation(100, 1, 3, True, "cpu"))
    assert not torch.equal(permutation(100, 1, 3, True, "cpu"), permutation(100, 1, 4, True, "cpu"))
    assert torch.equal(permutation(5, 1, 0, False, "cpu"), torch.arange(5))


def test_noise_drawn_once_or_per_epoch():
    x = torch.full((4, 6), 0.5)
    once = TrainData(x, x, noise_factor=0.3, noise_mode="once", seed=1)
    assert torch.equal(once.train_inputs(0), once.train_inputs(5))
    per = TrainData(x, x, noise_factor=0.3, noise_mode="per_epoch", seed=1)
    assert not torch.equal(per.train_inputs(0), per.train_inputs(1))
    noisy = per.train_inputs(0)
    assert noisy.min() >= 0 and noisy.max() <= 1 and not torch.equal(noisy, x)
    assert torch.equal(once.val_inputs(), x)  # the seed validates on clean inputs
    assert not torch.equal(TrainData(x, x, noise_factor=0.3, validate_on="noisy").val_inputs(), x)


def test_nan_loss_stops_with_epoch_and_batch():
    cfg = _cfg(**{"train.shuffle": False})
    (d,) = _data([cfg])
    x = d.x_train.clone()
    x[200, 5] = float("nan")  # row 200 is in batch 4 (rows 192–255) of every epoch without shuffling
    bad = TrainData(x, d.x_val, seed=cfg.train.seed)
    with pytest.raises(TrainingError, match=r"became nan at epoch 1, batch 4;.*learning rate"):
        _fit(_stacked([cfg]), [bad], cfg)


def test_denormals_are_flushed_only_while_training():
    from aelab.engine.loop import flush_denormals

    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert float(tiny * 1.0) != 0.0
    with flush_denormals(torch.device("cpu")):
        assert float(tiny * 1.0) == 0.0  # as TensorFlow does on CPU
    assert float(tiny * 1.0) != 0.0  # the caller's own arithmetic is left alone


@pytest.mark.parametrize("variant", [VARIANTS[1], VARIANTS[0], {"model.activity_l1": 0.01}],
                         ids=["relu-output", "sigmoid-output", "sparse"])
def test_c_kernels_train_like_pytorch_kernels(monkeypatch, variant):
    """With and without the C library (as without a compiler): every gradient and Adam are the
    same float operations in the same order, so training gives the same bits; only the reported
    loss values (sums in another order) differ, by rounding."""
    from aelab import kernels as ckernels

    if ckernels.load() is None:
        pytest.skip(ckernels.status())
    cfg = _cfg(**variant)
    d = _data([cfg])
    with_c = _stacked([cfg])
    h_c = _fit(with_c, d, cfg).histories[0]
    monkeypatch.setattr(ckernels, "_lib", None)
    without = _stacked([cfg])
    h = _fit(without, d, cfg).histories[0]
    assert with_c._c and not without._c
    assert torch.equal(with_c.flat, without.flat)
    for a, b in zip(h_c.loss + h_c.val_loss, h.loss + h.val_loss):
        assert math.isclose(a, b, rel_tol=1e-5)


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[1]], ids=["logits", "clipped"])
def test_a_fresh_stepper_evaluates_before_any_step(variant):
    """Evaluation needs no training step first (a resumed or evaluate-only stepper)."""
    cfg = _cfg(**variant)
    (d,) = _data([cfg])
    fast, plain = _stacked([cfg]), _plain(cfg)
    (lf,), _, _ = fast.evaluate([d.x_val], d.x_val)
    lp, _, _ = plain.evaluate([d.x_val], d.x_val)
    assert math.isclose(float(lf), float(lp), rel_tol=1e-5)
