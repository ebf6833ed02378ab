"""The families of issue 22 beyond the contract test (``test_families.py``): what each one computes,
checked against hand-computed values — the VQ-VAE's quantiser and EMA codebook, the IWAE bound, the
importance-sampled NLL (``aelab.likelihood``) on a model whose likelihood is known in closed form, the
β-TCVAE's decomposition, the shapes data set and the MIG metric (``aelab.disentangle``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aelab import likelihood as LH
from aelab.disentangle import mig, mutual_information
from aelab.models import build_model
from aelab.models import iwae as iwae_mod
from aelab.models import vae as vae_mod
from aelab.models import vqvae as vq

DENSE = {"encoder": ("32:relu", "8:linear"), "decoder": ("32:relu", "64:sigmoid"), "input_shape": (64,)}


# -- VQ-VAE -------------------------------------------------------------------------------------------------
def vq_model(**kw) -> vq.VQVAE:
    cfg = vq.Config.model_validate({**DENSE, "codebook_size": 4, "embedding_dim": 2, **kw})
    return build_model(cfg, torch.Generator().manual_seed(0))


def test_the_quantiser_picks_the_nearest_entry_and_decodes_the_entries():
    m = vq_model()
    with torch.no_grad():
        m.quantizer.codebook.copy_(torch.tensor([[0., 0.], [1., 0.], [0., 1.], [5., 5.]]))
    z = torch.tensor([[[0.9, 0.1], [0.1, 0.2], [0.2, 0.7], [4., 6.]]])  # (B=1, M=4, D=2)
    assert m.quantizer.nearest(z).tolist() == [[1, 0, 2, 3]]
    # the decoder looks the entries up: decoding indices = decoding the entries' values
    stack_in = torch.tensor([[1., 0., 0., 0., 0., 1., 5., 5.]])
    assert torch.allclose(m.decoder(torch.tensor([[1., 0., 2., 3.]])), m.decoder.stack(stack_in))


def test_straight_through_gradients_and_the_two_terms():
    m = vq_model(beta=0.5)
    x = torch.rand(8, 64)
    out = m(x)
    z_e = m.encoder.vectors(x)
    e = m.quantizer.lookup(m.quantizer.nearest(z_e))
    sq = float((z_e - e).detach().pow(2).mean())
    assert float(out.terms["codebook"].detach()) == pytest.approx(sq, rel=1e-6)
    assert float(out.terms["commitment"].detach()) == pytest.approx(0.5 * sq, rel=1e-6)
    # the reconstruction's gradient reaches the encoder through the quantisation, not the codebook
    rec = m.reconstruction(out, x, "bce")
    enc_w = m.encoder.features[0].weight
    g_enc, g_book = torch.autograd.grad(rec, [enc_w, m.quantizer.codebook], allow_unused=True)
    assert g_enc is not None and float(g_enc.abs().sum()) > 0
    assert g_book is None or float(g_book.abs().sum()) == 0
    # the codebook term moves only the codebook, the commitment term only the encoder
    g_book = torch.autograd.grad(out.terms["codebook"], [m.quantizer.codebook], retain_graph=True)[0]
    assert float(g_book.abs().sum()) > 0
    assert torch.autograd.grad(out.terms["commitment"], [m.quantizer.codebook], allow_unused=True)[0] is None


def test_the_ema_update_follows_the_papers_formulas():
    m = vq_model(ema=True, decay=0.9, epsilon=1e-5, codebook_size=3)
    q = m.quantizer
    assert "encoder.quantizer.codebook" in dict(m.named_buffers())
    assert all("codebook" not in n for n, _ in m.named_parameters())
    book0, count0, sum0 = q.codebook.clone(), q.ema_count.clone(), q.ema_sum.clone()
    z = torch.tensor([[1., 2.], [3., 4.], [5., 6.]])
    idx = torch.tensor([0, 0, 2])
    q.ema_update(z, idx)
    n_i = torch.tensor([2., 0., 1.])
    count = 0.9 * count0 + 0.1 * n_i
    sums = 0.9 * sum0 + 0.1 * torch.stack([z[0] + z[1], torch.zeros(2), z[2]])
    n = count.sum()
    smooth = (count + 1e-5) / (n + 3 * 1e-5) * n
    assert torch.allclose(q.ema_count, count) and torch.allclose(q.ema_sum, sums)
    assert torch.allclose(q.codebook, sums / smooth[:, None], atol=1e-6)
    assert torch.allclose(q.codebook[1], book0[1] * 0.9 * count0[1] / smooth[1] * 1.0, atol=1e-6)  # unused: stays near


def test_the_ema_codebook_moves_in_after_step_and_is_not_trained_by_the_optimiser():
    from aelab.config import RunConfig
    from aelab.engine.steppers import PlainStepper
    from aelab.runs import spec_of

    cfg = RunConfig.from_dict({"model": {"family": "vqvae", **{k: list(v) if isinstance(v, tuple) else v
                                                                 for k, v in DENSE.items()},
                                         "codebook_size": 4, "embedding_dim": 2, "ema": True},
                               "data": {"dataset": "synthetic", "limit": 64}})
    st = PlainStepper(spec_of(cfg), 1e-3, 0.9, 0.999, 1e-7, "cpu")
    before = st.model.quantizer.codebook.clone()
    x = torch.rand(32, 64)
    st.train_step([x], x, slice(0, 32), torch.zeros(1), torch.zeros(1), torch.zeros(1, 1))
    assert not torch.equal(before, st.model.quantizer.codebook)
    assert "adam.m.encoder.quantizer.codebook" not in st.state()[0]
    assert "encoder.quantizer.ema_count" in st.state()[0]  # checkpointed with the weights


def test_codebook_diagnostics_on_a_collapsed_and_a_spread_codebook():
    m = vq_model(codebook_size=4)
    x = torch.rand(20, 64)
    with torch.no_grad():  # every entry but 0 far away: everything maps to entry 0
        m.quantizer.codebook.copy_(torch.tensor([[0., 0.], [1e4, 1e4], [-1e4, 1e4], [1e4, -1e4]]))
    d = vq.diagnostics(m, x, m.config)
    assert d["dead_codes"] == 3 and d["codebook_usage"] == 0.25 and d["perplexity"] == pytest.approx(1.0)
    assert d["code_counts"] == [20 * 4, 0, 0, 0]
    counts = torch.tensor([1, 1, 1, 1])
    p = counts / counts.sum()
    assert float(torch.exp(-(p * p.log()).sum())) == pytest.approx(4.0)  # the perplexity of an even use is K


# -- the likelihood -----------------------------------------------------------------------------------------
def linear_gaussian(seed: int = 0, d: int = 5, l: int = 2, sigma: float = 0.5):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I) with orthogonal columns in W, so the exact posterior
    is diagonal: log p(x) = log N(x; b, WWᵀ + σ²I) in closed form."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, l, generator=g, dtype=torch.float64))
    w = q * torch.tensor([2.0, 0.7], dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    x = torch.randn(40, l, generator=g, dtype=torch.float64) @ w.T + b + sigma * torch.randn(
        40, d, generator=g, dtype=torch.float64)
    cov = w @ w.T + sigma ** 2 * torch.eye(d, dtype=torch.float64)
    log_px = torch.distributions.MultivariateNormal(b, cov).log_prob(x)
    post_var = 1.0 / (1.0 + (w * w).sum(0) / sigma ** 2)  # (l,)
    post_mu = ((x - b) @ w / sigma ** 2) * post_var

    def log_lik(xx, z):
        mean = z @ w.T + b
        return (-0.5 * (math.log(2 * math.pi * sigma ** 2) + (xx - mean) ** 2 / sigma ** 2)).sum(-1)

    return x, log_px, post_mu, post_var.log().expand_as(post_mu), log_lik


def test_the_nll_of_a_linear_gaussian_model_is_exact_with_the_true_posterior():
    x, log_px, mu, logvar, log_lik = linear_gaussian()
    for k in (1, 7):
        lw = LH.log_weights(x, mu, logvar, log_lik, k, torch.Generator().manual_seed(1))
        assert lw.shape == (40, k)
        assert torch.allclose(LH.per_image(lw), -log_px, atol=1e-9)  # every weight is p(x) itself
    est = LH.estimate(LH.log_weights(x, mu, logvar, log_lik, 3, torch.Generator().manual_seed(1)))
    assert est.nats == pytest.approx(float(-log_px.mean()), abs=1e-9) and est.k == 3 and est.n == 40
    assert est.stderr == pytest.approx(float((-log_px).std() / math.sqrt(40)), rel=1e-6)


def test_with_a_wrong_posterior_the_estimate_is_an_upper_bound_that_tightens_with_k():
    x, log_px, mu, logvar, log_lik = linear_gaussian()
    mu, logvar = mu + 0.3, logvar + 0.5  # a posterior that is off
    truth = float(-log_px.mean())
    est = {k: LH.estimate(LH.log_weights(x, mu, logvar, log_lik, k, torch.Generator().manual_seed(2))).nats
           for k in (1, 10, 1000)}
    assert est[1] > est[10] > est[1000] > truth - 1e-3
    assert est[1000] - truth < 0.1 * (est[1] - truth)


def tiny_vae(family: str = "vae", **kw):
    mod = {"vae": vae_mod, "iwae": iwae_mod}[family]
    cfg = mod.Config.model_validate({"input_shape": (64,), "encoder": ("16:relu",), "decoder": ("16:relu", "64:sigmoid"),
                                     "latent": 3, **kw})
    return build_model(cfg, torch.Generator().manual_seed(0)), cfg


def test_the_k1_estimate_is_the_negative_elbo_and_more_samples_improve_it():
    m, cfg = tiny_vae()
    x = (torch.rand(300, 64, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    d = vae_mod.diagnostics(m, x, cfg, "bce")
    k1 = vae_mod.test_nll(m, x, "bce", k=1, n=None)
    assert abs(k1.nats - (-d["elbo"])) < 2 * k1.stderr  # the ELBO's expectation, within its standard error
    ks = [vae_mod.test_nll(m, x, "bce", k=k, n=None).nats for k in (1, 5, 50)]
    assert ks[0] > ks[1] > ks[2]
    assert d["nll"] <= ks[2] + 0.05 and d["nll_k"] == vae_mod.NLL_K and d["nll_images"] == 300
    assert vae_mod.test_nll(m, x, "mse") is None  # no likelihood under MSE
    assert "nll" not in vae_mod.diagnostics(m, x, cfg, "mse")


def test_the_iwae_objective_is_the_k_sample_bound():
    m, cfg = tiny_vae("iwae", samples=4)
    x = (torch.rand(6, 64, generator=torch.Generator().manual_seed(4)) < 0.3).float()
    out = m(x, rng=torch.Generator().manual_seed(5))
    total = m.reconstruction(out, x, "bce") + out.terms["kl"]
    # by hand, with the same draws
    mu, logvar = m.encoder.distribution(x)
    eps = torch.randn((4, *mu.shape), generator=torch.Generator().manual_seed(5))
    z = mu + torch.exp(0.5 * logvar) * eps
    logits = m.decoder.pre(z.reshape(-1, 3)).reshape(4, 6, 64)
    log_w = LH.bernoulli_log_likelihood(x, logits) + LH.log_standard_normal(z) - LH.log_normal(z, mu, logvar)
    bound = (torch.logsumexp(log_w, 0) - math.log(4)).mean()
    assert float(total.detach()) == pytest.approx(-float(bound.detach()), rel=1e-5)
    with pytest.raises(Exception, match="no β"):
        iwae_mod.Config(beta=2.0)
    one, _ = tiny_vae("iwae", samples=1)  # K = 1: the reconstruction is the sample's −log p(x|z)
    o1 = one(x, rng=torch.Generator().manual_seed(5))
    z1 = mu + torch.exp(0.5 * logvar) * torch.randn((1, *mu.shape), generator=torch.Generator().manual_seed(5))[0]
    rec1 = -LH.bernoulli_log_likelihood(x, one.decoder.pre(z1)).mean()
    assert float(one.reconstruction(o1, x, "bce").detach()) == pytest.approx(float(rec1.detach()), rel=1e-5)


# -- MIG ----------------------------------------------------------------------------------------------------
def factors(n: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 3, n), rng.integers(0, 6, n), rng.uniform(0, 1, n)], axis=1)


def test_mig_of_a_copy_of_the_factors_is_one_and_of_noise_is_zero():
    v = factors()
    rng = np.random.default_rng(1)
    copy = np.concatenate([v + rng.normal(0, 1e-3, v.shape), rng.normal(size=(len(v), 2))], axis=1)
    assert mig(copy, v)["mig"] > 0.9
    assert mig(copy, v, names=["shape", "scale", "x"])["top_dims"] == {"shape": 0, "scale": 1, "x": 2}
    assert mig(rng.normal(size=(len(v), 5)), v)["mig"] < 0.05
    twice = np.concatenate([v[:, :1], v[:, :1], v[:, 1:]], axis=1)  # one factor held by two dimensions equally
    assert mig(twice, v, names=["a", "b", "c"])["per_factor"]["a"] == pytest.approx(0.0, abs=1e-9)


def test_mutual_information_by_hand():
    a = np.array([0, 0, 1, 1])
    assert mutual_information(a, a) == pytest.approx(math.log(2))
    assert mutual_information(a, np.array([0, 1, 0, 1])) == pytest.approx(0.0)


# -- β-TCVAE ------------------------------------------------------------------------------------------------
def test_the_tcvae_terms_are_the_minibatch_weighted_estimates_and_sum_to_the_sampled_kl():
    from aelab.models import tcvae

    g = torch.Generator().manual_seed(6)
    z, mu, logvar = (torch.randn(3, 2, generator=g, dtype=torch.float64) * s for s in (1.0, 1.0, 0.3))
    n = 50
    parts = tcvae.decomposition(z, mu, logvar, n)

    def logn(x, m, lv):  # log N(x; m, exp(lv)) of one value
        return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / math.exp(lv))

    for i in range(3):  # by hand, loops over the batch and the dimensions
        log_qzx = sum(logn(z[i, d], mu[i, d], logvar[i, d]) for d in range(2))
        log_qz = math.log(sum(math.exp(sum(logn(z[i, d], mu[j, d], logvar[j, d]) for d in range(2)))
                              for j in range(3)) / (n * 3))
        log_qzd = sum(math.log(sum(math.exp(logn(z[i, d], mu[j, d], logvar[j, d])) for j in range(3)) / (n * 3))
                      for d in range(2))
        log_pz = sum(logn(z[i, d], 0.0, 0.0) for d in range(2))
        assert float(parts["mi"][i]) == pytest.approx(float(log_qzx - log_qz), rel=1e-9)
        assert float(parts["tc"][i]) == pytest.approx(float(log_qz - log_qzd), rel=1e-9)
        assert float(parts["dim_kl"][i]) == pytest.approx(float(log_qzd - log_pz), rel=1e-9)
    cfg = tcvae.Config.model_validate({"input_shape": (64,), "encoder": ("16:relu",), "decoder": ("16:relu", "64:sigmoid"),
                                       "latent": 3, "alpha": 1.0, "beta": 1.0, "gamma": 1.0, "dataset_size": 100})
    m = build_model(cfg, torch.Generator().manual_seed(0))
    x = torch.rand(8, 64)
    out = m(x, rng=torch.Generator().manual_seed(7))
    mu, logvar = m.encoder.distribution(x)
    zz = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
    sampled_kl = (LH.log_normal(zz, mu, logvar) - LH.log_standard_normal(zz)).mean()
    assert float(sum(out.terms.values()).detach()) == pytest.approx(float(sampled_kl.detach()), rel=1e-5)
    heavy = build_model(cfg.model_copy(update={"beta": 5.0}), torch.Generator().manual_seed(0))
    o5 = heavy(x, rng=torch.Generator().manual_seed(7))
    assert float(o5.terms["tc"].detach()) == pytest.approx(5 * float(out.terms["tc"].detach()), rel=1e-5)


# -- the shapes data set ------------------------------------------------------------------------------------
def test_shapes_are_drawn_from_the_seed_with_their_factors():
    from aelab.data import DataConfig, load
    from aelab.data import shapes

    cfg = DataConfig(dataset="shapes", limit=60, test_limit=20)
    a, b = load(cfg), load(cfg)
    assert a.x_train.shape == (60, 1, 32, 32) and a.x_test.shape == (20, 1, 32, 32) and a.classes == shapes.SHAPES
    assert np.array_equal(a.x_train, b.x_train) and set(np.unique(a.x_train)) <= {0, 255}
    f = shapes.factors(cfg, "test")
    assert f.shape == (20, 5) and np.array_equal(f[:, 0], a.y_test)
    other = load(DataConfig.model_validate({"dataset": "shapes", "limit": 60, "source": {"kind": "shapes", "seed": 1,
                                                                                      "image_size": 48}}))
    assert other.x_train.shape == (60, 1, 48, 48) and not np.array_equal(shapes.factors(other_cfg := DataConfig.model_validate(
        {"dataset": "shapes", "limit": 60, "source": {"kind": "shapes", "seed": 1}}), "train"), shapes.factors(
        DataConfig(dataset="shapes", limit=60), "train"))
    assert other_cfg.source.seed == 1
    # one square, unrotated, at a known place: its centre pixel is on, a far corner off, its area as drawn
    idx = np.array([[0, 5, 0, 7, 7]])
    img = shapes.render(idx, 32)[0]
    cx = shapes.factor_values(32)["x"][7]
    assert img[int(cx), int(cx)] == 255 and img[0, 0] == 0
    half = 0.8 * 1.0 * 0.25 * 32  # the square's half-side: 0.8 of the half-size at scale 1
    assert abs((img > 0).sum() - (2 * half) ** 2) <= 4 * 2 * half


def test_a_tcvae_trains_on_shapes_from_python_and_its_mig_is_read_from_the_run(tmp_path):
    import aelab
    from aelab.analysis.disentangle import mig_curve, run_mig
    from aelab.config import RunConfig

    cfg = aelab.fit_config(RunConfig.from_dict({
        "name": "tc", "model": {"family": "tcvae", "encoder": ["32:relu"], "decoder": ["32:relu", "784:sigmoid"],
                                "latent": 4, "dataset_size": 128},
        "data": {"dataset": "shapes", "limit": 128, "test_limit": 48}, "train": {"epochs": 1, "batch_size": 64}}))
    run = aelab.train(cfg, tmp_path / "tc", figures=False)
    fam = json.loads((tmp_path / "tc" / "metrics.json").read_text())["family"]
    assert {"mutual_information", "total_correlation", "dimension_kl", "nll"} <= set(fam)
    m = run_mig(tmp_path / "tc")
    assert 0 <= m["mig"] <= 1 and set(m["per_factor"]) == {"shape", "scale", "rotation", "x", "y"} and m["n"] == 48
    curve = mig_curve(tmp_path, "model.beta")
    assert [r["value"] for r in curve] == [6.0] and curve[0]["mig"] == m["mig"]
    assert run is not None
