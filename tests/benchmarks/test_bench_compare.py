"""benchmarks/compare_conv.py without TensorFlow: which presets it takes, that its plain PyTorch
loops are the presets' models (same weights, same outputs, the denoiser's noisy inputs, the
pytorch/examples objective), and that its Markdown replaces only its own block."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root holds benchmarks/

from benchmarks import compare_conv  # noqa: E402

from aelab.engine.steppers import build_initial_model  # noqa: E402
from aelab.presets import load_preset  # noqa: E402
from aelab.runs import spec_of  # noqa: E402


def test_presets_are_the_four_new_family_references_and_only_those():
    assert compare_conv.PRESETS == ("keras-blog-conv", "keras-io-denoiser", "keras-io-vae", "pytorch-vae")
    assert all(compare_conv.is_conv_preset(n) for n in compare_conv.PRESETS)
    # dense autoencoders are the fast path's (the study rows of benchmarks.compare); unknown names are not presets
    assert not compare_conv.is_conv_preset("keras-blog-dense")
    assert not compare_conv.is_conv_preset("lab_undercomplete")


def _synthetic(name: str, n: int = 24):
    return load_preset(name).with_overrides({"data.dataset": "synthetic", "data.limit": n, "data.test_limit": 8,
                                             "train.batch_size": 8})


@pytest.mark.parametrize("name", ["keras-blog-conv", "keras-io-vae", "pytorch-vae"])
def test_the_plain_loop_starts_from_aelabs_model(name):
    """Same initial weights, same function: the NCHW loop (with its CHW flatten and permuted dense
    weights) gives aelab's outputs on the same images."""
    cfg = load_preset(name)
    torch.manual_seed(0)
    x = torch.rand(5, math.prod(cfg.model.input_shape))
    run = compare_conv.TorchRun(cfg, x, x[:2])
    model = build_initial_model(spec_of(cfg)).eval()
    img = x.view(5, *run.in_shape)
    with torch.no_grad():
        if run.vae:
            mu, logvar = model.encoder.distribution(x)
            h = run.enc(img)
            torch.testing.assert_close(run.mu(h), mu, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(run.logvar(h), logvar, rtol=1e-5, atol=1e-6)
            out, ref = torch.sigmoid(run.dec(mu)).reshape(5, -1), model.decoder(mu)
        else:
            out, ref = torch.sigmoid(run.dec(run.enc(img))).reshape(5, -1), model(x).recon
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_the_pytorch_vae_loop_is_the_examples_objective_and_optimizer():
    """vae/main.py: F.binary_cross_entropy summed + KLD, reported per image; Adam(lr=1e-3), ε 1e-8."""
    cfg = load_preset("pytorch-vae")
    torch.manual_seed(1)
    x = torch.rand(6, 784)
    run = compare_conv.TorchRun(cfg, x, x[:2])
    assert run.example_vae
    assert run.opt.defaults["eps"] == 1e-8 and run.opt.defaults["lr"] == 1e-3
    torch.manual_seed(7)
    got = run._loss(x, x)
    # by hand, with the same ε (the loop draws it with torch.randn_like after the encoder)
    h = run.enc(x)
    mu, logvar = run.mu(h), run.logvar(h)
    torch.manual_seed(7)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    p = torch.sigmoid(run.dec(z))
    bce = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum()
    kld = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum()
    torch.testing.assert_close(got, bce + kld, rtol=1e-5, atol=1e-3)
    assert got.item() > 6 * 400  # a sum over 6 images of 784 pixels, not a mean


def test_the_denoisers_loops_read_noisy_inputs_and_clean_targets(tmp_path):
    from aelab.runs import DataCache

    cfg = _synthetic("keras-io-denoiser")
    cache = DataCache()
    x_tr, x_te, x_in, x_te_in = compare_conv._inputs(cfg, cache)
    assert x_in.shape == x_tr.shape and x_te_in.shape == x_te.shape
    assert not torch.equal(x_in, x_tr) and not torch.equal(x_te_in, x_te)  # noise 0.4, validated noisy
    # the very arrays aelab's loop trains and validates on
    d = cache.train_data(cfg, torch.device("cpu"))
    assert torch.equal(d.train_inputs(0), x_in) and torch.equal(d.val_inputs(), x_te_in)
    run = compare_conv.TorchRun(cfg, x_tr, x_te, x_in, x_te_in)
    xb, yb = next(iter(run.loader))
    rows = [int(torch.nonzero((x_in == r).all(1))[0]) for r in xb]  # where each input came from
    assert torch.equal(yb, x_tr[rows])  # its target is that image, clean
    # and the loop's loss is BCE of the clean target given the noisy input
    with torch.no_grad():
        logits = run.dec(run.enc(xb.view(-1, 1, 28, 28)))
        want = F.binary_cross_entropy_with_logits(logits, yb.view(-1, 1, 28, 28))
        torch.testing.assert_close(run._loss(xb, yb), want)


def _fake_result():
    def fw(s, loss):
        return {"sec_per_epoch": s, "epoch_seconds": [s + 1, s, s], "loss": [loss], "val_loss": [loss]}

    rows = {}
    for name, (a, alt, k, t) in {"keras-blog-conv": (2.0, 3.0, 3.0, 4.0), "pytorch-vae": (0.5, 0.7, 1.5, 2.0)}.items():
        rows[name] = {"n_train": 6000, "n_val": 2000, "batch_size": 128, "epochs": 4,
                      "threads": {"aelab": 2 if name != "pytorch-vae" else 1, "aelab_alt": 1 if name != "pytorch-vae" else 2,
                                  "torch": 2},
                      "aelab": fw(a, 0.2), "aelab_alt": fw(alt, 0.2), "keras": fw(k, 0.21), "torch": fw(t, 0.22),
                      "speedup_vs_keras": k / a}
    return {"command": "python -m benchmarks.compare --models presets", "conv_notes": ["a note"],
            "machine": {"cpu": "cpu", "cores": 2, "torch": "2", "torch_threads": 2, "date": "today",
                        "load_avg_start": [1.0], "load_avg_end": [1.0]},
            "conv_models": rows}


def test_markdown_rows_and_the_2x_count():
    md = compare_conv.markdown(_fake_result())
    assert md.startswith(compare_conv.BEGIN) and md.rstrip().endswith(compare_conv.END)
    assert "| keras-blog-conv | 2 | 2.00 | 3,000 | 3.00 (1) | 3.00 | 4.00 | 1.50 | 1.00 | 2.00 |" in md
    assert "| pytorch-vae | 1 | 0.50 | 12,000 | 0.70 (2) | 1.50 | 2.00 | 3.00 | 2.14 | 4.00 |" in md
    assert "met for 1 of 2 presets (keras-blog-conv ×1.50, pytorch-vae ×3.00)" in md


def test_history_keeps_earlier_runs_one_thread_column():
    old = _fake_result()
    for r in old["conv_models"].values():  # a run recorded before aelab_alt: its 1-thread column
        r["aelab_1t"] = r.pop("aelab_alt")
    res = compare_conv.with_history(_fake_result(), old)
    assert res["earlier_runs"][0]["models"]["keras-blog-conv"]["aelab_1t"] == 3.0
    md = compare_conv.markdown(res)
    assert md.count("| keras-blog-conv | 2.00 | 3.00 | 3.00 | 4.00 | 1.50 | 1.00 |") == 2  # this run and the earlier


def test_merge_replaces_only_the_block():
    old = f"# B\n\nabove\n\n{compare_conv.BEGIN}\nold\n{compare_conv.END}\n\nbelow\n"
    new = compare_conv.merge_markdown(old, f"{compare_conv.BEGIN}\nnew\n{compare_conv.END}\n")
    assert new == f"# B\n\nabove\n\n{compare_conv.BEGIN}\nnew\n{compare_conv.END}\n\nbelow\n"
    assert compare_conv.merge_markdown("# B\n", "S\n") == "# B\n\nS\n"
