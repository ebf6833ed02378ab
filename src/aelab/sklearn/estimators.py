"""``AutoencoderTransformer``: an aelab autoencoder as a scikit-learn transformer.

``fit(X)`` trains one aelab run — the same config, engine, run directory and finishing as
``aelab train`` — on the arrays ``X`` (through an in-memory data source,
:mod:`aelab.data.arrays`, whose name carries the arrays' SHA-256, so the run's config hash covers
the data), then keeps what the run gave: ``config_`` (the :class:`~aelab.RunConfig` as trained),
``model_`` (the trained torch model, on the CPU), ``scaler_`` (the run's own scaling),
``history_`` and ``metrics_``. ``transform`` gives the family's code (the posterior mean μ of a
VAE: nothing is sampled), ``inverse_transform`` decodes codes, ``score_samples`` scores samples.

The constructor's parameters are the config's, all ``None`` by default, meaning "the preset's, or
aelab's default": a parameter given overrides just that setting. A fit goes into a temporary run
directory that is removed afterwards, or, with ``run_dir=DIR``, into ``DIR/<config hash>``, which
is kept: fitting the same parameters on the same data again reuses the finished run (aelab's
semantics), so a grid search that is run twice trains nothing the second time.

Scaling follows scikit-learn: the estimator applies no scaling of its own to data in [0, 1] — put
the scaler (``MinMaxScaler`` for the default sigmoid model) before it in a ``Pipeline``. When the
data lies outside [0, 1] and the model cannot reproduce it (a sigmoid last layer, or a binary
cross-entropy loss), aelab's own rule applies (:func:`aelab.data.ranges.fit_scaling`): ``minmax``
scaling fitted on ``fit``'s ``X``, recorded in ``scaling_``, applied by ``transform`` and inverted
by ``inverse_transform``, so a sigmoid model's output is always in the data's own range and
meaningful. A linear last layer (``output="linear"``) with ``loss="mse"`` sees the values as
they are.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ..config import RunConfig
from ..data import DataCache, DataOptions, with_overrides
from ..data.arrays import array_source, samples
from ..data.ranges import UNIT_LOSSES, output_range
from ..errors import ConfigError, DataError
from ..losses import kl_normal_elementwise, reconstruction_elementwise
from ..models import FAMILIES, family_of
from ..models.custom import CUSTOM_FAMILIES, use_modules
from ..presets import load_preset
from ..runs.trained import train

#: samples per forward pass in transform, inverse_transform and score_samples (bounds the memory)
BATCH = 1024


class InputError(DataError, ValueError):
    """An ``X`` (or ``Z``) the estimator cannot take: one line naming what is wrong and how to fix
    it. A :class:`ValueError` too, as scikit-learn's own input checks raise."""


def _parameter_error(name: str, value: Any, want: str) -> ConfigError:
    return ConfigError(f"{name}={value!r}: {want}")


class AutoencoderBase(BaseEstimator):
    """What the transformer and the outlier detector share: the config built from the parameters,
    ``fit`` through aelab's training API, and the arrays-in, arrays-out methods."""

    # -- the config -------------------------------------------------------------------------------
    def _base_config(self) -> RunConfig:
        if self.preset is None:
            return RunConfig()
        if not isinstance(self.preset, str):
            raise _parameter_error("preset", self.preset, "give a preset's name (aelab presets lists them) or None")
        return load_preset(self.preset)

    def _overrides(self, base: RunConfig, dataset: str, n_samples: int, sample_shape: tuple[int, ...]) -> dict:
        """The dotted overrides of ``base`` that the parameters ask for, the data source included."""
        ov: dict[str, Any] = {"data.dataset": dataset, "data.limit": None, "data.test_limit": None}
        family = base.model.family if self.family is None else self.family
        if self.modules is not None:
            return self._module_overrides(ov, base, n_samples)
        if family not in FAMILIES:
            raise _parameter_error("family", self.family, f"unknown family; give one of {', '.join(FAMILIES)}")
        if family != base.model.family:
            ov["model.family"] = family
        fields = FAMILIES[family].Config.model_fields
        for name in ("activity_l1", "beta"):
            value = getattr(self, name)
            if value is not None:
                if name not in fields:
                    have = [f for f, fam in FAMILIES.items() if name in fam.Config.model_fields]
                    raise _parameter_error(name, value, f"family {family!r} has no such setting (it applies to "
                                                        f"{', '.join(have) or 'no family'}); leave it None")
                ov[f"model.{name}"] = value
        ov.update(self._layer_overrides(base, family, math.prod(sample_shape)))
        for name, key in (("noise_factor", "data.noise_factor"), ("scaling", "data.scaling"),
                          ("epochs", "train.epochs"), ("loss", "train.loss"), ("lr", "train.lr"),
                          ("seed", "train.seed")):
            value = getattr(self, name)
            if value is not None:
                ov[key] = value
        batch = base.train.batch_size if self.batch_size is None else self.batch_size
        if isinstance(batch, int) and not isinstance(batch, bool) and batch > n_samples:
            batch = n_samples  # as scikit-learn's MLP: a batch never exceeds the samples there are
        ov["train.batch_size"] = batch
        return ov

    def _module_overrides(self, ov: dict, base: RunConfig, n_samples: int) -> dict:
        """The overrides for your own ``modules=(encoder, decoder)``: the ``custom`` family (the plain
        autoencoder's objective) or ``custom_vae``, whose layers are the modules themselves."""
        if not isinstance(self.modules, (tuple, list)) or len(self.modules) != 2:
            raise _parameter_error("modules", self.modules, "give (encoder, decoder), two torch.nn.Module instances")
        use_modules(*self.modules)  # checks them and makes the custom families known
        family = "custom" if self.family is None else self.family
        if family not in CUSTOM_FAMILIES:
            raise _parameter_error("family", self.family, f"your own modules train as {' or '.join(CUSTOM_FAMILIES)}")
        given = [n for n in ("hidden", "code_size", "activation", "preset") if getattr(self, n) is not None]
        if given:
            raise ConfigError(f"{given[0]} builds aelab's own layers, but modules= gives your own; leave it None")
        ov["model.family"] = family
        if self.output is not None:
            ov["model.decoder_output"] = self.output
        for name, key in (("activity_l1", "model.activity_l1"), ("beta", "model.beta"),
                          ("noise_factor", "data.noise_factor"), ("scaling", "data.scaling"),
                          ("epochs", "train.epochs"), ("loss", "train.loss"), ("lr", "train.lr"),
                          ("seed", "train.seed")):
            if getattr(self, name) is not None:
                ov[key] = getattr(self, name)
        batch = base.train.batch_size if self.batch_size is None else self.batch_size
        ov["train.batch_size"] = min(batch, n_samples) if isinstance(batch, int) and not isinstance(batch, bool) else batch
        return ov

    def _layer_overrides(self, base: RunConfig, family: str, n_features: int) -> dict:
        """``model.encoder``/``decoder`` (and ``model.latent``) from ``hidden``, ``code_size``,
        ``activation`` and ``output``; nothing when none is given (the preset's layers, fitted to
        the data's shape as ``aelab train`` fits them)."""
        if all(getattr(self, n) is None for n in ("hidden", "code_size", "activation", "output")):
            return {}
        start = base.model if family == base.model.family else FAMILIES[family].Config()
        latent = "latent" in FAMILIES[family].Config.model_fields
        if not start.is_dense():
            raise ConfigError(f"hidden, code_size, activation and output build dense layers, but the "
                              f"{self.preset or family} model has other layers; leave them None or choose a dense preset")
        enc, dec = list(start.encoder), list(start.decoder)
        hidden0 = [l.size for l in (enc if latent else enc[:-1])]
        code0 = start.latent if latent else enc[-1].size
        act0 = enc[0].activation
        hidden = hidden0 if self.hidden is None else self.hidden
        if isinstance(hidden, int) and not isinstance(hidden, bool):
            hidden = (hidden,)
        if not isinstance(hidden, (tuple, list)) or not all(isinstance(h, (int, np.integer)) and not isinstance(h, bool)
                                                             and h > 0 for h in hidden):
            raise _parameter_error("hidden", self.hidden, "give the hidden layers' sizes as a tuple of positive "
                                                          "ints, such as (128, 64), or () for none")
        if latent and not hidden:
            raise _parameter_error("hidden", self.hidden, f"family {family!r} needs at least one hidden layer before "
                                                          "its latent heads; give one, such as (256,)")
        code = code0 if self.code_size is None else self.code_size
        if not isinstance(code, (int, np.integer)) or isinstance(code, bool) or code <= 0:
            raise _parameter_error("code_size", self.code_size, "give the code's size as a positive int")
        act = act0 if self.activation is None else self.activation
        code_act = (enc[-1].activation if self.activation is None else self.activation) if not latent else None
        out = dec[-1].activation if self.output is None else self.output
        layers_enc = [f"{int(h)}:{act}" for h in hidden] + ([] if latent else [f"{int(code)}:{code_act}"])
        layers_dec = [f"{int(h)}:{act}" for h in reversed(hidden)] + [f"{n_features}:{out}"]
        ov = {"model.encoder": ",".join(layers_enc), "model.decoder": ",".join(layers_dec)}
        if latent:
            ov["model.latent"] = int(code)
        return ov

    # -- fitting ------------------------------------------------------------------------------------
    def _fit(self, X) -> AutoencoderBase:
        x = self._check_input(X, reset=True)
        if len(x) < 2:
            raise InputError(f"X has 1 sample; {type(self).__name__} needs at least 2 to fit (aelab measures the "
                             "fitted model on them)")
        base = self._base_config()
        with array_source(x) as dataset:
            cfg = self._config(base, self._overrides(base, dataset, len(x), tuple(x.shape[1:])), x)
            cache = DataCache(DataOptions(progress=False))
            if self.run_dir is None:
                # no recon.png in a directory removed right after: drawing it is most of a small fit
                with tempfile.TemporaryDirectory(prefix="aelab-sklearn-") as tmp:
                    self._keep(train(cfg, Path(tmp) / "run", data=cache, device=self.device or "auto",
                                     figures=False, modules=self.modules), None)
            else:  # a kept run directory is complete, as aelab train writes it
                run_dir = Path(self.run_dir) / cfg.hash()
                self._keep(train(cfg, run_dir, data=cache, device=self.device or "auto", modules=self.modules),
                           run_dir)
        return self

    @staticmethod
    def _config(base: RunConfig, ov: dict, x: np.ndarray) -> RunConfig:
        """The run's config: ``base`` with the overrides, and aelab's rule for data its model cannot
        reproduce (:func:`aelab.data.ranges.fit_scaling`) decided here rather than in ``fit_config``,
        so no note is printed: ``unit`` scaling of values outside [0, 1] becomes ``minmax`` when the
        last layer or the loss needs [0, 1]. ``scaling_`` records what was used."""
        cfg = with_overrides(base, {**ov, "data.scaling": "minmax"})  # minmax: fit_config leaves it as is
        scaling = ov.get("data.scaling", base.data.scaling)
        if scaling == "unit":
            lo, hi = float(x.min()), float(x.max())
            out = output_range(cfg)
            needs = lo < out[0] or hi > out[1] or (cfg.train.loss in UNIT_LOSSES and (lo < 0.0 or hi > 1.0))
            if (0.0 <= lo and hi <= 1.0) or not needs:
                cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"scaling": "unit"})})
        elif scaling != "minmax":
            cfg = with_overrides(base, ov)
        return cfg

    def _keep(self, run, run_dir: Optional[Path]) -> None:
        """The fitted attributes, from the finished run (while its data source is registered)."""
        self.config_ = run.config
        # the run's identity, taken while its data source is registered: once the source is gone,
        # config_.hash() can no longer see that the data set was registered arrays
        self.config_hash_ = run.config.hash()
        self.model_ = run.model.to("cpu").eval()
        self.scaler_ = run.scaler
        self.scaling_ = run.config.data.scaling
        self.code_kind_ = family_of(run.config.model).code  # "deterministic", "mean" (a posterior) or "discrete"
        self.history_ = run.history
        self.metrics_ = run.metrics
        self.loss_curve_ = list(run.history["loss"])
        self.n_iter_ = len(self.loss_curve_)
        self.n_components_ = int(run.config.model.code_dim)
        self.run_dir_ = run_dir

    # -- arrays in ----------------------------------------------------------------------------------
    def _check_input(self, X, reset: bool) -> np.ndarray:
        """``X`` as float32 samples: ``(N, D)``, or images ``(N, H, W)``/``(N, C, H, W)`` (given as
        such at fit; flat ``(N, D)`` is accepted too after). One line for what cannot be used."""
        ndim = X.ndim if hasattr(X, "ndim") and hasattr(X, "shape") else np.asarray(X).ndim
        name = type(self).__name__
        if ndim in (3, 4):
            x = check_array(X, dtype=(np.float32, np.float64), allow_nd=True, ensure_all_finite=False,
                            input_name="X")
            if reset:
                for attr in ("feature_names_in_",):
                    self.__dict__.pop(attr, None)
                self.n_features_in_ = int(math.prod(x.shape[1:]))
                self.input_shape_ = tuple(int(d) for d in x.shape[1:])
            else:
                want = self.input_shape_
                same = tuple(x.shape[1:]) == want or (x.ndim == 4 and len(want) == 2 and x.shape[1:] == (1, *want))
                if not same:
                    raise InputError(f"X has samples of shape {tuple(x.shape[1:])}, but {name} was fitted on samples "
                                     f"of shape {want}; give (N, {', '.join(map(str, want))}) or flat (N, "
                                     f"{self.n_features_in_})")
        else:
            x = validate_data(self, X, dtype=(np.float32, np.float64), ensure_all_finite=False, reset=reset)
            if reset:
                self.input_shape_ = (int(x.shape[1]),)
        try:
            return samples(x, "X")
        except DataError as err:
            raise InputError(str(err)) from None

    def _scaled(self, X) -> torch.Tensor:
        """``X`` checked against the fit, scaled with the run's own scaling, flat ``(N, D)`` float32."""
        check_is_fitted(self, "model_")
        x = self._check_input(X, reset=False)
        return torch.from_numpy(np.ascontiguousarray(self.scaler_.apply(x)))

    def _batched(self, fn, t: torch.Tensor, width: int) -> np.ndarray:
        with torch.no_grad():
            out = [fn(t[s:s + BATCH]).reshape(len(t[s:s + BATCH]), -1) for s in range(0, len(t), BATCH)]
        return (torch.cat(out) if out else t.new_zeros((0, width))).float().numpy()

    # -- arrays out -----------------------------------------------------------------------------------
    def _encode(self, X) -> np.ndarray:
        t = self._scaled(X)  # checks the fit first
        return self._batched(self.model_.encode, t, self.n_components_)

    def _decode(self, Z) -> np.ndarray:
        check_is_fitted(self, "model_")
        z = check_array(Z, dtype=np.float32, input_name="Z", ensure_all_finite=True)
        if z.shape[1] != self.n_components_:
            raise InputError(f"Z has {z.shape[1]} values per code, but {type(self).__name__} makes codes of "
                             f"{self.n_components_}; give (M, {self.n_components_}), such as transform's output")
        flat = self.scaler_.invert(self._batched(self.model_.decode, torch.from_numpy(z), self.n_features_in_))
        return flat.reshape(len(flat), *self.input_shape_)

    def _score_samples(self, X) -> np.ndarray:
        """Per sample, higher is better: the negated reconstruction error (the config's loss, mean
        over the features, in the scaled values the model sees), or for a model with a posterior
        (a VAE) the ELBO in nats, −(Σ reconstruction + KL(q(z|x) ‖ N(0, I))), with the decoding
        of the posterior mean μ standing in for the expectation over q — deterministic, so a
        sample's score does not depend on the others beside it."""
        t = self._scaled(X)
        loss = self.config_.train.loss
        posterior = None
        if self.code_kind_ == "mean":  # a posterior: the VAE's encoder, or your own modules' model, gives μ, log σ²
            posterior = getattr(self.model_.encoder, "distribution", None) or self.model_.distribution
        out = []
        with torch.no_grad():
            for s in range(0, len(t), BATCH):
                xb = t[s:s + BATCH]
                o = self.model_(xb)
                rec = reconstruction_elementwise(loss, xb, o.recon.reshape(len(xb), -1),
                                                 None if o.logits is None else o.logits.reshape(len(xb), -1))
                if posterior is not None:
                    mu, logvar = posterior(xb)
                    out.append(-(rec.double().sum(dim=1) + kl_normal_elementwise(mu, logvar).double().sum(dim=1)))
                else:
                    out.append(-rec.double().mean(dim=1))
        return torch.cat(out).numpy() if out else np.zeros(0)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False  # the run's seed fixes every random number it draws
        tags.input_tags.allow_nan = False
        return tags


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, AutoencoderBase):
    """An aelab autoencoder as a scikit-learn transformer: ``fit(X)`` trains an aelab run on ``X``,
    ``transform(X)`` gives the codes (a VAE's posterior mean μ), ``inverse_transform(Z)`` decodes
    them, ``score_samples(X)``/``score(X)`` score reconstructions (higher is better).

    Every parameter is ``None`` by default: the preset's setting, or aelab's default (the Keras
    blog's 32-unit relu code and sigmoid output, 20 epochs of batch 64, BCE, Adam 1e-3, seed 2022).

    family:        a name in ``aelab.models.FAMILIES`` ("ae", "vae", "contractive", "kl_sparse", "tied", …).
    hidden:        sizes of the hidden layers between input and code, e.g. ``(128, 64)``; the decoder
                   mirrors them. A VAE's code heads follow the last one (it needs one).
    code_size:     the code's size (a VAE's latent dimensions).
    activation:    the hidden and code layers' activation ("relu", "tanh", …).
    output:        the last layer's activation: "sigmoid" (values in [0, 1]) or "linear" (any values).
    activity_l1:   the plain family's L1 on the code (Keras' ``activity_regularizer=l1(λ)``).
    beta:          a VAE's weight of its KL term (β-VAE).
    noise_factor:  a denoising autoencoder's input noise (inputs ``clip(x + f·N(0,1), 0, 1)``).
    epochs, batch_size, loss ("bce", "torch_bce", "mse"), lr, seed: training; a ``batch_size``
                   larger than the data is the data's size.
    scaling:       aelab's ``data.scaling`` ("unit": as given; "minmax"; "standard"), fitted on ``X``.
    preset:        start from a preset (``aelab presets``), e.g. "keras-blog-sparse".
    run_dir:       keep each fit's run directory under this folder, named by its config hash.
    device:        where to train ("auto", "cpu", "cuda"); the fitted model is kept on the CPU.
    modules:       ``(encoder, decoder)``, your own ``torch.nn.Module`` pair, trained under the plain
                   autoencoder's objective (family "custom", the default with modules) or the VAE's
                   ("custom_vae": the encoder gives μ and log σ²); ``output`` is then the decoder's
                   ``"sigmoid"``, ``"logits"`` or ``"linear"`` (:mod:`aelab.models.custom`).

    Fitted attributes: ``config_``, ``config_hash_`` (the run's identity), ``model_``, ``scaler_``, ``scaling_``, ``history_``,
    ``metrics_``, ``loss_curve_``, ``n_iter_``, ``n_components_``, ``n_features_in_``,
    ``input_shape_``, ``run_dir_`` (None for a temporary run directory).
    """

    def __init__(self, family=None, hidden=None, code_size=None, activation=None, output=None, activity_l1=None,
                 beta=None, noise_factor=None, epochs=None, batch_size=None, loss=None, lr=None, seed=None,
                 scaling=None, preset=None, run_dir=None, device=None, modules=None):
        self.family = family
        self.hidden = hidden
        self.code_size = code_size
        self.activation = activation
        self.output = output
        self.activity_l1 = activity_l1
        self.beta = beta
        self.noise_factor = noise_factor
        self.epochs = epochs
        self.batch_size = batch_size
        self.loss = loss
        self.lr = lr
        self.seed = seed
        self.scaling = scaling
        self.preset = preset
        self.run_dir = run_dir
        self.device = device
        self.modules = modules

    def fit(self, X, y=None) -> AutoencoderTransformer:
        """Train an aelab run on ``X`` ``(N, D)`` or images ``(N, H, W)``/``(N, C, H, W)``; ``y`` is ignored."""
        return self._fit(X)

    def transform(self, X) -> np.ndarray:
        """The codes of ``X``: float32 ``(N, n_components_)`` (a VAE's posterior mean μ)."""
        return self._encode(X)

    def inverse_transform(self, Z) -> np.ndarray:
        """Samples decoded from codes ``Z`` ``(M, n_components_)``, float32, in the shape and range
        of ``fit``'s ``X`` (its scaling inverted)."""
        return self._decode(Z)

    def score_samples(self, X) -> np.ndarray:
        """Per sample, higher is better: the negated reconstruction error, or a VAE's ELBO (nats)."""
        return self._score_samples(X)

    def score(self, X, y=None) -> float:
        """The mean of :meth:`score_samples` (for a plain autoencoder, minus the mean reconstruction loss)."""
        return float(np.mean(self._score_samples(X)))

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # the model computes in float32
        return tags


__all__ = ["AutoencoderBase", "AutoencoderTransformer", "InputError"]
