"""Sample quality on aelab's own classifier features (aelab.quality): each number against a case whose
value is known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aelab import quality as Q


def test_frechet_distance_of_one_dimensional_gaussians_is_the_mean_and_deviation_gap():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, (4000, 1)), rng.normal(-0.5, 0.5, (3000, 1))
    by_hand = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2  # (μa−μb)² + (σa−σb)²
    assert Q.frechet_distance(a, b) == pytest.approx(by_hand, rel=1e-9)


def test_frechet_distance_is_zero_for_one_set_and_the_squared_shift_for_a_shifted_copy():
    a = np.random.default_rng(1).normal(size=(500, 6)) @ np.random.default_rng(2).normal(size=(6, 6))
    shift = np.arange(6, dtype=float)
    assert Q.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert Q.frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-7)
    with pytest.raises(ValueError, match="same F"):
        Q.frechet_distance(a, a[:, :3])


def test_precision_and_recall_tell_realistic_samples_from_a_collapsed_or_a_wrong_set():
    real = np.random.default_rng(3).normal(size=(400, 4))
    assert Q.precision_recall(real, real.copy()) == (1.0, 1.0)
    assert Q.precision_recall(real, real + 100.0) == (0.0, 0.0)
    collapsed = np.repeat(real[:5], 80, axis=0) + 1e-6 * np.random.default_rng(4).normal(size=(400, 4))
    precision, recall = Q.precision_recall(real, collapsed)  # realistic, but one corner of the data only
    assert precision == 1.0 and recall < 0.2


def _blobs(n, seed):
    """Two classes of 8×8 "images" in [0, 1]: bright top half or bright bottom half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.uniform(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, :4] += 0.7 * (c == 0)
        x[i, 0, 4:] += 0.7 * (c == 1)
    return x, y


def test_the_classifier_learns_is_kept_by_fingerprint_and_retrained_when_its_file_is_damaged(tmp_path):
    x, y = _blobs(600, 0)
    net = Q.fit_classifier(x, y, cache=tmp_path)
    _, probs = Q.features_and_probs(net, x)
    assert (probs.argmax(1) == y).mean() > 0.95
    (kept,) = tmp_path.iterdir()
    assert kept.name == f"{Q.classifier_fingerprint(x, y.astype(np.int64), 2)}.safetensors"
    again = Q.fit_classifier(x, y, cache=tmp_path)  # read back: the same weights
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    kept.write_bytes(b"not a safetensors file")
    retrained = Q.fit_classifier(x, y, cache=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), retrained.state_dict().values()))
    other = Q.fit_classifier(x[:300], y[:300], cache=tmp_path)  # another slice: another classifier
    assert len(list(tmp_path.iterdir())) == 2 and not torch.equal(other.head.weight, net.head.weight)


def test_samples_like_the_data_score_better_than_noise_on_every_number():
    x, y = _blobs(800, 1)
    net = Q.fit_classifier(x, y)
    test, _ = _blobs(400, 2)
    good, _ = _blobs(400, 3)
    noise = np.random.default_rng(5).uniform(0, 1, (400, 1, 8, 8)).astype(np.float32)
    g, n = Q.sample_quality(net, test, good), Q.sample_quality(net, test, noise)
    assert g["frechet"] < n["frechet"] / 10
    assert g["precision"] > 0.8 and g["recall"] > 0.8 and n["precision"] < 0.2
    assert g["confidence"] > n["confidence"] and g["real_confidence"] == n["real_confidence"] > 0.9
    assert g["n"] == 400


def test_a_generative_run_records_its_prior_samples_quality_and_the_report_shows_it(tmp_path):
    import aelab
    from aelab.report.latent_sections import overview

    base = {"data.dataset": "digits", "data.limit": 600, "data.test_limit": 200, "train.epochs": 2}
    runs = {}
    for fam in ("ae", "vae"):
        cfg = aelab.fit_config(aelab.RunConfig().with_overrides({**base, "model.family": fam, "name": fam}))
        run = aelab.train(cfg, tmp_path / fam, figures=False)
        runs[fam] = {"name": fam, "config": run.config.model_dump(mode="json"), "history": run.history,
                     "metrics": run.metrics}
    assert "samples" not in runs["ae"]["metrics"]  # a deterministic code has no prior to sample
    s = runs["vae"]["metrics"]["samples"]
    assert s["n"] == 200 and s["frechet"] > 0 and 0 <= s["precision"] <= 1 and 0 <= s["recall"] <= 1
    assert 0 < s["confidence"] <= 1 and s["real_confidence"] > 0.5
    table = overview(runs, lambda r: None, lambda r: None)
    fd = table["columns"].index("prior samples: Fréchet distance")
    rows = {r["key"]: r["cells"] for r in table["rows"]}
    assert rows["ae"][fd] == "—" and float(rows["vae"][fd]) == pytest.approx(s["frechet"], rel=1e-2)
