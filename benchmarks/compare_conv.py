"""The new families' presets in ``benchmarks.compare``: aelab vs Keras 3 / TensorFlow vs a plain PyTorch loop.

Used by ``python -m benchmarks.compare --models presets`` (all of :data:`PRESETS`: the Keras-blog conv
AE, keras.io's denoiser and VAE, pytorch/examples' VAE) or ``--models keras-blog-conv,pytorch-vae,…``
(any preset the dense fast path does not train: ``aelab presets``). For each preset, in one process,
on the same data (MNIST ÷ 255, the first ``--conv-limit`` training images, the first
``--conv-test-limit`` test images for validation; a denoising preset's inputs noisy as its config
draws them, its targets clean, and the same noisy inputs for every framework), the frameworks are
**interleaved epoch by epoch** (aelab, aelab on the other thread count, Keras, torch, then the next
epoch, who goes first rotating), so a drift of the machine's speed hits all of them alike:

* **aelab** — the preset's :class:`~aelab.config.RunConfig` (``load_preset``), trained by the engine's
  autograd path (``PlainStepper`` + ``engine.fit``, what ``aelab train --preset`` runs) under aelab's
  thread policy (``engine/steppers.py``, ``_default_threads``);
* **aelab alt** — the same on the other thread count: one thread where the policy gives all cores
  (models with image layers), all cores where it gives one (dense models: pytorch/examples' VAE);
* **keras** — the same architecture built from the preset's layer specs with Keras layers
  (``Conv2D``, ``MaxPooling2D(padding="same")``, ``UpSampling2D``, ``Conv2DTranspose``, ``Flatten``,
  ``Reshape``, ``Dense``), Glorot-uniform kernels and zero biases (Keras' defaults; a preset with
  ``init = "torch"`` gets aelab's initial weights instead, PyTorch's init, as its reference has), Adam.
  The AEs: ``compile(optimizer="adam", loss="binary_crossentropy")`` + ``fit(x_in, x, batch_size,
  shuffle=True, validation_data=(x_test_in, x_test))`` (x_in noisy for the denoiser). The VAEs:
  keras.io's ``VAE(keras.Model)`` with its custom ``train_step`` — reconstruction = the per-image sum
  of BCE, KL = the per-image sum of −½(1 + log σ² − μ² − σ²), each reduced as the preset's
  ``reduction`` says (``sum_mean``: mean over the batch, keras.io; ``sum``: summed over the batch,
  pytorch/examples), total = their sum — and the same ``test_step`` for validation; its trackers
  report per image, weighted by batch size, so the epoch's loss is the mean over images as aelab
  reports it (keras.io's unweighted Mean differs only through the last, smaller batch);
* **torch** — what one writes in plain PyTorch: ``DataLoader(TensorDataset)``, ``nn.Sequential`` of
  ``nn.Conv2d`` / ``nn.MaxPool2d`` / ``nn.Upsample`` / ``nn.ConvTranspose2d`` / ``nn.Linear`` (NCHW,
  PyTorch's default memory format), TF's asymmetric "same" written out (``nn.ZeroPad2d``, a −inf pad
  before pooling, a crop after a transposed conv) so that it is Keras' model, ``nn.Flatten`` /
  ``nn.Unflatten`` (CHW order: the dense weights next to them are permuted from aelab's HWC order),
  autograd, PyTorch's default threads. The Keras-style presets: BCE from logits, ``torch.optim.Adam``
  with Keras' ε = 1e-7. pytorch/examples' VAE (``reduction = "sum"``, ``loss = "torch_bce"``): its
  ``vae/main.py`` loop as written — ``F.binary_cross_entropy(recon, x, reduction="sum")`` + KLD,
  ``torch.randn_like`` for ε, ``torch.optim.Adam(lr=1e-3)`` (PyTorch's ε = 1e-8), ``model.eval()`` and
  ``torch.no_grad()`` for the test pass — reading tensors instead of torchvision's per-image
  ``ToTensor`` (which only makes the example slower). It starts from aelab's initial weights.

Seconds per epoch: wall time of one epoch including its validation pass, median over epochs 2..N
(epoch 1 of Keras traces and compiles its ``tf.function``\\ s). Final losses: the last epoch's mean
training loss and validation loss. Different frameworks draw different initial weights (Keras),
shuffles and ε, so their losses only have to be close.

**Same-start check** (``--same-init-epochs``, 0 to skip): aelab's initial weights are copied into the
Keras model (conv kernels ``(out, in, kh, kw)`` → ``(kh, kw, in, out)`` and transposed-conv kernels
``(in, out, kh, kw)`` → ``(kh, kw, out, in)``, both by ``permute(2, 3, 1, 0)``; dense kernels = ``weight.T``;
aelab's Flatten/Reshape already use Keras' (H, W, C) order), both train without shuffling on the same
batches (the denoiser on the same noisy inputs), and the Keras VAE takes aelab's ε (each batch's ε
drawn as aelab's loop draws it, passed to ``train_step`` as a second input; the validation ε
likewise). Per-epoch train and validation losses of the two must then agree to float rounding
(float32; oneDNN in both).
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

#: The new families' presets, what ``--models presets`` runs.
PRESETS = ("keras-blog-conv", "keras-io-denoiser", "keras-io-vae", "pytorch-vae")


def is_conv_preset(name: str) -> bool:
    """A preset the dense fast path does not train (image layers, or a family such as the VAE that
    lives on the autograd path); the others are the study rows' kind."""
    from aelab.models import family_of
    from aelab.presets import load_preset, preset_names

    if name not in preset_names():
        return False
    m = load_preset(name).model
    return not m.is_dense() or not family_of(m).supports_fast(m)


def _median_skip_first(xs):
    xs = list(xs)
    return statistics.median(xs[1:] if len(xs) > 1 else xs)


# -- the run config and its data --------------------------------------------------------------------
def preset_config(name: str, limit: int, test_limit: int | None):
    from aelab.presets import load_preset

    cfg = load_preset(name)
    # Keras' Adam on every side, as these timings were always taken: the keras-blog presets now train with
    # their tutorial's Adadelta, and the three implementations build their optimizer from Adam's settings
    over = {"data.limit": limit, "train.optimizer": "keras_adam", "train.lr": 1e-3}
    if test_limit:
        over["data.test_limit"] = test_limit
    else:
        over["data.test_limit"] = 10_000
    return cfg.with_overrides(over)


# -- aelab ------------------------------------------------------------------------------------------
class AelabRun:
    """The engine's autograd path, one epoch per :meth:`epoch` call (``engine.fit`` resumed from its state)."""

    def __init__(self, cfg, data, num_threads: int | None = None, shuffle: bool | None = None):
        from aelab.engine.steppers import PlainStepper
        from aelab.runs import spec_of

        t = cfg.train
        self.cfg = cfg
        self.stepper = PlainStepper(spec_of(cfg), t.lr, t.beta1, t.beta2, t.eps, "cpu", num_threads=num_threads)
        self.d = data.train_data(cfg, torch.device("cpu"))
        self.d.train_inputs(0), self.d.val_inputs()  # a denoiser's noise, drawn before the clock starts
        #: the intra-op threads its steps run on (the policy's 0 = the process's setting)
        self.threads = self.stepper.threads.n or torch.get_num_threads()
        self.shuffle = t.shuffle if shuffle is None else shuffle
        self.st = None
        self.secs: list[float] = []

    def epoch(self) -> None:
        from aelab.engine.loop import fit

        t = self.cfg.train
        done = 0 if self.st is None else self.st.epoch
        t0 = time.perf_counter()
        self.st = fit(self.stepper, [self.d], epochs=done + 1, batch_size=t.batch_size, seed=t.seed,
                      shuffle=self.shuffle, state=self.st, progress=False)
        self.secs.append(time.perf_counter() - t0)

    def result(self) -> dict:
        h = self.st.histories[0]
        return {"epoch_seconds": self.secs, "loss": h.loss, "val_loss": h.val_loss,
                "terms": h.terms, "val_terms": h.val_terms}


# -- Keras --------------------------------------------------------------------------------------------
def _keras_layers(specs):
    from keras import layers

    from aelab.models.layers import pair, parse_layer

    out = []
    for s in map(parse_layer, specs):
        k = s.kind
        if k == "dense":
            out.append(layers.Dense(s.size, activation=s.activation))
        elif k == "conv2d":
            out.append(layers.Conv2D(s.filters, pair(s.kernel), strides=pair(s.stride), padding=s.padding,
                                     activation=s.activation))
        elif k == "conv2d-transpose":
            out.append(layers.Conv2DTranspose(s.filters, pair(s.kernel), strides=pair(s.stride), padding=s.padding,
                                              activation=s.activation))
        elif k == "max-pool":
            out.append(layers.MaxPooling2D(pair(s.pool), strides=None if s.stride is None else pair(s.stride),
                                           padding=s.padding))
        elif k == "up-sample":
            out.append(layers.UpSampling2D(pair(s.size)))
        elif k == "flatten":
            out.append(layers.Flatten())
        elif k == "reshape":
            out.append(layers.Reshape(tuple(s.shape)))
        else:  # pragma: no cover
            raise ValueError(k)
    return out


def _hwc(shape):
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)


class _Timer:
    def __init__(self):
        import keras

        class T(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.secs: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.secs.append(time.perf_counter() - self._t0)

        self.cb = T()


def _keras_vae_class():
    import keras
    import tensorflow as tf
    from keras import ops

    class VAE(keras.Model):
        """keras.io's VAE: the encoder gives (z_mean, z_log_var); z = z_mean + exp(½ z_log_var)·ε."""

        def __init__(self, encoder, decoder, seed, batch_sum=False, **kw):
            super().__init__(**kw)
            self.encoder, self.decoder = encoder, decoder
            self.batch_sum = batch_sum
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.total_loss_tracker = keras.metrics.Mean(name="loss")
            self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
            self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

        @property
        def metrics(self):
            return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

        def _vae_losses(self, data):
            # data: images, or (images, ε) for the same-start check (ε drawn as aelab's loop draws it)
            if isinstance(data, (tuple, list)):
                x, eps = data[0], (data[1] if len(data) > 1 and data[1] is not None else None)
            else:
                x, eps = data, None
            z_mean, z_log_var = self.encoder(x)
            if eps is None:
                eps = keras.random.normal(shape=ops.shape(z_mean), seed=self.seed_generator)
            z = z_mean + ops.exp(0.5 * z_log_var) * eps
            reconstruction = self.decoder(z)
            # keras.io: ops.sum(keras.losses.binary_crossentropy(x, reconstruction), axis=(1, 2)) on
            # (B, 28, 28, 1) images, where that loss' mean over the last axis (one channel) is the
            # per-pixel value itself; ops.binary_crossentropy is that per-value BCE (through the
            # sigmoid's logits, as the loss takes it) for a dense VAE's (B, 784) as well.
            bce = ops.binary_crossentropy(x, reconstruction)
            rec_per_image = ops.sum(bce, axis=tuple(range(1, len(bce.shape))))
            kl_per_image = ops.sum(-0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var)), axis=1)
            reduce = ops.sum if self.batch_sum else ops.mean  # pytorch/examples sums over the batch
            return x, reduce(rec_per_image), reduce(kl_per_image)

        def _track(self, x, rec, kl):
            n = ops.cast(ops.shape(x)[0], "float32")  # batch-size weighted: the mean over images
            if self.batch_sum:  # reported per image, as pytorch/examples prints it (and aelab)
                rec, kl = rec / n, kl / n
            self.total_loss_tracker.update_state(rec + kl, sample_weight=n)
            self.reconstruction_loss_tracker.update_state(rec, sample_weight=n)
            self.kl_loss_tracker.update_state(kl, sample_weight=n)
            return {m.name: m.result() for m in self.metrics}

        def train_step(self, data):
            with tf.GradientTape() as tape:
                x, rec, kl = self._vae_losses(data)
                total_loss = rec + kl
            grads = tape.gradient(total_loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            return self._track(x, rec, kl)

        def test_step(self, data):
            x, rec, kl = self._vae_losses(data)
            return self._track(x, rec, kl)

    return VAE


class KerasRun:
    """The preset's architecture in Keras 3; one epoch per :meth:`epoch` call (``fit(initial_epoch=e)``)."""

    def __init__(self, cfg, x_tr: np.ndarray, x_te: np.ndarray, shuffle: bool = True, seed: int | None = None,
                 x_tr_in: np.ndarray | None = None, x_te_in: np.ndarray | None = None):
        """``x_tr``/``x_te``: the targets (clean); ``x_tr_in``/``x_te_in``: the inputs when they differ
        (a denoiser's noisy images), else the targets."""
        import keras

        m, t = cfg.model, cfg.train
        keras.utils.set_random_seed(t.seed if seed is None else seed)
        self.cfg, self.shuffle = cfg, shuffle
        in_hwc = _hwc(m.view_shape())  # flat for a dense first layer
        self.x_tr = x_tr.reshape(len(x_tr), *in_hwc)
        self.x_te = x_te.reshape(len(x_te), *in_hwc)
        self.x_tr_in = self.x_tr if x_tr_in is None else x_tr_in.reshape(len(x_tr_in), *in_hwc)
        self.x_te_in = self.x_te if x_te_in is None else x_te_in.reshape(len(x_te_in), *in_hwc)
        self.vae = m.family == "vae"
        if self.vae and (x_tr_in is not None or x_te_in is not None):
            raise ValueError("this benchmark's Keras VAE trains clean → clean")
        opt = keras.optimizers.Adam(learning_rate=t.lr, beta_1=t.beta1, beta_2=t.beta2, epsilon=t.eps)
        if self.vae:
            ei = keras.Input(in_hwc)
            h = ei
            for layer in _keras_layers(m.encoder):
                h = layer(h)
            z_mean = keras.layers.Dense(m.latent, name="z_mean")(h)
            z_log_var = keras.layers.Dense(m.latent, name="z_log_var")(h)
            self.encoder = keras.Model(ei, [z_mean, z_log_var], name="encoder")
            li = keras.Input((m.latent,))
            h = li
            for layer in _keras_layers(m.decoder):
                h = layer(h)
            self.decoder = keras.Model(li, h, name="decoder")
            self.model = _keras_vae_class()(self.encoder, self.decoder, seed=t.seed,
                                            batch_sum=getattr(m, "reduction", "sum_mean") == "sum")
            self.model.compile(optimizer=opt)
        else:
            if t.loss != "bce" or m.family != "ae" or getattr(m, "activity_l1", 0):
                raise ValueError("this benchmark's Keras AE is the plain autoencoder with Keras' BCE")
            self.model = keras.Sequential([keras.Input(in_hwc)] + _keras_layers(m.encoder) + _keras_layers(m.decoder))
            self.model.compile(optimizer=opt, loss="binary_crossentropy")
        self.timer = _Timer().cb
        self.loss: list[float] = []
        self.val_loss: list[float] = []
        self.terms: dict[str, list[float]] = {}
        self.e = 0

    def weighted_layers(self):
        """Keras layers with weights, in the order aelab's modules hold theirs."""
        if self.vae:
            enc = [l for l in self.encoder.layers if l.weights]
            # encoder stack, then z_mean, z_log_var (as aelab's VAEEncoder: features, mu, logvar)
            return enc + [l for l in self.decoder.layers if l.weights]
        return [l for l in self.model.layers if l.weights]

    def set_weights_from(self, torch_model) -> float:
        """Copy an aelab model's weights into this Keras model; returns the max |Δ| of the two
        models' outputs on a few test images afterwards (a check of the copy)."""
        mods = [m for m in torch_model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
        kl = self.weighted_layers()
        if len(mods) != len(kl):
            raise RuntimeError(f"{len(mods)} aelab layers with weights but {len(kl)} Keras layers")
        for m, layer in zip(mods, kl):
            w = m.weight.detach()
            kernel = w.t() if isinstance(m, nn.Linear) else w.permute(2, 3, 1, 0)
            layer.set_weights([kernel.contiguous().numpy(), m.bias.detach().numpy()])
        x = self.x_te[:16]
        xt = torch.from_numpy(x.reshape(len(x), -1))
        with torch.no_grad():
            torch_model.eval()
            if self.vae:
                mu, logvar = torch_model.encoder.distribution(xt)
                kmu, klv = self.encoder(x)
                out_t = torch.cat([mu, logvar, torch_model.decoder(mu)], 1).numpy()
                out_k = np.concatenate([np.asarray(kmu), np.asarray(klv),
                                        np.asarray(self.decoder(np.asarray(kmu))).reshape(len(x), -1)], 1)
            else:
                out_t = torch_model(xt).recon.numpy()
                out_k = np.asarray(self.model(x)).reshape(len(x), -1)
        return float(np.abs(out_t - out_k).max())

    def epoch(self, eps_train: np.ndarray | None = None, eps_val: np.ndarray | None = None) -> None:
        bs = self.cfg.train.batch_size
        if self.vae:
            # ε, when given, travels as the "targets" (y), so a batch is (images, ε)
            hist = self.model.fit(self.x_tr, eps_train, batch_size=bs, epochs=self.e + 1, initial_epoch=self.e,
                                  shuffle=self.shuffle, validation_data=(self.x_te, eps_val), verbose=0,
                                  callbacks=[self.timer])
        else:
            hist = self.model.fit(self.x_tr_in, self.x_tr, batch_size=bs, epochs=self.e + 1, initial_epoch=self.e,
                                  shuffle=self.shuffle, validation_data=(self.x_te_in, self.x_te), verbose=0,
                                  callbacks=[self.timer])
        self.e += 1
        h = hist.history
        self.loss.append(float(h["loss"][-1]))
        self.val_loss.append(float(h["val_loss"][-1]))
        for k in ("reconstruction_loss", "kl_loss", "val_reconstruction_loss", "val_kl_loss"):
            if k in h:
                self.terms.setdefault(k, []).append(float(h[k][-1]))

    def result(self) -> dict:
        return {"epoch_seconds": list(self.timer.secs), "loss": self.loss, "val_loss": self.val_loss,
                "terms": self.terms}


# -- plain PyTorch ----------------------------------------------------------------------------------
class _Crop(nn.Module):
    """Keep rows/columns [0, h) × [0, w) (what a port of TF's transposed-conv "same" needs)."""

    def __init__(self, h0, h1, w0, w1):
        super().__init__()
        self.box = (h0, h1, w0, w1)

    def forward(self, x):
        h0, h1, w0, w1 = self.box
        return x[..., h0:h1, w0:w1]


_ACTS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "linear": nn.Identity, "elu": nn.ELU,
         "selu": nn.SELU, "softplus": nn.Softplus}


def _torch_stack(specs, in_shape, init_mods):
    """nn.Sequential for ``specs`` in plain PyTorch (NCHW), its weights copied from aelab's modules
    ``init_mods`` (in order); returns (sequential, output shape, the last layer's activation name)."""
    from aelab.models.layers import out_shape, pair, parse_layer, same_pads, transpose_crop

    specs = [parse_layer(s) for s in specs]
    mods: list[nn.Module] = []
    shape = tuple(in_shape)
    it = iter(init_mods)
    flat_from = None  # the image shape a preceding Flatten flattened (its dense reads CHW, aelab HWC)
    for i, s in enumerate(specs):
        nxt = out_shape(s, shape)
        k = s.kind
        if k == "conv2d":
            kk, ss = pair(s.kernel), pair(s.stride)
            conv = nn.Conv2d(shape[0], s.filters, kk, stride=ss)
            if s.padding == "same":
                (t, b), (l, r) = same_pads(shape[1], kk[0], ss[0]), same_pads(shape[2], kk[1], ss[1])
                if (t, l) == (b, r):
                    conv.padding = (t, l)
                    mods.append(conv)
                else:
                    mods += [nn.ZeroPad2d((l, r, t, b)), conv]
            else:
                mods.append(conv)
            src = next(it)
            with torch.no_grad():
                conv.weight.copy_(src.weight)
                conv.bias.copy_(src.bias)
        elif k == "conv2d-transpose":
            kk, ss = pair(s.kernel), pair(s.stride)
            conv = nn.ConvTranspose2d(shape[0], s.filters, kk, stride=ss)
            src = next(it)
            with torch.no_grad():
                conv.weight.copy_(src.weight)
                conv.bias.copy_(src.bias)
            h0, h1 = transpose_crop(shape[1], kk[0], ss[0], s.padding)
            w0, w1 = transpose_crop(shape[2], kk[1], ss[1], s.padding)
            full = ((shape[1] - 1) * ss[0] + kk[0], (shape[2] - 1) * ss[1] + kk[1])
            if h1 > full[0] or w1 > full[1]:
                raise ValueError("the plain loop does not implement a kernel smaller than its stride")
            mods += [conv] + ([_Crop(h0, h1, w0, w1)] if (h0, h1, w0, w1) != (0, full[0], 0, full[1]) else [])
        elif k == "max-pool":
            pp = pair(s.pool)
            ss = pair(s.stride if s.stride is not None else s.pool)
            if s.padding == "same":
                (t, b), (l, r) = same_pads(shape[1], pp[0], ss[0]), same_pads(shape[2], pp[1], ss[1])
                if (t, b, l, r) != (0, 0, 0, 0):
                    mods.append(nn.ConstantPad2d((l, r, t, b), float("-inf")))
            mods.append(nn.MaxPool2d(pp, ss))
        elif k == "up-sample":
            mods.append(nn.Upsample(scale_factor=pair(s.size), mode="nearest"))
        elif k == "flatten":
            mods.append(nn.Flatten())
            flat_from = shape if len(shape) == 3 else None
        elif k == "reshape":
            mods.append(nn.Unflatten(1, nxt) if len(nxt) == 3 else nn.Flatten())
        elif k == "dense":
            lin = nn.Linear(shape[0], s.size)
            src = next(it)
            w, b = src.weight.detach().clone(), src.bias.detach().clone()
            if flat_from is not None:  # aelab's columns are in (H, W, C) order, nn.Flatten's in (C, H, W)
                c, h, ww = flat_from
                w = w.view(s.size, h, ww, c).permute(0, 3, 1, 2).reshape(s.size, -1)
                flat_from = None
            nxt_spec = specs[i + 1] if i + 1 < len(specs) else None
            if nxt_spec is not None and nxt_spec.kind == "reshape":
                img = out_shape(nxt_spec, nxt)
                if len(img) == 3:  # aelab's rows are in (H, W, C) order, nn.Unflatten's in (C, H, W)
                    c, h, ww = img
                    w = w.view(h, ww, c, -1).permute(2, 0, 1, 3).reshape(s.size, -1)
                    b = b.view(h, ww, c).permute(2, 0, 1).reshape(-1)
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            mods.append(lin)
        act = getattr(s, "activation", "linear")
        if i < len(specs) - 1 and act != "linear":
            mods.append(_ACTS[act]())
        shape = nxt
    last_act = getattr(specs[-1], "activation", "linear")
    return nn.Sequential(*mods), shape, last_act


class TorchRun:
    """The plain PyTorch loop (NCHW, DataLoader, autograd, torch.optim.Adam); one epoch per call.

    ``x_tr``/``x_te``: the targets; ``x_tr_in``/``x_te_in``: the inputs (a denoiser's noisy images),
    by default the targets. A VAE with ``reduction = "sum"`` is pytorch/examples' ``vae/main.py``:
    its ``loss_function`` (BCE on the sigmoid's output, summed, + KLD) and ``Adam(lr=1e-3)``."""

    def __init__(self, cfg, x_tr: torch.Tensor, x_te: torch.Tensor, x_tr_in: torch.Tensor | None = None,
                 x_te_in: torch.Tensor | None = None):
        from torch.utils.data import DataLoader, TensorDataset

        from aelab.engine.steppers import build_initial_model
        from aelab.runs import spec_of

        m, t = cfg.model, cfg.train
        self.cfg = cfg
        self.vae = m.family == "vae"
        init = build_initial_model(spec_of(cfg))  # aelab's initial weights
        enc_mods = [x for x in (init.encoder.features if self.vae else init.encoder).modules()
                    if isinstance(x, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
        dec_mods = [x for x in init.decoder.modules() if isinstance(x, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
        self.in_shape = tuple(m.view_shape())
        self.enc, enc_shape, _ = _torch_stack(m.encoder, self.in_shape, enc_mods)
        if self.vae:
            # (the encoder's last activation: _torch_stack leaves it out as the "output" one)
            last = getattr(m.encoder[-1], "activation", "linear")
            if last != "linear":
                self.enc.append(_ACTS[last]())
            n_feat = math.prod(enc_shape)
            self.mu, self.logvar = nn.Linear(n_feat, m.latent), nn.Linear(n_feat, m.latent)
            with torch.no_grad():
                for mine, src in ((self.mu, init.encoder.mu), (self.logvar, init.encoder.logvar)):
                    mine.weight.copy_(src.weight)
                    mine.bias.copy_(src.bias)
            self.dec, _, self.out_act = _torch_stack(m.decoder, (m.latent,), dec_mods)
            params = [*self.enc.parameters(), *self.mu.parameters(), *self.logvar.parameters(), *self.dec.parameters()]
        else:
            last = getattr(m.encoder[-1], "activation", "linear")
            if last != "linear":
                self.enc.append(_ACTS[last]())
            self.dec, _, self.out_act = _torch_stack(m.decoder, enc_shape, dec_mods)
            params = [*self.enc.parameters(), *self.dec.parameters()]
        if self.out_act != "sigmoid":
            raise ValueError("the plain loop implements a sigmoid output with BCE")
        #: pytorch/examples' VAE: summed over the batch, BCE on probabilities, its optimizer as written
        self.example_vae = self.vae and getattr(m, "reduction", "sum_mean") == "sum"
        if self.example_vae:
            if t.loss != "torch_bce":
                raise ValueError("pytorch/examples' VAE uses F.binary_cross_entropy (loss = 'torch_bce')")
            self.opt = torch.optim.Adam(params, lr=t.lr)  # vae/main.py: optim.Adam(model.parameters(), lr=1e-3)
        else:
            self.opt = torch.optim.Adam(params, lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps)
        g = torch.Generator()
        g.manual_seed(t.seed)
        torch.manual_seed(t.seed)
        x_tr_in = x_tr if x_tr_in is None else x_tr_in
        self.loader = DataLoader(TensorDataset(x_tr_in, x_tr), batch_size=t.batch_size, shuffle=True, generator=g)
        self.x_te, self.x_te_in = x_te, (x_te if x_te_in is None else x_te_in)
        self.secs: list[float] = []
        self.loss: list[float] = []
        self.val_loss: list[float] = []

    def _loss(self, xb, yb):
        """The batch's objective: a batch mean, or the example VAE's sum over the batch."""
        n = xb.shape[0]
        img = xb.view(n, *self.in_shape)
        if not self.vae:
            logits = self.dec(self.enc(img))
            return F.binary_cross_entropy_with_logits(logits, yb.view(n, *self.in_shape))
        h = self.enc(img)
        mu, logvar = self.mu(h), self.logvar(h)
        if self.example_vae:  # vae/main.py: reparameterize, decode, loss_function
            std = torch.exp(0.5 * logvar)
            z = mu + torch.randn_like(std) * std
            recon = torch.sigmoid(self.dec(z))
            bce = F.binary_cross_entropy(recon.reshape(n, -1), yb, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            return bce + kld
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.dec(z)
        rec = F.binary_cross_entropy_with_logits(logits.reshape(n, -1), yb, reduction="none").sum(1).mean()
        kl = (-0.5 * (1 + logvar - mu.square() - logvar.exp())).sum(1).mean()
        return rec + kl

    def epoch(self) -> None:
        t0 = time.perf_counter()
        tot, n = 0.0, 0
        for m in (self.enc, self.dec):
            m.train()
        for xb, yb in self.loader:
            loss = self._loss(xb, yb)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            # reported per image: the example's printed loss is its sum over the images ÷ their number
            tot += float(loss.detach()) * (1 if self.example_vae else xb.shape[0])
            n += xb.shape[0]
        for m in (self.enc, self.dec):
            m.eval()
        with torch.no_grad():
            v = sum(float(self._loss(self.x_te_in[s:s + 1024], self.x_te[s:s + 1024]))
                    * (1 if self.example_vae else self.x_te[s:s + 1024].shape[0])
                    for s in range(0, self.x_te.shape[0], 1024)) / self.x_te.shape[0]
        self.secs.append(time.perf_counter() - t0)
        self.loss.append(tot / n)
        self.val_loss.append(v)

    def result(self) -> dict:
        return {"epoch_seconds": self.secs, "loss": self.loss, "val_loss": self.val_loss}


# -- one preset ---------------------------------------------------------------------------------------
def aelab_eps(cfg, n: int, n_val: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The ε aelab's loop draws for ``epoch`` (per batch, from the run's seed) and the ε its
    evaluation draws (one generator over the validation chunks), as (n, latent), (n_val, latent)."""
    from aelab.engine.loop import STREAM_EVAL, STREAM_SAMPLE, generator
    from aelab.engine.steppers import EVAL_CHUNK

    t, lat = cfg.train, cfg.model.latent
    bs = t.batch_size
    tr = [torch.randn((min(bs, n - b * bs), lat), generator=generator(t.seed, STREAM_SAMPLE, epoch, b))
          for b in range(math.ceil(n / bs))]
    g = generator(t.seed, STREAM_EVAL)
    va = [torch.randn((min(EVAL_CHUNK, n_val - s), lat), generator=g) for s in range(0, n_val, EVAL_CHUNK)]
    return torch.cat(tr).numpy(), torch.cat(va).numpy()


def _inputs(cfg, cache):
    """(targets, validation targets, inputs, validation inputs) as aelab's loop sees them: a
    denoiser's inputs are its noisy images (drawn once from the run's seed), its targets clean."""
    d = cache.train_data(cfg, torch.device("cpu"))
    return d.x_train, d.x_val, d.train_inputs(0), d.val_inputs()


def run_preset(name: str, epochs: int, limit: int, test_limit: int | None, same_init_epochs: int,
               keras_ok: bool, other_threads: bool = True, log=print) -> dict:
    from aelab.runs import DataCache

    cfg = preset_config(name, limit, test_limit)
    if cfg.data.noise_factor > 0 and cfg.data.noise_mode != "once":
        raise SystemExit(f"{name}: noise drawn per epoch; this benchmark's Keras and torch versions take fixed inputs")
    cache = DataCache()
    x_tr, x_te, x_in, x_te_in = _inputs(cfg, cache)
    n, n_val = x_tr.shape[0], x_te.shape[0]
    noisy = x_in is not x_tr
    runs: dict = {"aelab": AelabRun(cfg, cache)}
    policy = runs["aelab"].threads
    if other_threads and torch.get_num_threads() > 1:
        # the policy's other choice: one thread for image models, all cores for dense ones
        runs["aelab_alt"] = AelabRun(cfg, cache, num_threads=1 if policy > 1 else torch.get_num_threads())
    r: dict = {"preset": name, "family": cfg.model.family, "n_train": n, "n_val": n_val,
               "batch_size": cfg.train.batch_size, "epochs": epochs, "noisy_inputs": noisy,
               "full_epochs": load_preset_epochs(name),
               "threads": {"aelab": policy, "torch": torch.get_num_threads(),
                           **({"aelab_alt": runs["aelab_alt"].threads} if "aelab_alt" in runs else {})}}
    if keras_ok:
        runs["keras"] = KerasRun(cfg, x_tr.numpy(), x_te.numpy(), x_tr_in=x_in.numpy() if noisy else None,
                                 x_te_in=x_te_in.numpy() if noisy else None)
        if cfg.model.init != "keras":  # PyTorch's init, as the reference has it: aelab's initial weights
            r["keras_init"] = "aelab's initial weights"
            runs["keras"].set_weights_from(runs["aelab"].stepper.model)
    runs["torch"] = TorchRun(cfg, x_tr, x_te, x_in if noisy else None, x_te_in if noisy else None)
    order = list(runs)
    for e in range(epochs):
        for k in order[e % len(order):] + order[:e % len(order)]:  # rotate who goes first
            runs[k].epoch()
            res = runs[k]
            last = res.secs[-1] if hasattr(res, "secs") else res.timer.secs[-1]
            loss = (res.st.histories[0].loss[-1] if k.startswith("aelab") else res.loss[-1])
            log(f"[{name}] epoch {e + 1}/{epochs} {k:8s} {last:6.2f} s  loss {loss:.5f}")
    for k, run in runs.items():
        rr = run.result()
        rr["sec_per_epoch"] = _median_skip_first(rr["epoch_seconds"])
        rr["images_per_second"] = n / rr["sec_per_epoch"]
        r[k] = rr
    if "keras" in r:
        r["speedup_vs_keras"] = r["keras"]["sec_per_epoch"] / r["aelab"]["sec_per_epoch"]
    r["speedup_vs_torch"] = r["torch"]["sec_per_epoch"] / r["aelab"]["sec_per_epoch"]
    if keras_ok and same_init_epochs > 0:
        r["same_init"] = same_init_check(cfg, cache, epochs=same_init_epochs, log=log)
    return r


def load_preset_epochs(name: str) -> int:
    """The preset's own epoch count (a full training's length)."""
    from aelab.presets import load_preset

    return load_preset(name).train.epochs


def same_init_check(cfg, cache, epochs: int, log=print) -> dict:
    """aelab and Keras from the same initial weights, the same batches (no shuffle), the same
    inputs (a denoiser's noisy images) and the same ε."""
    x_tr, x_te, x_in, x_te_in = _inputs(cfg, cache)
    noisy = x_in is not x_tr
    a = AelabRun(cfg, cache, shuffle=False)
    k = KerasRun(cfg, x_tr.numpy(), x_te.numpy(), shuffle=False, x_tr_in=x_in.numpy() if noisy else None,
                 x_te_in=x_te_in.numpy() if noisy else None)
    init_diff = k.set_weights_from(a.stepper.model)
    vae = cfg.model.family == "vae"
    out = {"epochs": epochs, "initial_output_max_abs_diff": init_diff, "aelab": {}, "keras": {}}
    for e in range(epochs):
        a.epoch()
        if vae:
            et, ev = aelab_eps(cfg, x_tr.shape[0], x_te.shape[0], e)
            k.epoch(et, ev)
        else:
            k.epoch()
        h = a.st.histories[0]
        log(f"[{cfg.name or 'run'} same start] epoch {e + 1}: loss aelab {h.loss[-1]:.6f} keras {k.loss[-1]:.6f}; "
            f"val aelab {h.val_loss[-1]:.6f} keras {k.val_loss[-1]:.6f}")
    h = a.st.histories[0]
    out["aelab"] = {"loss": h.loss, "val_loss": h.val_loss}
    out["keras"] = {"loss": k.loss, "val_loss": k.val_loss}
    out["max_rel_diff_loss"] = max(abs(x - y) / abs(y) for x, y in zip(h.loss, k.loss))
    out["max_rel_diff_val_loss"] = max(abs(x - y) / abs(y) for x, y in zip(h.val_loss, k.val_loss))
    return out


# -- report ---------------------------------------------------------------------------------------------
BEGIN, END = "<!-- conv-begin -->", "<!-- conv-end -->"
KEYS = ("aelab", "aelab_alt", "keras", "torch")


def _alt(m: dict):
    # runs recorded before the alternative thread count was the policy's other choice: "aelab_1t"
    return m.get("aelab_alt", m.get("aelab_1t"))


def run_summary(res: dict) -> dict:
    """One line of history: when, how busy, and each framework's s/epoch per model."""
    mi = res.get("machine", {})
    any_r = next(iter(res["conv_models"].values()), {})
    return {"date": mi.get("date"), "load_avg_start": mi.get("load_avg_start"), "load_avg_end": mi.get("load_avg_end"),
            "command": res.get("command"), "n_train": any_r.get("n_train"), "n_val": any_r.get("n_val"),
            "epochs": any_r.get("epochs"),
            "note": "; ".join(x for x in (" ".join(f"{k}={v}" for k, v in mi.get("env", {}).items()),
                                          res.get("run_note")) if x) or None,
            "models": {n: {k: r[k]["sec_per_epoch"] for k in (*KEYS, "aelab_1t") if k in r}
                       for n, r in res["conv_models"].items()}}


def with_history(res: dict, previous: dict | None, keep: int = 6) -> dict:
    """``res`` with ``earlier_runs``: the previous result file's run and its own history (newest first)."""
    if previous and previous.get("conv_models"):
        res["earlier_runs"] = ([run_summary(previous)] + list(previous.get("earlier_runs", [])))[:keep]
    return res


def _f(x, nd=2):
    return "–" if x is None else f"{x:.{nd}f}"


def _loss_fmt(x):
    return "–" if x is None else (f"{x:.5f}" if abs(x) < 10 else f"{x:.2f}")


def markdown(res: dict) -> str:
    mi = res["machine"]
    rows = res["conv_models"]
    any_r = next(iter(rows.values()))
    batches = ", ".join(f"{k} {v['batch_size']}" for k, v in rows.items())
    env = " ".join(f"{k}={v}" for k, v in mi.get("env", {}).items())
    lines = [
        BEGIN,
        "## The new families on this CPU: conv AE, denoiser, VAEs",
        "",
        f"Command: `{(env + ' ') if env else ''}{res['command']}`",
        "",
        f"Machine: {mi['cpu']}, {mi['cores']} vCPUs; torch {mi['torch']} ({mi['torch_threads']} intra-op "
        f"threads by default), TensorFlow {mi.get('tensorflow', 'not installed')}, Keras "
        f"{mi.get('keras', 'not installed')}; {mi['date']}. Load average at start "
        f"{', '.join(f'{v:.2f}' for v in mi.get('load_avg_start', []))}, at end "
        f"{', '.join(f'{v:.2f}' for v in mi.get('load_avg_end', []))} (other jobs shared the 2 vCPUs; see the notes).",
        "",
        f"MNIST ÷ 255, the first {any_r['n_train']:,} training images (a slice, to keep the run short), "
        f"validation on the first {any_r['n_val']:,} test images, each preset's batch size "
        f"({batches}), {any_r['epochs']} epochs, the frameworks interleaved epoch by epoch. "
        "keras-io-denoiser: the inputs noisy (noise 0.4 drawn once from the run's seed, as its preset "
        "says), the targets clean, validation noisy → clean — the same noisy arrays for all three "
        "frameworks. s/epoch: wall time of an epoch including its validation pass, median of epochs "
        "2..N. img/s = training images / (s/epoch). ×Keras = Keras' s/epoch ÷ aelab's; ×torch likewise. "
        "aelab = `aelab train --preset`'s engine path under its thread policy (t = its intra-op "
        "threads: all cores for models with image layers, one for dense ones); alt = the same on the "
        "policy's other choice (threads in brackets). Keras: the same layers in Keras 3 (the VAEs with "
        "keras.io's custom `train_step`, summed over the batch for pytorch/examples' VAE, which starts "
        "from aelab's PyTorch-style initial weights); torch: a plain PyTorch loop (NCHW, DataLoader, "
        "autograd, torch.optim.Adam; for pytorch-vae pytorch/examples' `vae/main.py` loss and optimizer) "
        "starting from aelab's initial weights. Losses: mean over the images of the last epoch (train) "
        "and of the validation images; a VAE's is the per-image summed BCE + KL (what keras.io and "
        "pytorch/examples print).",
        "",
        "| preset | aelab t | aelab s/ep | aelab img/s | alt s/ep (t) | Keras s/ep | torch s/ep | ×Keras | ×Keras (alt) | ×torch | loss aelab / alt / Keras / torch | val aelab / alt / Keras / torch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, r in rows.items():
        a = r["aelab"]["sec_per_epoch"]
        alt = _alt(r)
        a1 = alt.get("sec_per_epoch") if alt else None
        k = r.get("keras", {}).get("sec_per_epoch")
        t = r["torch"]["sec_per_epoch"]
        th = r.get("threads", {})
        alt_t = th.get("aelab_alt", th.get("aelab_1t"))

        def last(key, which):
            v = (alt if key == "alt" else r.get(key, {})) or {}
            v = v.get(which)
            return v[-1] if v else None

        losses = " / ".join(_loss_fmt(last(x, "loss")) for x in ("aelab", "alt", "keras", "torch"))
        vals = " / ".join(_loss_fmt(last(x, "val_loss")) for x in ("aelab", "alt", "keras", "torch"))
        lines.append(f"| {name} | {th.get('aelab', '–')} | {_f(a)} | {r['n_train'] / a:,.0f} | "
                     f"{_f(a1)}{f' ({alt_t})' if a1 is not None else ''} | {_f(k)} | {_f(t)} | "
                     f"{_f(k / a if k else None)} | {_f(k / a1 if (k and a1) else None)} | {_f(t / a)} | "
                     f"{losses} | {vals} |")
    ks = {n: r["speedup_vs_keras"] for n, r in rows.items() if "speedup_vs_keras" in r}
    if ks:
        lines += ["", f"Target ≥ 2× Keras per epoch: met for {sum(v >= 2 for v in ks.values())} of {len(ks)} "
                  "presets (" + ", ".join(f"{n} ×{v:.2f}" for n, v in ks.items()) + ")."]
    same = {n: r["same_init"] for n, r in rows.items() if "same_init" in r}
    if same:
        lines += [
            "",
            "### Same start: aelab and Keras from the same initial weights",
            "",
            "aelab's initial weights copied into the Keras model (kernels permuted by `permute(2, 3, 1, 0)`, "
            "dense kernels transposed), no shuffling (the same batches; the denoiser's same noisy inputs), "
            "and for the VAEs aelab's ε fed to the Keras `train_step`/`test_step`. Per-epoch losses:",
            "",
            "| preset | initial outputs max abs Δ | epoch | loss aelab | loss Keras | val aelab | val Keras |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, s in same.items():
            for e in range(s["epochs"]):
                init = f"{s['initial_output_max_abs_diff']:.1e}" if e == 0 else ""
                lines.append(f"| {name if e == 0 else ''} | {init} "
                             f"| {e + 1} | {s['aelab']['loss'][e]:.6f} | {s['keras']['loss'][e]:.6f} | "
                             f"{s['aelab']['val_loss'][e]:.6f} | {s['keras']['val_loss'][e]:.6f} |")
        lines += ["", "Largest relative difference over the epochs: "
                  + "; ".join(f"{n} train {s['max_rel_diff_loss']:.1e}, val {s['max_rel_diff_val_loss']:.1e}"
                              for n, s in same.items()) + "."]
    if res.get("keras_skipped"):
        lines += ["", f"Keras was not run: {res['keras_skipped']}."]
    if res.get("earlier_runs"):
        lines += [
            "",
            "### This run and the earlier ones (same machine, newest first; s/epoch)",
            "",
            "The machine's load changes between runs (load average = runnable processes on its 2 vCPUs; "
            "2 means both busy before this benchmark adds its own); the slice and epochs are the run's "
            "command's (runs that predate the denoiser and pytorch-vae rows took 12,000 training and 10,000 "
            "validation images, 5 epochs, and their alt column was one thread):",
            "",
            "| date | load at start → end | command | preset | aelab | alt | Keras | torch | ×Keras | ×Keras (alt) |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for run in [run_summary(res)] + res["earlier_runs"]:
            ls, le = run.get("load_avg_start") or [float("nan")], run.get("load_avg_end") or [float("nan")]
            for j, (n, m) in enumerate(run["models"].items()):
                a, a1, k, t = m.get("aelab"), _alt(m), m.get("keras"), m.get("torch")
                when = (run["date"] + (f" ({run['note']})" if run.get("note") else "")) if j == 0 else ""
                cmd = run.get("command", "").replace("python -m benchmarks.compare ", "") if j == 0 else ""
                lines.append(f"| {when} | {f'{ls[0]:.1f} → {le[0]:.1f}' if j == 0 else ''} | {f'`{cmd}`' if cmd else ''} "
                             f"| {n} | {_f(a)} | {_f(a1)} | {_f(k)} | {_f(t)} | {_f(k / a if (k and a) else None)} "
                             f"| {_f(k / a1 if (k and a1) else None)} |")
    if res.get("conv_notes"):
        lines += ["", "### Notes", ""] + [f"- {x}" for x in res["conv_notes"]]
    lines.append(END)
    return "\n".join(lines) + "\n"


def merge_markdown(existing: str, section: str) -> str:
    """``existing`` with its conv section replaced by ``section`` (appended when it has none)."""
    if BEGIN in existing and END in existing:
        a = existing.index(BEGIN)
        b = existing.index(END) + len(END)
        return existing[:a] + section.rstrip("\n") + existing[b:]
    return existing.rstrip("\n") + "\n\n" + section


def conv_section(existing: str) -> str | None:
    if BEGIN in existing and END in existing:
        return existing[existing.index(BEGIN):existing.index(END) + len(END)] + "\n"
    return None


NOTES = [
    "Environment: `.venv-bench` (torch 2.13.0 CPU, TensorFlow CPU 2.21 with Keras 3, `pip install -e .`). "
    "Since 2026-11-27 17:00 UTC `benchmarks/compare.py` gives its process the environment the `aelab` "
    "command gives itself: `OMP_WAIT_POLICY=PASSIVE` (set before PyTorch loads) and glibc told to keep "
    "freed memory (`aelab._malloc`, `--allocator-default` leaves it out). Both apply to the aelab, alt and "
    "torch columns; Keras/TensorFlow uses neither OpenMP nor glibc's malloc for its tensors. This VM's "
    "speed drifts by tens of % within an hour (Keras' own epoch of the conv AE took 1.26 s in one run "
    "and 1.56–1.80 s in the runs 20–60 minutes later, same command), so only ratios from one run "
    "compare, and the history table below is the spread.",
    "Freed memory kept (`aelab/_malloc.py`: glibc's mmap threshold raised to its largest allowed value, "
    "32 MiB, and its trim threshold to 1 GiB, through `mallopt` in the `aelab` process and the "
    "variables for the worker processes it starts). PyTorch's CPU allocator keeps nothing, and glibc "
    "hands blocks above 128 kB back to the OS when they are freed, so every step page-faulted its "
    "activations and gradients back in, zero-filled. Measured with `python -m benchmarks.conv_steps "
    "--threads 2` in alternating processes (quiet VM, PASSIVE), ms per step, the thresholds set "
    "through the environment (`MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296`): "
    "conv AE 33.2/39.1 → 21.6/27.5, denoiser 84.2/92.2 → 51.2/59.4, keras.io VAE 80.0/92.4 → 68.7/68.0, "
    "pytorch-vae unchanged (7.3/8.1 → 7.6/7.0). With the mmap threshold at 32 MiB (the largest `mallopt` "
    "takes on 64-bit, what `aelab._malloc` sets) and the trim threshold raised: conv AE 26.0–26.4 ms, "
    "denoiser 53.2–55.7; the trim threshold alone was slower (57–63 and 116–167, while another job ran), "
    "the mmap threshold alone 40–48 and 80–102. Same losses to the last bit. (The previous session "
    "measured the 4 GiB setting at load 7–10 and could not tell it from the drift.) Transparent huge "
    "pages for PyTorch's blocks (`THP_MEM_ALLOC_ENABLE=1`) on top: no gain (conv AE 24.5–28.7 vs "
    "23.6–26.5 ms).",
    "This session's five runs of this command on 2026-11-27, medians of epochs 2–4, ×Keras for conv AE / "
    "denoiser / keras.io VAE / pytorch-vae (alt = the other thread count): 16:59 UTC, before the changes "
    "below, default environment, load 0.4: ×1.27 / 1.26 / 0.97 / 1.23 (pytorch-vae on 2 threads ×1.69); "
    "17:08, PASSIVE + freed memory kept, while another job used a core (load 1.8): ×0.58 / 0.83 / 0.97 / "
    "1.20; 17:21, + the one-channel kernels: ×1.18 / 1.04 / 0.82 / 1.44; 17:41, + the vectorised BCE: "
    "×1.17 / 0.94 / 0.81 / 1.70; 17:57 (the table above): ×1.10 / 0.97 / 0.99 / 1.24. Keras' own conv-AE "
    "epoch went from 1.17 s at 16:59 to 1.49–1.74 s in the later runs: the VM slowed down by a third "
    "within the hour, and the ratios moved within their earlier band (×0.76–1.14 at load ≤ 2 in the "
    "previous session). So the interleaved epochs do not resolve this session's per-step gains below; "
    "the in-process A/B measurements (the same steps, variants interleaved in one process) do.",
    "One-output-channel convolutions by aelab's own C kernels (`models/conv1.py`, `engine/_kernels.c`'s "
    "`conv1_*`: the last layer of all three image models, `Conv2D(1, 3)` or, for the VAE, a stride-1 "
    "`Conv2DTranspose(1, 3)`, which is the convolution with the flipped kernel). oneDNN vectorises "
    "over output channels, of which there is one; these kernels vectorise over the 16 or 32 input "
    "channels of a pixel (AVX-512 via GCC's vector types), split the batch between the intra-op "
    "threads (ctypes releases the GIL), and sum in an order that does not depend on the split. One "
    "thread, 128 images of 28×28, C → 1: forward 4.3 → 1.4 ms (C = 16) and 8.0 → 1.9 ms (C = 32), "
    "input + kernel gradients 6.3 → 2.2 and 8.3 → 2.6 ms. In a whole step (in-process A/B, "
    "`OMP_WAIT_POLICY=PASSIVE python -m benchmarks.conv1_ab --threads 1` and `--threads 2`): conv AE 34.7 → 32.1 ms on 1 thread and 32.5 → 29.7 on 2, "
    "denoiser 73.6 → 61.8 and 66.8 → 58.4, keras.io VAE 95.5 → 87.6 on 1 thread and within noise on 2. "
    "Equal to oneDNN's to float rounding (tests/models/test_conv1.py: against float64, against the layers "
    "with PyTorch's convolution, thread counts bit-identical, the second derivative through PyTorch).",
    "PyTorch's BCE forward (pytorch-vae's loss) computed with vectorised logs (`losses._TorchBCE`): "
    "its CPU kernel is a scalar loop (3.2 ms per 128×784 batch against 0.38 ms); the backward is "
    "autograd's own kernel, so training gives the same bits; the values agree to an ulp (98 % exactly).",
    "Threads and the wait policy, measured again on a quiet VM (`python -m benchmarks.conv_steps "
    "--threads 2 --keep-freed-memory`, ms per step, two processes each; 'hog' = a busy loop on one "
    "core): quiet — libgomp's default policy conv AE 19.1–21.6, denoiser 38.5–59.8, pytorch-vae "
    "5.3–7.2; PASSIVE 22.6–25.5, 46.5–51.5, 7.8–8.3; `GOMP_SPINCOUNT=10000` 22.4–24.2, 39.5–50.1, "
    "5.7–5.8; with the hog — default 86–111, 134–151, 14–27; PASSIVE 49–50, 79–82, 8.4–9.2; "
    "SPIN10k 81–86, 107–119, 20–27. PASSIVE costs ~10–15 % on an idle CPU and saves 40–70 % on a "
    "shared one: it stays the `aelab` command's default. pytorch/examples' VAE stays on one thread "
    "(in-process, PASSIVE: 5.85 ms on 1 thread vs 6.41 on 2; epochs of 6,000 images 0.29–0.43 s on "
    "either): two threads pay for it only with spinning OpenMP threads, which collapse under load. "
    "Earlier measurements (load 7–10): default wait policy conv AE 120–154 ms on 1 thread vs 774–995 "
    "on 2; PASSIVE 111–165 vs 153–183. A conv result depends on the thread count (oneDNN splits its "
    "reductions per thread): the aelab and alt losses agree to rounding, not bit for bit. Keras draws "
    "its own initial weights (except for pytorch-vae), shuffles and ε, so its final losses differ "
    "from aelab's by a few % after a few epochs on a slice; the same-start table is the like-for-like "
    "check.",
    "`torch.compile` of the model's forward (autograd then runs the compiled backward), "
    "`python -m benchmarks.conv_steps --threads 1 --compile --presets keras-blog-conv,keras-io-vae,pytorch-vae` "
    "(load ~8): conv AE 104 → 210 ms per step, keras.io VAE 176 → 261 ms, pytorch-vae 9.4 → 10.3 ms — "
    "slower in every case, before its compile time (cold: 75 s for the conv AE, 83 s for the VAE, 31 s "
    "for pytorch-vae; a few seconds from inductor's on-disk cache). Over the presets' full trainings "
    "(50, 30 and 10 epochs of 60,000 images) it would lose 2,494 s, 1,279 s and 5 s; it also moves the "
    "VAE's loss in the 5th digit after 40 steps (261.053 → 261.049). Not adopted.",
    "Where the step goes, before this session's kernels (torch.profiler, 20 steps on one thread, self time of the ops): convolution "
    "kernels (oneDNN forward + backward) 57 % of the conv AE's step, 59 % of the denoiser's, 69 % of the "
    "keras.io VAE's; then ReLU backward (7 %), max-pooling and up-sampling (~10 % together), and for the "
    "VAE the pads that crop its transposed convs to TensorFlow's size (fill + copy, ~10 %).",
    "Is 2× Keras reachable for the image models on this CPU? (Written before the one-channel kernels and the allocator setting, which took about a tenth and a third off the conv AE's step; the profile after them, conv AE on one thread, 36 ms per step under the profiler: oneDNN's convolutions 12.8 ms, ReLU backward 3.0, max-pooling 5.1 and up-sampling 2.9 forward + backward, the one-channel layer 5.4, ReLU forward + bias adds 2.7.) Not by trimming the rest of the step: TensorFlow "
    "2.21 runs the same oneDNN convolutions (\"oneDNN custom operations are on\"), also in NHWC, and "
    "those kernels alone are 57–69 % of aelab's step. If everything else in the step cost nothing, "
    "aelab's epoch would take 0.57–0.69 of today's; from the ratios of the quiet runs below (about parity, "
    "×0.76–1.14) that is at best ×1.6–2.0 for the conv AE (share 57 %, quiet ×0.90–1.14) and "
    "×1.1–1.3 for the keras.io VAE (69 %, quiet ×0.76–0.88) — and pooling, up-sampling, activations "
    "and Adam are real work TensorFlow does too. Going past that needs faster convolutions than "
    "oneDNN's for these shapes (its one-output-channel convs, the last layer of every model here, run "
    "at ~6–8 GFLOP/s), i.e. hand-written kernels (the variants tried in the earlier round are listed below).",
    "What TensorFlow does that aelab does not (`ONEDNN_VERBOSE=1` on both): its conv forward is one "
    "oneDNN call with the bias and the ReLU inside (a post-op), and its backward-weights call also "
    "gives the bias gradient; aelab adds the bias and applies the ReLU apart (ReLU forward + bias add "
    "≈ 7 % of the conv AE's step on one thread: 3.5 + 3.4 ms of 107 under the profiler). Fusing them "
    "(a custom autograd function around `torch.ops.mkldnn._convolution_pointwise`) could win those "
    "few % at the price of every conv model's last bits (the bias summed inside the kernel); not "
    "done — it does not change the answer above.",
    "A busy CPU widens the gap: in the run above (default environment) the image models ran at ×0.16–"
    "0.23 Keras on the policy's 2 threads and ×0.64–0.82 on one (alt column); in the PASSIVE run before "
    "it (load 8–9) at ×0.47–0.64 on 2 threads, one thread about as fast; earlier runs at load ≤ 2: "
    "×0.76–1.14. PyTorch's OpenMP steps are fork-join — every op waits for its slowest thread, and a "
    "thread descheduled by another job stalls the op, while the default wait policy's spinning takes "
    "the CPU from the thread it waits for — whereas TensorFlow's work-stealing pool keeps whatever "
    "threads run busy. Since PASSIVE changes no bit (above) and turns the 5–10× collapse into ≤ 1.3×, "
    "the `aelab` command sets `OMP_WAIT_POLICY=PASSIVE` (when unset) before PyTorch loads (its cost on an "
    "idle CPU: see the threads note above).",
    "pytorch/examples' VAE (dense, 784-400-20): before this session aelab's step was 7.9 ms on one "
    "thread at load 3.4 (under `torch.profiler` 13 ms: matmuls 5.8 ms, `F.binary_cross_entropy`'s "
    "scalar CPU kernel 2.3 ms forward, Keras Adam 1.25 ms); with the vectorised BCE forward (note above) "
    "5.85 ms on a quiet VM, now mostly its matmuls (cProfile of an epoch: the five linears' forward "
    "3.8 ms and the backward 4.8 ms per step, Adam 1.4 ms — memory-bound over 2.6 MB of parameters). "
    "Earlier runs against Keras: ×1.36 (default environment, load 2–5), ×0.83 (PASSIVE, load 8–9), "
    "×1.44 and ×1.94 in two runs of it alone.",
    "Earlier round — engine changes (`models/layers.py`, module internals only; per 128-image step on one thread, the old "
    "and new layers interleaved in one process): every image layer computes in channels-last memory "
    "(max-pool 16×28×28 forward 8.4 → 1.2 ms; oneDNN's transposed conv 64→32, 14→28: 38 ms NCHW → 9.7 ms); "
    "a conv's bias added in place after the oneDNN call (the same transposed conv with its bias inside: "
    "31 ms); nearest up-sampling by PyTorch's kernel on channels-last memory instead of expand + reshape "
    "(16×14×14 → 28×28 forward + backward 20.5 → 2.1 ms: the expand's backward is a strided reduction; "
    "the copies are exact, the index arithmetic checked for every factor ≤ 8 and size ≤ 1024, and factors "
    "whose float 1/s rounds down keep expand); a transposed conv's crop as one pad (its backward one padded "
    "copy instead of two zero-filled full-size tensors: 52.8 → 41.7 ms for that layer's forward + "
    "backward); a one-channel input given channels-last strides (else the first conv writes NCHW "
    "and the network mixes layouts: conv AE step 66.9 → 41.1 ms). Whole step on one thread: conv AE "
    "82–111 → 41–44 ms, VAE 195–218 → 103–129 ms. Same function: against the previous layers in "
    "float64 over 208 shapes (conv, transposed conv incl. kernels smaller than the stride, pooling, "
    "up-sampling; outputs and gradients) max |Δ| ≤ 1e-10, and against Keras 3 in float32 "
    "(`benchmarks/keras_layers_check.py`'s cases: every aelab row ≤ 4.8e-7).",
    "Earlier round — tried and dropped (measured, within noise or slower): the bias inside oneDNN for regular convs; "
    "in-place ReLU after a conv; the one-output-channel convs (the last layer of both models) as a conv "
    "with zero-padded filters, as a GEMM + fold, or (transposed) as a conv with the flipped kernel; "
    "cropping a transposed conv through its own padding (+ output_padding after a zero row in front of "
    "the input): exact, up to 30 % faster per layer on 1 thread but slower on 2 for stride 2, and on 2 "
    "threads oneDNN's kernels for it round unlike TensorFlow's — from the same start as Keras, the VAE's "
    "first-epoch loss differed by 2.3e-4 instead of 1.6e-6 (1.0e-6 and 1.7e-6 on 1 thread).",
    "Earlier round — what limits the speed: (1) fresh memory for every activation and gradient (PyTorch's CPU allocator "
    "returns large blocks to the OS, so each step page-faults them back; TensorFlow's BFC allocator keeps "
    "them): with glibc told to keep freed memory (`MALLOC_MMAP_THRESHOLD_=4294967296 "
    "MALLOC_TRIM_THRESHOLD_=4294967296`) the conv AE's step took 10–35 % less in 2 of 3 alternating "
    "process pairs — a process-wide setting, not made here; (2) oneDNN's convs with one output channel "
    "(the last layer of both models) run at ~6 GFLOP/s against ~100 for the wide ones, ~25 % of the "
    "conv AE's step; (3) the transposed convs of the VAE (its 64→32 layer alone ~45 % of the step); "
    "(4) on a shared CPU, PyTorch's spinning OpenMP threads (above): aelab cannot change the wait policy "
    "once PyTorch is loaded, so it belongs in the environment or in the entry point before `import torch`.",
]
