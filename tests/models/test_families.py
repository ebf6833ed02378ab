"""The contract every registered model family meets, run over the registry × a few architectures
(the scikit-learn ``parametrize_with_checks`` idea): a family that fails here cannot land.

Each case builds from a config and from TOML; gives flat outputs of the right shapes and finite,
named terms; one training step changes the weights while an evaluation changes nothing and
repeats exactly; its weights round-trip through safetensors; an interrupted run resumes to the
same weights and history, bit for bit; a finished run directory has its metrics and figure; and
the fast path takes a config only when it implements all of it; the family object documents every
term and diagnostic it produces. A family defined here, in test code alone (``tiny_l2``), is
registered for this module and meets the same contract.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Literal

import pytest
import torch
from pydantic import Field
from safetensors.torch import load, save

from aelab.config import RunConfig, config_hash
from aelab.engine.loop import Interrupted
from aelab.engine.steppers import PlainStepper, StackedDenseStepper, can_stack
from aelab.errors import ConfigError
from aelab.models import FAMILIES, Family, build_model, family_of, register_family
from aelab.models.ae import LayerAutoencoder
from aelab.models.base import ACTIVATION_MODULES, ModelConfig
from aelab.runs import spec_of, train_runs

from conftest import StopAfter, same_run

CONV_ENC = [{"kind": "conv2d", "filters": 4, "kernel": 3, "padding": "same", "activation": "relu"},
            {"kind": "max-pool", "pool": 2, "padding": "same"},
            {"kind": "conv2d", "filters": 2, "kernel": 3, "stride": 2, "padding": "same", "activation": "relu"}]
CONV_DEC = [{"kind": "up-sample", "size": 2},
            {"kind": "conv2d", "filters": 4, "kernel": 3, "padding": "same", "activation": "relu"},
            {"kind": "up-sample", "size": 2},
            {"kind": "conv2d", "filters": 1, "kernel": 3, "padding": "same", "activation": "sigmoid"}]
VAE_CONV_ENC = [{"kind": "conv2d", "filters": 4, "kernel": 3, "stride": 2, "padding": "same", "activation": "relu"},
                {"kind": "flatten"}, "16:relu"]
VAE_CONV_DEC = ["196:relu", {"kind": "reshape", "shape": [7, 7, 4]},
                {"kind": "conv2d-transpose", "filters": 4, "kernel": 3, "stride": 2, "padding": "same",
                 "activation": "relu"},
                {"kind": "conv2d-transpose", "filters": 1, "kernel": 3, "stride": 2, "padding": "same",
                 "activation": "sigmoid"}]
VQ_CONV_ENC = [{"kind": "conv2d", "filters": 4, "kernel": 3, "stride": 2, "padding": "same", "activation": "relu"},
               {"kind": "conv2d", "filters": 2, "kernel": 3, "stride": 2, "padding": "same", "activation": "linear"}]
VQ_CONV_DEC = [{"kind": "conv2d-transpose", "filters": 4, "kernel": 3, "stride": 2, "padding": "same",
                "activation": "relu"},
               {"kind": "conv2d-transpose", "filters": 1, "kernel": 3, "stride": 2, "padding": "same",
                "activation": "sigmoid"}]

CASES = {
    "ae": [{}, {"encoder": ["64:relu", "16:tanh"], "decoder": ["64:relu", "784:relu"], "activity_l1": 1e-3},
           {"encoder": CONV_ENC, "decoder": CONV_DEC}],
    "vae": [{"encoder": ["64:relu"], "decoder": ["64:relu", "784:sigmoid"], "latent": 4},
            {"encoder": VAE_CONV_ENC, "decoder": VAE_CONV_DEC, "latent": 2, "beta": 4.0, "reduction": "sum"}],
    "contractive": [{"encoder": ["16:sigmoid"], "lam": 0.1},
                    {"encoder": ["32:relu", "8:tanh"], "decoder": ["32:relu", "784:sigmoid"], "lam": 0.1}],
    "kl_sparse": [{"encoder": ["16:sigmoid"], "rho": 0.1, "beta": 1.0}],
    "tied": [{"encoder": ["64:relu", "16:relu"], "decoder": ["64:relu", "784:sigmoid"]}],
    "vqvae": [{"encoder": ["64:relu", "16:linear"], "decoder": ["64:relu", "784:sigmoid"], "codebook_size": 16,
               "embedding_dim": 4},
              {"encoder": ["64:relu", "16:linear"], "decoder": ["64:relu", "784:sigmoid"], "codebook_size": 16,
               "embedding_dim": 4, "ema": True, "decay": 0.9},  # the EMA update: not a gradient step
              {"encoder": VQ_CONV_ENC, "decoder": VQ_CONV_DEC, "codebook_size": 8, "embedding_dim": 2}],
    # the layers are the VAE's (its cases cover convolutions); the sum_mean reduction: test_families2.py
    "iwae": [{"encoder": ["64:relu"], "decoder": ["64:relu", "784:sigmoid"], "latent": 4, "samples": 5,
              "reduction": "sum"}],
    "tcvae": [{"encoder": ["64:relu"], "decoder": ["64:relu", "784:sigmoid"], "latent": 4, "beta": 4.0,
               "dataset_size": 256}],
    # conditioned on the label: one-hot beside a dense input, or as label channels beside a conv one
    "cvae": [{"encoder": ["64:relu"], "decoder": ["64:relu", "784:sigmoid"], "latent": 4},
             {"encoder": VAE_CONV_ENC, "decoder": VAE_CONV_DEC, "latent": 2, "classes": 12, "reduction": "sum"}],
}
DATA = {"dataset": "synthetic", "limit": 256, "test_limit": 64}


# -- a family from test code alone: an L2 penalty on the code ----------------------------------------------
class TinyConfig(ModelConfig):
    """An autoencoder with ``lam``·mean‖h‖² on its code."""

    family: Literal["tiny_l2"] = "tiny_l2"
    encoder: tuple[Any, ...] = ("8:tanh",)
    lam: float = Field(default=0.01, ge=0.0)

    def term_names(self) -> tuple[str, ...]:
        return ("code_l2",)


class TinyAutoencoder(LayerAutoencoder):
    def extra_terms(self, x: torch.Tensor, code: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"code_l2": self.config.lam * code.pow(2).sum(dim=1).mean()}


@torch.no_grad()
def tiny_diagnose(model, x, cfg, loss="bce") -> dict[str, Any]:
    return {"code_rms": float(model.encode(x).double().pow(2).mean().sqrt())}


def tiny_explain(b, v, who="the variant", other="the baseline"):
    vr = v.get("metrics", {}).get("family", {}).get("code_rms")
    return f"{who}'s code is small (rms {vr:.3g})" if isinstance(vr, float) and vr < 0.01 else None


TINY = Family(name="tiny_l2", Config=TinyConfig, build=lambda cfg, generator=None: TinyAutoencoder(cfg, generator),
              terms={"code_l2": "λ·mean‖h‖², the squared L2 norm of the code per sample weighted by λ."},
              diagnostics={"code_rms": "The root mean square of the code values on the test split."},
              diagnose=tiny_diagnose, explain=tiny_explain, label="tiny L2 AE")
CASES["tiny_l2"] = [{"lam": 0.1}, {"encoder": ["32:relu", "4:linear"], "decoder": ["32:relu", "784:sigmoid"]}]


@pytest.fixture(autouse=True, scope="module")
def tiny_family():
    """``tiny_l2`` is registered while this module's tests run, then removed (no other module sees it)."""
    register_family(TINY)
    yield TINY
    del FAMILIES[TINY.name]


def labels_kw(family: str, n: int, cfg=None) -> dict:
    """``{"labels": …}`` (n classes, cycling) for a conditional family's calls, ``{}`` for any other."""
    if not FAMILIES[family].conditional:
        return {}
    return {"labels": torch.arange(n) % int(getattr(cfg, "classes", 10))}


def run_cfg(family: str, model: dict, **train) -> RunConfig:
    return RunConfig.from_dict({"name": f"{family}", "model": {"family": family, **model}, "data": DATA,
                                "train": {"epochs": 2, "batch_size": 64, **train}})


def _cases():
    for fam, models in CASES.items():
        for i, m in enumerate(models):
            yield pytest.param(fam, m, id=f"{fam}-{i}")


def test_every_family_has_contract_cases():
    assert set(CASES) == set(FAMILIES)


def test_a_family_from_test_code_is_registered_and_a_clash_is_refused():
    assert FAMILIES["tiny_l2"] is TINY and family_of("tiny_l2") is TINY
    assert register_family(TINY) is TINY  # the same object again changes nothing
    with pytest.raises(ConfigError, match="'ae' is registered already") as err:
        register_family(dataclasses.replace(FAMILIES["ae"], label="another ae"))
    assert "\n" not in str(err.value)
    assert family_of("ae").label == "autoencoder"
    with pytest.raises(ConfigError, match="unknown model family 'nope'"):
        family_of("nope")
    with pytest.raises(ValueError, match="family field must default to 'other'"):
        Family(name="other", Config=TinyConfig, build=TINY.build)
    cfg = run_cfg("tiny_l2", {"lam": 0.5})  # a run config takes it like a built-in family
    assert type(cfg.model) is TinyConfig and cfg.model.lam == 0.5 and family_of(cfg.model) is TINY


@pytest.mark.parametrize("family, model", list(_cases()))
def test_the_family_object_documents_what_it_produces(family, model):
    fam = FAMILIES[family]
    cfg = run_cfg(family, model).model
    assert fam.name == family and isinstance(cfg, fam.Config) and fam.label
    assert set(cfg.term_names()) <= set(fam.terms), "every loss term has a doc"
    assert all(fam.terms[t] and fam.term_label(t) for t in cfg.term_names())
    m = build_model(cfg, torch.Generator().manual_seed(0))
    assert bool(getattr(m, "stochastic", False)) == fam.stochastic
    assert fam.code in ("deterministic", "mean", "discrete")
    diag = fam.diagnose(m, torch.rand(16, cfg.input_dim), cfg, "bce", **labels_kw(family, 16, cfg))
    assert set(diag) <= set(fam.diagnostics), "every diagnostic has a doc"
    assert all(fam.diagnostics[k] and fam.diagnostic_label(k) for k in diag)
    assert fam.supports_fast(cfg) == (cfg.fast_plan() is not None)
    if fam.explain is not None:
        run = {"config": {"model": {"family": family}}, "metrics": {"family": {"name": family, **diag}}}
        said = fam.explain(run, run)
        assert said is None or (isinstance(said, str) and said and not said.endswith("."))


@pytest.mark.parametrize("family, model", list(_cases()))
def test_builds_from_config_and_toml(tmp_path, family, model):
    cfg = run_cfg(family, model)
    toml = tmp_path / "run.toml"
    lines = ["[model]", f'family = "{family}"']
    for k, v in model.items():
        lines.append(f"{k} = {_toml(v)}")
    lines += ["[data]", 'dataset = "synthetic"', "limit = 256", "test_limit = 64", "[train]", "epochs = 2"]
    toml.write_text("\n".join(lines) + "\n")
    again = RunConfig.from_toml(toml).model_copy(update={"name": family})
    assert config_hash(again) == config_hash(cfg)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # JSON round trip


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


@pytest.mark.parametrize("family, model", list(_cases()))
def test_shapes_terms_and_split_encoder_decoder(family, model):
    cfg = run_cfg(family, model).model
    m = build_model(cfg, torch.Generator().manual_seed(0))
    x = torch.rand(5, cfg.input_dim)
    kw = labels_kw(family, 5, cfg)  # a conditional family's labels; its halves take them too
    out = m(x, rng=torch.Generator().manual_seed(1), **kw)
    assert out.recon.shape == (5, cfg.input_dim)
    assert out.code.shape == (5, cfg.code_dim)
    assert set(out.terms) == set(cfg.term_names())
    assert all(t.shape == () and math.isfinite(t.item()) for t in out.terms.values())
    assert math.isfinite(m.reconstruction(out, x, "bce").item())
    m.eval()
    with torch.no_grad():
        det = m(x, **kw)  # no generator: deterministic (a VAE decodes μ)
        assert torch.allclose(m.decoder(m.encoder(x, *kw.values()), *kw.values()), det.recon, atol=1e-6)
        assert torch.equal(m.encode(x, **kw), det.code)
    if out.logits is not None:
        assert torch.allclose(torch.sigmoid(out.logits), out.recon, atol=1e-6)


@pytest.mark.parametrize("family, model", list(_cases()))
def test_a_step_changes_the_weights_and_evaluation_changes_nothing(family, model):
    cfg = run_cfg(family, model)
    stepper = PlainStepper(spec_of(cfg), 1e-3, 0.9, 0.999, 1e-7, "cpu")
    x = torch.rand(64, cfg.model.input_dim)
    kw = labels_kw(family, 64, cfg.model)
    before = {k: v.clone() for k, v in stepper.model.state_dict().items()}
    ev1 = stepper.evaluate([x], x, **kw)
    ev2 = stepper.evaluate([x], x, **kw)
    assert all(torch.equal(a, b) for a, b in zip(ev1, ev2))  # deterministic, sampling included
    assert all(torch.equal(before[k], v) for k, v in stepper.model.state_dict().items())
    T = len(stepper.term_names)
    loss, pen, terms = torch.zeros(1), torch.zeros(1), torch.zeros(1, T)
    stepper.train_step([x], x, slice(0, 64), loss, pen, terms if T else None,
                       torch.Generator().manual_seed(0) if stepper.needs_rng else None, **kw)
    assert math.isfinite(float(loss)) and torch.isfinite(terms).all()
    assert float(pen) == pytest.approx(float(terms.sum()), rel=1e-5, abs=1e-7)
    assert any(not torch.equal(before[k], v) for k, v in stepper.model.state_dict().items())


@pytest.mark.parametrize("family, model", list(_cases()))
def test_weights_round_trip_through_safetensors(family, model):
    cfg = run_cfg(family, model).model
    m = build_model(cfg, torch.Generator().manual_seed(0))
    blob = save({k: v.contiguous() for k, v in m.state_dict().items()})
    m2 = build_model(cfg, torch.Generator().manual_seed(1))
    m2.load_state_dict(load(blob))
    x = torch.rand(3, cfg.input_dim)
    kw = labels_kw(family, 3, cfg)
    m.eval(), m2.eval()
    with torch.no_grad():
        assert torch.equal(m(x, **kw).recon, m2(x, **kw).recon)


@pytest.mark.parametrize("family, model", list(_cases()))
def test_interrupt_and_resume_is_bitwise_and_the_run_directory_is_complete(tmp_path, family, model):
    cfg = run_cfg(family, model)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    train_runs([cfg], [ref], device="cpu", progress=False)
    with pytest.raises(Interrupted):
        train_runs([cfg], [cut], device="cpu", progress=False, stop=StopAfter(5))  # mid epoch 2 (4 steps each)
    train_runs([cfg], [cut], device="cpu", progress=False)
    same_run(ref, cut)
    hist = json.loads((cut / "history.json").read_text())
    assert set(hist["terms"]) == {"reconstruction", *cfg.model.term_names()} == set(hist["val_terms"])
    for k in hist["terms"]:
        assert len(hist["terms"][k]) == 2
    metrics = json.loads((cut / "metrics.json").read_text())
    assert math.isfinite(metrics["bce"]) and (cut / "recon.png").read_bytes()[:4] == b"\x89PNG"
    if family != "ae":
        assert metrics["family"]["name"] == family


@pytest.mark.parametrize("family, model", list(_cases()))
def test_the_fast_path_takes_only_what_it_implements(family, model):
    cfg = run_cfg(family, model)
    fast = can_stack(spec_of(cfg))
    assert fast == (family == "ae" and cfg.model.is_dense())
    assert not can_stack(spec_of(cfg.with_overrides({"train.loss": "torch_bce"})))
    if fast:  # and then it trains to the plain path's bits
        x = torch.rand(128, cfg.model.input_dim)
        plain = PlainStepper(spec_of(cfg), 1e-3, 0.9, 0.999, 1e-7, "cpu")
        stacked = StackedDenseStepper([spec_of(cfg)], 1e-3, 0.9, 0.999, 1e-7, "cpu")
        for b in range(2):
            for st in (plain, stacked):
                T = len(st.term_names)
                st.train_step([x], x, slice(64 * b, 64 * (b + 1)), torch.zeros(1), torch.zeros(1),
                              torch.zeros(1, T) if T and st is plain else None)
        a, b_ = plain.export_models()[0].state_dict(), stacked.export_models()[0].state_dict()
        assert all(torch.equal(a[k], b_[k]) for k in a)


def test_vae_reduction_and_beta_follow_the_references():
    cfg = run_cfg("vae", CASES["vae"][0]).model
    m = build_model(cfg, torch.Generator().manual_seed(0))
    x = torch.rand(8, 784)
    m.eval()
    torch.set_grad_enabled(False)
    out = m(x)
    mu, logvar = m.encoder.distribution(x)
    kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).sum(1).mean()
    assert float(out.terms["kl"]) == pytest.approx(float(kl), rel=1e-5)
    rec = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, x, reduction="none").sum(1).mean()
    assert float(m.reconstruction(out, x, "bce")) == pytest.approx(float(rec), rel=1e-5)
    summed = build_model(cfg.model_copy(update={"reduction": "sum", "beta": 2.0}), torch.Generator().manual_seed(0))
    assert float(summed(x).terms["kl"]) == pytest.approx(2.0 * 8 * float(kl), rel=1e-5)
    torch.set_grad_enabled(True)


def test_config_errors_name_the_family_field():
    from aelab.errors import ConfigError

    with pytest.raises(ConfigError, match="model.rho"):
        run_cfg("kl_sparse", {"rho": 1.5})
    with pytest.raises(ConfigError, match="sigmoid code units"):
        run_cfg("kl_sparse", {"encoder": ["16:relu"]})
    with pytest.raises(ConfigError, match="walks the encoder's sizes back"):
        run_cfg("tied", {"encoder": ["64:relu"], "decoder": ["32:relu", "784:sigmoid"]})
    with pytest.raises(ConfigError, match="model.latent: unknown key"):
        run_cfg("ae", {"latent": 3})
    with pytest.raises(ConfigError, match="decoder"):
        run_cfg("ae", {"encoder": CONV_ENC, "decoder": CONV_DEC[:-1]})


def test_keras_init_is_glorot_uniform_with_zero_bias_and_torch_init_is_seeded():
    cfg = run_cfg("ae", {}).model
    m = build_model(cfg, torch.Generator().manual_seed(0))
    lin = m.linears()[0]
    limit = math.sqrt(6 / (784 + 32))
    assert lin.weight.abs().max() <= limit and lin.weight.abs().max() > 0.9 * limit
    assert torch.count_nonzero(lin.bias) == 0
    tcfg = cfg.model_copy(update={"init": "torch"})
    t1, t2 = build_model(tcfg, torch.Generator().manual_seed(3)), build_model(tcfg, torch.Generator().manual_seed(3))
    assert torch.count_nonzero(t1.linears()[0].bias) > 0
    assert all(torch.equal(a, b) for a, b in zip(t1.state_dict().values(), t2.state_dict().values()))


def test_keras_leaky_relu_slope_is_0_2():
    assert ACTIVATION_MODULES["leaky_relu"]()(torch.tensor([-1.0])).item() == pytest.approx(-0.2)


def test_init_weights_start_the_run_from_a_file_and_count_in_its_identity(tmp_path, capsys):
    from safetensors.torch import save_file

    from aelab.cli import main
    from aelab.engine.steppers import build_initial_model
    from aelab.errors import WeightsError

    cfg = run_cfg("vae", CASES["vae"][0])
    donor = build_model(cfg.model, torch.Generator().manual_seed(123))
    f = tmp_path / "start.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(f))
    warm = cfg.with_overrides({"model.init_weights": str(f)})
    start = build_initial_model(spec_of(warm)).state_dict()
    assert all(torch.equal(start[k], v) for k, v in donor.state_dict().items())
    h1 = config_hash(warm)
    save_file({k: (v + 1).contiguous() for k, v in donor.state_dict().items()}, str(f))
    assert config_hash(warm) != h1  # same path, other weights: another run
    # a file that does not fit: one line naming the key, before anything is written
    save_file({"encoder.mu.weight": torch.zeros(3, 3)}, str(f))
    with pytest.raises(WeightsError, match="does not fit this model .*missing"):
        build_initial_model(spec_of(warm))
    out = tmp_path / "run"
    code = main(["train", "--family", "vae", "--set", "model.latent=4", "--encoder", "64:relu", "--decoder",
                 "64:relu,784:sigmoid", "--dataset", "synthetic", "--limit", "256", "--epochs", "1", "-q",
                 "--init-weights", str(f), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit this model" in err and err.count("\n") == 1 and not out.exists()


def test_a_summed_loss_is_reported_per_image():
    """pytorch/examples sums its loss over the batch and prints it per image: so does aelab."""
    cfg = run_cfg("vae", {**CASES["vae"][0], "reduction": "sum"})
    stepper = PlainStepper(spec_of(cfg), 1e-3, 0.9, 0.999, 1e-7, "cpu")
    x = torch.rand(64, 784)
    mean_cfg = run_cfg("vae", CASES["vae"][0])  # the same model, per-image sum averaged over the batch
    ref = PlainStepper(spec_of(mean_cfg), 1e-3, 0.9, 0.999, 1e-7, "cpu")
    a, b = stepper.evaluate([x], x), ref.evaluate([x], x)
    assert float(a[0]) == pytest.approx(float(b[0]), rel=1e-5)


def test_a_conv_run_resumes_with_the_thread_count_it_started_with(tmp_path):
    """Image models train on the process's thread count; a run resumed where that count differs
    (a study regrouped over other workers) must still end with the uninterrupted run's bits."""
    cfg = run_cfg("ae", CASES["ae"][2])
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train_runs([cfg], [ref], device="cpu", progress=False)
        with pytest.raises(Interrupted):
            train_runs([cfg], [cut], device="cpu", progress=False, stop=StopAfter(5))
        torch.set_num_threads(1)
        train_runs([cfg], [cut], device="cpu", progress=False)
    finally:
        torch.set_num_threads(old)
    same_run(ref, cut)
    assert json.loads((cut / "run.json").read_text())["threads"] == json.loads((ref / "run.json").read_text())["threads"]
