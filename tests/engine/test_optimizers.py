"""The optimizers of train.optimizer, each against its framework, step for step; their checkpoints.

PyTorch's own ``torch.optim`` classes are the reference for the PyTorch optimizers; the Keras ones are
checked against Keras 3's update rules written out here by hand (from keras/src/optimizers/*.py and the
keras.io docs), in float64, from the same start — so "equal" means equal to float32 rounding.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

import aelab
from aelab.config import OPTIMIZERS, RunConfig, TrainConfig
from aelab.engine.loop import Hooks, LoopState, fit, History
from aelab.engine.optimizers import build_optimizer, set_lr, state_keys
from aelab.engine.steppers import PlainStepper, can_stack
from aelab.errors import ConfigError
from aelab.runs import DataCache, EpochEnded, Interrupted, Stop, spec_of

from conftest import StopAfterNextStep

STEPS = 25


# -- a small problem, two copies: float32 (aelab) and float64 (the hand-written reference) ---------------
def _problem():
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    xs = [torch.randn(16, 6, generator=g) for _ in range(STEPS)]
    ys = [torch.randn(16, 3, generator=g) for _ in range(STEPS)]
    return net, xs, ys


def _grads(net, x, y):
    net.zero_grad(set_to_none=True)
    loss = ((net(x.to(next(net.parameters()).dtype)) - y.to(next(net.parameters()).dtype)) ** 2).mean()
    loss.backward()
    return [p.grad for p in net.parameters()]


@torch.no_grad()
def _maxdiff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


def _train_cfg(name: str, lr: float, **opt) -> TrainConfig:
    return TrainConfig(lr=lr, optimizer={"name": name, **opt}) if name != "keras_adam" else TrainConfig(lr=lr, **opt)


# Keras 3's update_step of each optimizer, written out from its documentation and source (float64 state)
def _keras_reference(name: str, lr: float, cfg: TrainConfig):
    o = cfg.optimizer

    def adam(p, g, s, t):
        b1, b2, eps = cfg.beta1, cfg.beta2, cfg.eps
        s.setdefault("m", torch.zeros_like(p))
        s.setdefault("v", torch.zeros_like(p))
        a = lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
        s["m"] += (g - s["m"]) * (1 - b1)
        s["v"] += (g * g - s["v"]) * (1 - b2)
        p -= a * s["m"] / (s["v"].sqrt() + eps)

    def adadelta(p, g, s, t):
        s.setdefault("a", torch.zeros_like(p))
        s.setdefault("d", torch.zeros_like(p))
        s["a"] = o.rho * s["a"] + (1 - o.rho) * g * g
        delta = -(s["d"] + o.eps).sqrt() * g / (s["a"] + o.eps).sqrt()
        s["d"] = o.rho * s["d"] + (1 - o.rho) * delta * delta
        p += lr * delta

    def sgd(p, g, s, t):
        if o.momentum == 0:
            p -= lr * g
            return
        s.setdefault("m", torch.zeros_like(p))
        s["m"] = o.momentum * s["m"] - lr * g
        p += (o.momentum * s["m"] - lr * g) if o.nesterov else s["m"]

    def rmsprop(p, g, s, t):
        s.setdefault("v", torch.zeros_like(p))
        s["v"] = o.rho * s["v"] + (1 - o.rho) * g * g
        if o.centered:
            s.setdefault("ag", torch.zeros_like(p))
            s["ag"] = o.rho * s["ag"] + (1 - o.rho) * g
            den = s["v"] - s["ag"] ** 2 + o.eps
        else:
            den = s["v"] + o.eps
        inc = lr * g / den.sqrt()
        if o.momentum > 0:
            s.setdefault("b", torch.zeros_like(p))
            s["b"] = o.momentum * s["b"] + inc
            p -= s["b"]
        else:
            p -= inc

    return {"keras_adam": adam, "keras_adadelta": adadelta, "keras_sgd": sgd, "keras_rmsprop": rmsprop}[name]


# the defaults, and a large ε in each rule that has one: where ε goes (inside or outside a root, on the
# corrected or the raw moment) then moves the steps far beyond rounding
KERAS_CASES = [
    ("keras_adam", 1e-2, {}),
    ("keras_adam", 1e-2, {"eps": 0.1}),
    ("keras_adadelta", 1.0, {"eps": 0.01}),
    ("keras_rmsprop", 1e-2, {"eps": 0.1}),
    ("keras_adadelta", 1.0, {}),
    ("keras_adadelta", 1.0, {"eps": 1e-6}),
    ("keras_sgd", 0.05, {}),
    ("keras_sgd", 0.05, {"momentum": 0.9}),
    ("keras_sgd", 0.05, {"momentum": 0.9, "nesterov": True}),
    ("keras_rmsprop", 1e-3, {}),
    ("keras_rmsprop", 1e-3, {"momentum": 0.5, "centered": True}),
]


def run_keras_case(name, lr, opt):
    """Max |aelab − Keras formula| over the parameters after each of STEPS steps, relative to 1 + |p|."""
    cfg = _train_cfg(name, lr, **opt)
    net, xs, ys = _problem()
    ref = copy.deepcopy(net).double()
    ours = build_optimizer(net.parameters(), cfg)
    update = _keras_reference(name, lr, cfg)
    states = [dict() for _ in ref.parameters()]
    worst = 0.0
    for t, (x, y) in enumerate(zip(xs, ys), start=1):
        _grads(net, x, y)
        ours.step()
        gs = _grads(ref, x, y)
        with torch.no_grad():
            for p, g, s in zip(ref.parameters(), gs, states):
                update(p, g, s, t)
        with torch.no_grad():
            for a, b in zip(net.parameters(), ref.parameters()):
                worst = max(worst, float(((a.double() - b).abs() / (1 + b.abs())).max()))
    return worst


@pytest.mark.parametrize("name, lr, opt", KERAS_CASES)
def test_keras_optimizers_follow_keras_formulas_step_for_step(name, lr, opt):
    assert run_keras_case(name, lr, opt) < 2e-6  # float32 against float64: rounding only


TORCH_CASES = [
    ("torch_adam", 1e-2, {}, lambda ps, lr: torch.optim.Adam(ps, lr=lr)),
    ("torch_adadelta", 1.0, {}, lambda ps, lr: torch.optim.Adadelta(ps, lr=lr)),
    ("torch_sgd", 0.05, {"momentum": 0.9, "dampening": 0.1}, lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9, dampening=0.1)),
    ("torch_sgd", 0.05, {"momentum": 0.9, "nesterov": True}, lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True)),
    ("torch_rmsprop", 1e-3, {}, lambda ps, lr: torch.optim.RMSprop(ps, lr=lr)),
    ("torch_rmsprop", 1e-3, {"momentum": 0.5, "centered": True},
     lambda ps, lr: torch.optim.RMSprop(ps, lr=lr, momentum=0.5, centered=True)),
]


def run_torch_case(name, lr, opt, make):
    """Max |aelab − torch.optim| after each of STEPS steps (the reference built with torch's own defaults)."""
    net, xs, ys = _problem()
    ref = copy.deepcopy(net)
    ours = build_optimizer(net.parameters(), _train_cfg(name, lr, **opt))
    theirs = make(list(ref.parameters()), lr)
    worst = 0.0
    for x, y in zip(xs, ys):
        _grads(net, x, y)
        ours.step()
        _grads(ref, x, y)
        theirs.step()
        worst = max(worst, _maxdiff(net, ref))
    return worst


@pytest.mark.parametrize("name, lr, opt, make", TORCH_CASES)
def test_torch_optimizers_equal_torch_optim_with_its_defaults(name, lr, opt, make):
    assert run_torch_case(name, lr, opt, make) == 0.0


def test_the_two_adams_differ_where_epsilon_goes_and_keras_adadelta_is_torch_adadelta_rule():
    # torch's ε is added to the bias-corrected sqrt(v̂): with ε large the two Adams part at once
    a = run_torch_case("torch_adam", 1e-2, {"eps": 1e-2}, lambda ps, lr: torch.optim.Adam(ps, lr=lr, eps=1e-2))
    assert a == 0.0
    net, xs, ys = _problem()
    keras_net = copy.deepcopy(net)
    tk = build_optimizer(net.parameters(), _train_cfg("torch_adam", 1e-2, eps=1e-2))
    kk = build_optimizer(keras_net.parameters(), TrainConfig(lr=1e-2, eps=1e-2))
    _grads(net, xs[0], ys[0])
    _grads(keras_net, xs[0], ys[0])
    tk.step()
    kk.step()
    assert _maxdiff(net, keras_net) > 1e-4
    # Keras' Adadelta and torch's are one rule: with the same ρ and ε they agree to rounding
    assert run_torch_case("keras_adadelta", 1.0, {"rho": 0.9, "eps": 1e-6},
                          lambda ps, lr: torch.optim.Adadelta(ps, lr=lr, rho=0.9, eps=1e-6)) < 1e-6


def test_keras_and_torch_sgd_agree_at_a_constant_rate_and_part_when_it_changes():
    """Keras' velocity holds lr·g, torch's buffer g: the same steps until the rate changes."""
    nets, opts = [], []
    for name in ("keras_sgd", "torch_sgd"):
        net, xs, ys = _problem()
        nets.append(net)
        opts.append(build_optimizer(net.parameters(), _train_cfg(name, 0.05, momentum=0.9)))
    diffs = []
    for t, (x, y) in enumerate(zip(xs, ys)):
        if t == 10:
            for o in opts:
                set_lr(o, 0.005)
        for net, o in zip(nets, opts):
            _grads(net, x, y)
            o.step()
        diffs.append(_maxdiff(*nets))
    assert max(diffs[:10]) < 1e-6 and diffs[-1] > 1e-3


def test_defaults_are_each_frameworks():
    torch_defaults = {
        "torch_adam": torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults,
        "torch_rmsprop": torch.optim.RMSprop([torch.zeros(1, requires_grad=True)]).defaults,
        "torch_adadelta": torch.optim.Adadelta([torch.zeros(1, requires_grad=True)]).defaults,
        "torch_sgd": torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).defaults,
    }
    t = lambda name: _train_cfg(name, 1e-3).optimizer  # noqa: E731
    td = lambda name, *keys: tuple(torch_defaults[name][k] for k in keys)  # noqa: E731
    assert (t("torch_adam").beta1, t("torch_adam").beta2) == torch_defaults["torch_adam"]["betas"]
    assert t("torch_adam").eps == torch_defaults["torch_adam"]["eps"] == 1e-8
    assert (t("torch_rmsprop").alpha, t("torch_rmsprop").eps) == td("torch_rmsprop", "alpha", "eps")
    assert (t("torch_adadelta").rho, t("torch_adadelta").eps) == td("torch_adadelta", "rho", "eps")
    assert (t("torch_sgd").momentum, t("torch_sgd").dampening) == td("torch_sgd", "momentum", "dampening")
    # Keras 3 (keras.io/api/optimizers): Adam ε 1e-7, Adadelta ρ 0.95 ε 1e-7, RMSprop ρ 0.9 ε 1e-7, SGD μ 0
    assert TrainConfig().eps == 1e-7 and (t("keras_adadelta").rho, t("keras_adadelta").eps) == (0.95, 1e-7)
    assert (t("keras_rmsprop").rho, t("keras_rmsprop").eps) == (0.9, 1e-7) and t("keras_sgd").momentum == 0.0
    assert set(OPTIMIZERS) == {"keras_adam", "torch_adam", "keras_adadelta", "torch_adadelta", "keras_sgd", "torch_sgd",
                               "keras_rmsprop", "torch_rmsprop"}


# -- the config -----------------------------------------------------------------------------------------
def test_default_optimizer_leaves_every_hash_as_it_was():
    assert RunConfig().hash() == "31500aa76355857f"  # the hash RunConfig() always had (tests/test_config.py)
    explicit = RunConfig().with_overrides({"train.optimizer": "keras_adam"})
    assert explicit == RunConfig() and explicit.hash() == RunConfig().hash()
    other = RunConfig().with_overrides({"train.optimizer": "torch_adam"})
    assert other.hash() != RunConfig().hash()
    assert RunConfig.from_dict(other.to_dict()) == other and RunConfig.from_dict(other.to_dict()).hash() == other.hash()


@pytest.mark.parametrize("overrides, message", [
    ({"train.optimizer": "adamw"}, "train.optimizer: unknown optimizer 'adamw'; allowed: keras_adam, torch_adam"),
    ({"train.optimizer": "torch_adam", "train.eps": 1e-8}, "train.eps is Keras Adam's (the default optimizer) but "
     "train.optimizer is torch_adam; set train.optimizer.eps instead"),
    ({"train.optimizer": "keras_sgd", "train.beta1": 0.5}, "keras_sgd has no beta1"),
    ({"train.optimizer.name": "keras_sgd", "train.optimizer.rho": 0.9}, "train.optimizer.rho: unknown key"),
    ({"train.optimizer.name": "torch_sgd", "train.optimizer.nesterov": True}, "nesterov needs a momentum above 0"),
    ({"train.optimizer.name": "keras_rmsprop", "train.optimizer.eps": 0}, "train.optimizer.eps: got 0.0"),
])
def test_bad_optimizer_settings_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=None) as err:
        RunConfig().with_overrides(overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_only_keras_adam_takes_the_fast_path():
    cfg = RunConfig()
    assert can_stack(spec_of(cfg))
    for name in OPTIMIZERS:
        spec = spec_of(cfg)
        spec.optimizer = cfg.with_overrides({"train.optimizer": name}).train.optimizer
        assert can_stack(spec) == (name == "keras_adam"), name


# -- checkpoints: every optimizer's state resumes bit for bit --------------------------------------------
def _digits(over):
    base = {"data.dataset": "synthetic", "data.limit": 640, "data.test_limit": 128, "model.encoder": ["16:relu"],
            "train.epochs": 3, "train.batch_size": 64}
    return aelab.fit_config(RunConfig().with_overrides({**base, **over}))


RESUME_CASES = {
    "keras_adam": {},
    "torch_adam": {"train.optimizer": "torch_adam"},
    "keras_adadelta": {"train.optimizer": "keras_adadelta", "train.lr": 1.0},
    "torch_adadelta": {"train.optimizer": "torch_adadelta", "train.lr": 1.0},
    "keras_sgd": {"train.optimizer.name": "keras_sgd", "train.optimizer.momentum": 0.9, "train.lr": 0.05},
    "torch_sgd": {"train.optimizer.name": "torch_sgd", "train.optimizer.momentum": 0.9,
                  "train.optimizer.dampening": 0.5, "train.lr": 0.05},
    "keras_rmsprop": {"train.optimizer.name": "keras_rmsprop", "train.optimizer.momentum": 0.5,
                      "train.optimizer.centered": True},
    "torch_rmsprop": {"train.optimizer.name": "torch_rmsprop", "train.optimizer.momentum": 0.5,
                      "train.optimizer.centered": True},
}


def _stepper(cfg):
    t = cfg.train
    return PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu", optimizer=t.optimizer)


def _loop(cfg, stepper, datas, **kw):
    t = cfg.train
    return fit(stepper, datas, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed, shuffle=t.shuffle,
               progress=False, **kw)


@pytest.mark.parametrize("name", list(RESUME_CASES))
def test_each_optimizer_resumes_bit_for_bit_from_the_middle_of_an_epoch(name):
    cfg = _digits(RESUME_CASES[name])
    datas = [DataCache().train_data(cfg, torch.device("cpu"))]
    whole = _stepper(cfg)
    h_whole = _loop(cfg, whole, datas).histories[0]
    # interrupted after the first batch of epoch 2: the checkpoint is state() and the loop's state
    first, saved = _stepper(cfg), {}
    flag = StopAfterNextStep()

    def interrupt(st):
        saved["tensors"] = first.state()
        saved["loop"] = copy.deepcopy(st)

    with pytest.raises(Interrupted):
        _loop(cfg, first, datas, stop=flag, hooks=Hooks(on_epoch_end=lambda st: flag.arm(), on_interrupt=interrupt))
    assert saved["loop"].epoch == 1 and saved["loop"].batch == 1
    keys, t_key = state_keys(cfg.train, dict(first.model.named_parameters()))
    assert set(keys) | {t_key} == {k for k in saved["tensors"][0] if k.startswith(("adam.", "opt."))}
    again = _stepper(cfg)
    again.load_state(saved["tensors"])
    h_again = _loop(cfg, again, datas, state=saved["loop"]).histories[0]
    assert h_again.loss == h_whole.loss and h_again.val_loss == h_whole.val_loss
    for (k, a), b in zip(whole.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert h_whole.val_loss[-1] < h_whole.val_loss[0]  # and it trained


def test_old_keras_adam_checkpoint_names_still_load():
    cfg = _digits({})
    st = _stepper(cfg)
    d = st.state()[0]
    assert {k for k in d if k.startswith(("adam.", "opt."))} == {
        *(f"adam.{s}.{n}" for n, _ in st.model.named_parameters() for s in ("m", "v")), "adam.t"}


@pytest.mark.parametrize("name", ["torch_adam", "keras_adadelta"])
def test_resume_bitwise_through_train(name, tmp_path):
    """A real run stopped after epoch 1 and trained again resumes to the uninterrupted run's bits."""
    cfg = _digits({**RESUME_CASES[name], "train.epochs": 2})
    whole = aelab.train(cfg, tmp_path / "whole", figures=False)
    stop = Stop()

    def on_event(ev):
        if isinstance(ev, EpochEnded) and ev.epoch == 1:
            stop.set()

    with pytest.raises(Interrupted):
        aelab.train(cfg, tmp_path / "cut", on_event=on_event, stop=stop, figures=False)
    started = []
    again = aelab.train(cfg, tmp_path / "cut", figures=False,
                        on_event=lambda ev: started.append(getattr(ev, "start_epoch", None)))
    assert 1 in started  # it resumed (from epoch 1), it did not start again
    h1 = json.loads((tmp_path / "whole" / "history.json").read_text())
    h2 = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert h1["loss"] == h2["loss"] and h1["val_loss"] == h2["val_loss"]
    for (k, a), b in zip(whole.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_history_records_the_rate():
    cfg = _digits({"train.optimizer": "torch_adam", "train.epochs": 2})
    datas = [DataCache().train_data(cfg, torch.device("cpu"))]
    from aelab.engine.schedules import Controls
    h = _loop(cfg, _stepper(cfg), datas, controls=Controls(cfg.train)).histories[0]
    assert h.lr == [1e-3, 1e-3] and "stopped_epoch" not in h.to_dict()
    assert History.from_dict(h.to_dict()) == h
    assert isinstance(LoopState().histories, list)


if __name__ == "__main__":  # the closing note's figures: python tests/engine/test_optimizers.py
    for name, lr, opt in KERAS_CASES:
        print(f"{name:15s} {str(opt):45s} max |aelab − Keras formula (float64)| / (1 + |p|) over {STEPS} steps: "
              f"{run_keras_case(name, lr, opt):.2e}")
    for name, lr, opt, make in TORCH_CASES:
        print(f"{name:15s} {str(opt):45s} max |aelab − torch.optim| over {STEPS} steps: {run_torch_case(name, lr, opt, make):.2e}")
