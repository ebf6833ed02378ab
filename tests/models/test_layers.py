"""Layer specs with Keras' semantics: shapes, TF padding, flatten order, init, errors.

Every expected value here is worked out by hand from Keras/TensorFlow's definitions; the same
semantics are checked against Keras itself by ``benchmarks/keras_layers_check.py`` (needs TF).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from aelab.errors import ConfigError
from aelab.models.dense import DenseAutoencoder
from aelab.models.layers import (
    KINDS,
    Conv2D,
    Conv2DTranspose,
    Dense,
    Flatten,
    FlattenHWC,
    KerasConv2d,
    KerasMaxPool2d,
    MaxPool2D,
    Reshape,
    UpSample2D,
    build_stack,
    out_shape,
    parse_layer,
    same_pads,
    stack_shapes,
    transpose_crop,
)


def conv(f, k=3, s=1, p="same", a="relu"):
    return {"kind": "conv2d", "filters": f, "kernel": k, "stride": s, "padding": p, "activation": a}


def convT(f, k=3, s=2, p="same", a="relu"):
    return {"kind": "conv2d-transpose", "filters": f, "kernel": k, "stride": s, "padding": p, "activation": a}


POOL = {"kind": "max-pool", "pool": 2, "padding": "same"}
UP = {"kind": "up-sample", "size": 2}

#: Keras blog conv autoencoder, encoder + decoder.
BLOG = [conv(16), POOL, conv(8), POOL, conv(8), POOL, conv(8), UP, conv(8), UP, conv(16, p="valid"), UP,
        conv(1, a="sigmoid")]
VAE_ENC = [conv(32, s=2), conv(64, s=2), {"kind": "flatten"}, "16:relu"]
VAE_DEC = ["3136:relu", {"kind": "reshape", "shape": [7, 7, 64]}, convT(64), convT(32), convT(1, s=1, a="sigmoid")]


def single(spec, in_shape, weight=None, bias=0.0):
    seq, _ = build_stack([spec], in_shape)
    m = seq[0]
    with torch.no_grad():
        if weight is not None:
            m.weight.copy_(weight)
        m.bias.fill_(bias)
    return seq


# -- shape arithmetic ----------------------------------------------------------------------------


def test_keras_blog_conv_autoencoder_shapes():
    hw = [s[1:] for s in stack_shapes(BLOG, (1, 28, 28))]
    # 28 →pool same→ 14 → 7 → ⌈7/2⌉ = 4; back 4 → 8 → 16 → valid conv 14 → 28.
    assert hw == [(28, 28), (14, 14), (14, 14), (7, 7), (7, 7), (4, 4), (4, 4), (8, 8), (8, 8), (16, 16),
                  (14, 14), (28, 28), (28, 28)]
    assert stack_shapes(BLOG, (1, 28, 28))[-1] == (1, 28, 28)


def test_keras_io_vae_shapes():
    assert stack_shapes(VAE_ENC, (1, 28, 28)) == [(32, 14, 14), (64, 7, 7), (3136,), (16,)]
    assert stack_shapes(VAE_DEC, (2,)) == [(3136,), (64, 7, 7), (64, 14, 14), (32, 28, 28), (1, 28, 28)]


@pytest.mark.parametrize(
    "spec, n, expected",
    [
        (conv(1, k=3, s=1, p="valid"), 7, 5),   # ⌊(7−3)/1⌋+1
        (conv(1, k=4, s=2, p="valid"), 9, 3),   # ⌊5/2⌋+1
        (conv(1, k=3, s=3, p="valid"), 10, 3),  # ⌊7/3⌋+1
        (conv(1, k=5, s=2, p="same"), 9, 5),    # ⌈9/2⌉
        (conv(1, k=2, s=3, p="same"), 7, 3),    # ⌈7/3⌉
        ({"kind": "max-pool", "pool": 2, "padding": "same"}, 7, 4),
        ({"kind": "max-pool", "pool": 2}, 7, 3),
        ({"kind": "max-pool", "pool": 3, "stride": 2}, 8, 3),  # ⌊5/2⌋+1
        (convT(1, k=3, s=2, p="valid"), 3, 7),  # (3−1)·2+3
        (convT(1, k=4, s=3, p="valid"), 3, 10),
        (convT(1, k=1, s=2, p="valid"), 3, 6),  # kernel < stride: (3−1)·2 + max(1, 2), as Keras
        (convT(1, k=2, s=3, p="valid"), 3, 9),
        (convT(1, k=3, s=2, p="same"), 3, 6),   # n·s
        (convT(1, k=5, s=3, p="same"), 5, 15),
        ({"kind": "up-sample", "size": 3}, 5, 15),
    ],
)
def test_out_shape_odd_sizes(spec, n, expected):
    spec = parse_layer(spec)
    c = spec.filters if hasattr(spec, "filters") else 2
    assert out_shape(spec, (2, n, n)) == (c, expected, expected)
    # and the module agrees
    seq, shape = build_stack([spec], (2, n, n))
    assert tuple(seq(torch.rand(1, 2, n, n)).shape[1:]) == shape == (c, expected, expected)


def test_rectangular_kernels_and_strides():
    spec = parse_layer(conv(3, k=[2, 5], s=[2, 3], p="valid"))
    assert out_shape(spec, (1, 7, 11)) == (3, 3, 3)  # ⌊5/2⌋+1, ⌊6/3⌋+1
    spec = parse_layer(convT(3, k=[2, 5], s=[2, 3], p="same"))
    assert out_shape(spec, (1, 7, 11)) == (3, 14, 33)
    assert out_shape(parse_layer({"kind": "up-sample", "size": [2, 3]}), (4, 2, 5)) == (4, 4, 15)


@pytest.mark.parametrize(
    "n, k, s, pads",
    [
        (4, 3, 2, (0, 1)),   # out 2: (2−1)·2+3−4 = 1 → the odd one after
        (3, 3, 2, (1, 1)),   # out 2: 2+3−3 = 2
        (28, 3, 2, (0, 1)),  # the reference VAE's first conv
        (5, 2, 1, (0, 1)),
        (4, 4, 1, (1, 2)),
        (7, 3, 3, (1, 1)),   # out 3: 6+3−7 = 2
        (8, 1, 2, (0, 0)),   # out 4: 6+1−8 < 0 → no padding
    ],
)
def test_same_pads(n, k, s, pads):
    assert same_pads(n, k, s) == pads


# -- TF's "same" padding on hand-made inputs -----------------------------------------------------


def grid(h, w):
    return torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)


def test_conv_same_stride2_pads_bottom_right():
    x = grid(4, 4)  # [[0..3], [4..7], [8..11], [12..15]]
    ones = single(conv(1, k=3, s=2, a="linear"), (1, 4, 4), torch.ones(1, 1, 3, 3))
    # TF pads 0 rows/cols before, 1 after: windows start at 0 and 2.
    assert ones(x).squeeze().tolist() == [[45, 39], [66, 50]]
    # A kernel that picks each window's top-left pixel: x[0, 0], x[0, 2], x[2, 0], x[2, 2].
    delta = torch.zeros(1, 1, 3, 3)
    delta[..., 0, 0] = 1
    assert single(conv(1, k=3, s=2, a="linear"), (1, 4, 4), delta)(x).squeeze().tolist() == [[0, 2], [8, 10]]
    # PyTorch's symmetric padding=1 would have started at −1: a different answer.
    assert F.conv2d(x, torch.ones(1, 1, 3, 3), stride=2, padding=1).squeeze().tolist() != [[45, 39], [66, 50]]


def test_conv_same_even_kernel_pads_one_before_two_after():
    x = grid(4, 4)
    for (i, j), expected in {
        (0, 0): [[0, 0, 0, 0], [0, 0, 1, 2], [0, 4, 5, 6], [0, 8, 9, 10]],     # xpad[r, c] = x[r−1, c−1]
        (3, 3): [[10, 11, 0, 0], [14, 15, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],  # x[r+2, c+2]
    }.items():
        delta = torch.zeros(1, 1, 4, 4)
        delta[..., i, j] = 1
        assert single(conv(1, k=4, s=1, a="linear"), (1, 4, 4), delta)(x).squeeze().tolist() == expected


def test_conv_same_stride1_odd_kernel_is_symmetric_and_bias_is_added():
    x = grid(3, 3)
    y = single(conv(1, k=3, s=1, a="linear"), (1, 3, 3), torch.ones(1, 1, 3, 3), bias=0.5)(x).squeeze()
    # centre: all 9 pixels; corner (0, 0): x[0:2, 0:2].
    assert y[1, 1].item() == 36.5 and y[0, 0].item() == 0 + 1 + 3 + 4 + 0.5
    assert y[2, 2].item() == 4 + 5 + 7 + 8 + 0.5


def test_max_pool_same_pads_with_minus_inf():
    x = -(grid(3, 3) + 1)  # [[-1, -2, -3], [-4, -5, -6], [-7, -8, -9]]
    seq, _ = build_stack([POOL], (1, 3, 3))
    # pads (0, 1): the last window sees only x[2, 2] and the padding, which never wins.
    assert seq(x).squeeze().tolist() == [[-1, -3], [-7, -9]]


@pytest.mark.parametrize("pool, stride, n", [(2, 1, 4), (3, 1, 4), (3, 2, 7), (2, 2, 5), ([2, 3], 1, 5)])
def test_max_pool_same_matches_explicit_padding(pool, stride, n):
    x = torch.randn(2, 3, n, n + 1)
    seq, _ = build_stack([{"kind": "max-pool", "pool": pool, "stride": stride, "padding": "same"}], (3, n, n + 1))
    kh, kw = (pool, pool) if isinstance(pool, int) else pool
    (t, b), (l, r) = same_pads(n, kh, stride), same_pads(n + 1, kw, stride)
    ref = F.max_pool2d(F.pad(x, (l, r, t, b), value=float("-inf")), (kh, kw), stride)
    assert torch.equal(seq(x), ref)


# -- Conv2DTranspose as TF computes it -----------------------------------------------------------


def test_transpose_same_crops_the_odd_row_at_the_bottom_right():
    w = grid(3, 3)  # kernel values 0..8, one input and one output channel
    seq = single(convT(1, k=3, s=2, a="linear"), (1, 1, 1), w)
    # One pixel of 1: the full output is the kernel (3×3); Keras keeps 1·2 = 2 rows/cols, cropping
    # the odd one at the bottom/right: kernel[0:2, 0:2].
    assert seq(torch.ones(1, 1, 1, 1)).squeeze().tolist() == [[0, 1], [3, 4]]
    # PyTorch's usual stand-in (padding=1, output_padding=1) crops at the top/left instead.
    assert F.conv_transpose2d(torch.ones(1, 1, 1, 1), w, stride=2, padding=1, output_padding=1).squeeze().tolist() == [
        [4, 5], [7, 8]]
    assert transpose_crop(1, 3, 2, "same") == (0, 2)
    assert transpose_crop(1, 4, 2, "same") == (1, 3)  # k − s = 2: one each side


def test_transpose_kernel_smaller_than_stride_fills_with_bias():
    seq = single(convT(1, k=1, s=2, p="valid", a="linear"), (1, 2, 2), torch.full((1, 1, 1, 1), 10.0), bias=1.0)
    y = seq(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    # (2−1)·2 + max(1, 2) = 4: every input pixel at an even position, bias everywhere else.
    assert y.squeeze().tolist() == [[11, 1, 21, 1], [1, 1, 1, 1], [31, 1, 41, 1], [1, 1, 1, 1]]
    same = single(convT(1, k=1, s=2, p="same", a="linear"), (1, 2, 2), torch.full((1, 1, 1, 1), 10.0), bias=1.0)
    assert torch.equal(same(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])), y)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("k, s", [(3, 2), (4, 2), (2, 3), (1, 2), (3, 1), (5, 3), ((2, 5), (3, 2))])
def test_transpose_is_the_adjoint_of_the_conv(padding, k, s):
    """TF's conv_transpose is the gradient of conv2d on an input of the transpose's output size."""
    g = torch.Generator().manual_seed(0)
    seqT, (c, h, w) = build_stack([convT(4, k=k, s=s, p=padding, a="linear")], (3, 3, 5), generator=g)
    mT = seqT[0]
    with torch.no_grad():
        mT.bias.zero_()
    y = torch.randn(2, 3, 3, 5, generator=g)
    x = torch.randn(2, c, h, w, generator=g, requires_grad=True)
    fwd = KerasConv2d(c, 3, k, s, padding)  # conv weight (out=3, in=4, kh, kw) is mT.weight as it is
    with torch.no_grad():
        fwd.weight.copy_(mT.weight)
        fwd.bias.zero_()
    assert fwd(x).shape == y.shape
    (grad,) = torch.autograd.grad((fwd(x) * y).sum(), x)
    torch.testing.assert_close(mT(y), grad, rtol=1e-5, atol=1e-5)


# -- flatten / reshape in Keras' (H, W, C) order -------------------------------------------------


def test_flatten_is_hwc_order():
    c, h, w = 2, 2, 3
    x = torch.tensor([[[[100 * i + 10 * j + ch for j in range(w)] for i in range(h)] for ch in range(c)]],
                     dtype=torch.float32)
    seq, shape = build_stack([{"kind": "flatten"}], (c, h, w))
    assert shape == (12,)
    # channel fastest, then width, then height — numpy's order of an (H, W, C) array.
    assert seq(x).squeeze().tolist() == [0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121]
    back, shape = build_stack([{"kind": "reshape", "shape": [h, w, c]}], (12,))
    assert shape == (c, h, w)
    assert torch.equal(back(seq(x)), x)


def test_reshape_round_trips_and_infers_minus_one():
    x = torch.randn(3, 4, 5, 6)
    seq, shape = build_stack([{"kind": "flatten"}, {"kind": "reshape", "shape": [5, -1, 4]}], (4, 5, 6))
    assert shape == (4, 5, 6)
    assert torch.equal(seq(x), x)
    # image → image: values keep their (H, W, C) order, so C changes are Keras' too.
    seq, shape = build_stack([{"kind": "reshape", "shape": [6, 5, 4]}], (4, 5, 6))
    assert shape == (4, 6, 5)
    assert torch.equal(seq(x).permute(0, 2, 3, 1).flatten(1), x.permute(0, 2, 3, 1).flatten(1))
    v = torch.randn(2, 7)
    assert torch.equal(build_stack([{"kind": "flatten"}], (7,))[0](v), v)  # a vector stays as it is


def test_up_sample_is_nearest_neighbour():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    seq, _ = build_stack([{"kind": "up-sample", "size": [2, 3]}], (1, 2, 2))
    assert seq(x).squeeze().tolist() == [[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4],
                                         [3, 3, 3, 4, 4, 4]]


@pytest.mark.parametrize("stack, in_shape", [(BLOG, (1, 28, 28)), (VAE_ENC, (1, 28, 28)), (VAE_DEC, (2,))])
def test_reference_stacks_run_and_train(stack, in_shape):
    seq, shape = build_stack(stack, in_shape, generator=torch.Generator().manual_seed(0))
    y = seq(torch.rand(2, *in_shape))
    assert tuple(y.shape[1:]) == shape
    y.sum().backward()
    assert all(p.grad is not None for p in seq.parameters())


# -- modules, names, init ------------------------------------------------------------------------


def test_layout_and_state_dict_names():
    seq, _ = build_stack([conv(4), POOL, {"kind": "flatten"}, "8:relu"], (1, 6, 6))
    kinds = [type(m) for m in seq]
    assert kinds == [KerasConv2d, nn.ReLU, KerasMaxPool2d, nn.Identity, FlattenHWC, nn.Identity, nn.Linear, nn.ReLU]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "6.weight", "6.bias"]
    seq, _ = build_stack([convT(2)], (1, 3, 3))
    assert isinstance(seq[0], nn.ConvTranspose2d) and "conv" not in "".join(seq.state_dict())
    assert list(seq.state_dict()) == ["0.weight", "0.bias"]


def _dense_cfg(enc, dec, init="keras"):
    # Only the fields DenseAutoencoder reads; the Dense specs have .size and .activation too.
    return SimpleNamespace(input_dim=784, encoder=tuple(map(Dense.parse, enc)), decoder=tuple(map(Dense.parse, dec)),
                           activity_l1=0.0, init=init)


def test_dense_stack_matches_dense_autoencoder_names_and_bits():
    enc, dec = ["128:relu", "64:relu", "32:relu"], ["64:sigmoid", "128:tanh", "784:sigmoid"]
    ref = DenseAutoencoder(_dense_cfg(enc, dec), torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    e, e_out = build_stack(enc, (784,), generator=g)
    d, d_out = build_stack(dec, e_out, generator=g)
    assert (e_out, d_out) == ((32,), (784,))
    for mine, theirs in ((e, ref.encoder), (d, ref.decoder)):
        assert [type(m) for m in mine] == [type(m) for m in theirs]
        a, b = mine.state_dict(), theirs.state_dict()
        assert list(a) == list(b) and list(a)[:3] == ["0.weight", "0.bias", "2.weight"]
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_build_stack_does_not_touch_the_global_rng():
    before = torch.get_rng_state()
    build_stack(BLOG, (1, 28, 28), generator=torch.Generator().manual_seed(0))
    build_stack(VAE_DEC, (2,), generator=torch.Generator().manual_seed(0), init="torch")
    assert torch.equal(before, torch.get_rng_state())


def test_keras_init_glorot_with_keras_fans_and_zero_bias():
    seq, _ = build_stack([conv(16), convT(8), {"kind": "flatten"}, "10:linear"], (8, 12, 12),
                         generator=torch.Generator().manual_seed(0))
    c, t, lin = seq[0], seq[2], seq[6]
    # Conv2D kernel (3, 3, 8, 16): fan_in 72, fan_out 144. Conv2DTranspose kernel (3, 3, 8, 16)
    # (kh, kw, out, in): fan_in 72, fan_out 144. Dense 4608 → 10.
    for m, fans in ((c, 72 + 144), (t, 72 + 144), (lin, 8 * 24 * 24 + 10)):
        a = math.sqrt(6 / fans)
        assert m.weight.abs().max() <= a and m.weight.abs().max() > 0.95 * a
        assert torch.count_nonzero(m.bias) == 0
    again, _ = build_stack([conv(16), convT(8), {"kind": "flatten"}, "10:linear"], (8, 12, 12),
                           generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p, q) for p, q in zip(seq.parameters(), again.parameters()))


def test_torch_init_is_pytorchs_default_drawn_from_the_generator():
    with torch.random.fork_rng():
        torch.manual_seed(3)
        ref = [nn.Conv2d(2, 4, 3), nn.ConvTranspose2d(4, 6, (2, 3), stride=2), nn.Linear(6 * 2 * 3, 5)]
    specs = [conv(4, p="valid"), convT(6, k=[2, 3], p="valid"), {"kind": "flatten"}, "5:relu"]
    seq, _ = build_stack(specs, (2, 3, 3), generator=torch.Generator().manual_seed(3), init="torch")
    mine = [seq[0], seq[2], seq[6]]
    for m, r in zip(mine, ref):
        assert torch.equal(m.weight, r.weight) and torch.equal(m.bias, r.bias)
    # Bounds U(±1/√fan_in), fan_in from weight.shape[1]: a ConvTranspose2d counts its *output* channels.
    for m, fan_in in zip(mine, (2 * 9, 6 * 6, 36)):
        bound = 1 / math.sqrt(fan_in)
        assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound
        assert m.bias.abs().max() > 0


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init 'xavier'"):
        build_stack(["4"], (3,), init="xavier")


# -- specs, parsing and errors -------------------------------------------------------------------


def test_specs_defaults_and_round_trips():
    assert Dense(size=32) == Dense(size=32, activation="linear")
    assert str(Dense(size=32, activation="relu")) == "32:relu" == str(Dense.parse(" 32 : relu "))
    with pytest.raises(ConfigError, match="SIZE:ACTIVATION"):  # a forgotten activation is not silently linear
        Dense.parse("32")
    c = Conv2D(filters=8, kernel=3)
    assert (c.stride, c.padding, c.activation) == (1, "valid", "linear")
    p = MaxPool2D()
    assert (p.pool, p.stride, p.padding) == (2, None, "valid")
    assert UpSample2D().size == 2
    for spec in (Dense(size=4, activation="tanh"), Conv2D(filters=2, kernel=[3, 5], stride=[1, 2], padding="same"),
                 Conv2DTranspose(filters=1, kernel=3, stride=2, padding="same", activation="sigmoid"),
                 MaxPool2D(pool=3, stride=2, padding="same"), UpSample2D(size=[2, 3]), Flatten(),
                 Reshape(shape=[7, 7, 64])):
        assert parse_layer(spec.model_dump(mode="json")) == spec
        assert parse_layer(spec) is spec
    assert KINDS == ("dense", "conv2d", "conv2d-transpose", "max-pool", "up-sample", "flatten", "reshape")


def test_specs_are_frozen_and_strict():
    c = Conv2D(filters=8, kernel=3)
    with pytest.raises(ValidationError):
        c.filters = 4
    with pytest.raises(ValidationError):
        Conv2D(filters="8", kernel=3)
    with pytest.raises(ValidationError):
        Conv2D(filters=8, kernel=3, dilation=2)


@pytest.mark.parametrize(
    "bad, words",
    [
        ("relu:32", "SIZE:ACTIVATION"),
        ("0:relu", "SIZE:ACTIVATION"),
        ("32:swish", "unknown activation 'swish'"),
        ({"kind": "conv"}, "allowed kinds: dense, conv2d, conv2d-transpose, max-pool, up-sample, flatten, reshape"),
        ({"size": 32}, "has no kind"),
        ({"kind": "conv2d", "filters": 3}, "kernel: missing"),
        ({"kind": "conv2d", "filters": 3, "kernel": [1, 2, 3]}, "kernel: got [1, 2, 3]; give a positive int or [h, w]"),
        ({"kind": "conv2d", "filters": 3, "kernel": 3, "padding": "full"}, "padding: got 'full'"),
        ({"kind": "conv2d", "filters": 3, "kernel": 3, "dilation": 2}, "dilation: unknown key"),
        ({"kind": "max-pool", "pool": 0}, "pool: got 0"),
        ({"kind": "reshape", "shape": [28, 28]}, "(H, W, C) for an image or (D,)"),
        ({"kind": "reshape", "shape": [-1, 2, -1]}, "at most one may be -1"),
        ({"kind": "dense", "size": 3.5}, "size: got 3.5"),
        (32, "got int"),
    ],
)
def test_parse_errors_are_one_line_config_errors(bad, words):
    with pytest.raises(ConfigError) as exc:
        parse_layer(bad)
    msg = str(exc.value)
    assert "\n" not in msg and words in msg, msg


@pytest.mark.parametrize(
    "specs, in_shape, words",
    [
        (["32:relu"], (1, 28, 28), ["layer 0 (dense)", "(C=1, H=28, W=28)", "add a flatten layer first"]),
        ([conv(8)], (784,), ["layer 0 (conv2d)", "(784,)", "add a reshape layer first", "[28, 28, 1]"]),
        ([{"kind": "flatten"}, POOL], (2, 4, 4), ["layer 1 (max-pool)", "(32,)", "reshape"]),
        ([{"kind": "reshape", "shape": [7, 7, 64]}], (3000,), ["layer 0 (reshape)", "3000 values", "3136"]),
        ([{"kind": "reshape", "shape": [7, -1, 64]}], (3000,), ["not a multiple of 448"]),
        ([conv(8), conv(8, k=5, p="valid")], (1, 4, 4), ["layer 1 (conv2d)", "kernel 5×5", "(C=8, H=4, W=4)",
                                                         "padding 'same'"]),
        ([{"kind": "max-pool", "pool": 3}], (1, 2, 9), ["pool 3×3", "smaller pool"]),
    ],
)
def test_misfit_layers_raise_one_line_value_errors(specs, in_shape, words):
    with pytest.raises(ValueError) as exc:
        build_stack(specs, in_shape)
    msg = str(exc.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_error_label_names_the_stack():
    with pytest.raises(ValueError, match=r"^decoder layer 2 \(dense\)"):
        stack_shapes(["16:linear", {"kind": "reshape", "shape": [4, 4, 1]}, "8:linear"], (8,), label="decoder layer")
