"""The data part of a run's config: which data, its source's own options, scaling and noise.

:class:`DataConfig` holds what every data set shares (``dataset``, scaling, noise, limits, labels
left out) and, in ``source``, the options of the one source ``dataset`` names, validated against
that source's own class (:mod:`aelab.data.source`), as a run's ``model`` is against its family's.
Config files, CLI flags and the ``config.json`` of earlier runs spell the options flat
(``data.channels``, ``data.test_fraction``); :meth:`DataConfig._migrate` is the one place that
moves them into ``source`` and drops another source's options left at their defaults.
:meth:`DataConfig.hash_fields` gives the flat form the config hash has always been computed on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .._schema import Frozen
from ..errors import ConfigError
from .idxsets import IdxOptions
from .registry import option_fields
from .source import SourceOptions, source_for

#: Options added after run directories existed: left out of the hash while at their defaults, so a
#: config that does not use them keeps the hash (and the cached runs) it always had.
LATER_DEFAULTS = {"channels": None, "image_size": None, "test_fraction": 0.2, "split_seed": 0,
                  "label_column": None, "exclude_labels": [], "binarize": "none"}

#: ``data.binarize``: what each value means (the CLI's and the errors' words)
BINARIZE_MODES = {
    "none": "the grey values as they are",
    "dynamic": "each epoch's training images a fresh Bernoulli sample of the grey values (Salakhutdinov & Murray 2008)",
    "static": "the training images one Bernoulli sample of the grey values, drawn once from a fixed stream",
    "threshold": "every value at or above 0.5 set to 1, below to 0",
}


class DataConfig(Frozen):
    """Which data, how it is read and scaled, and the noise of a denoising autoencoder.

    ``dataset``: a registered name (``aelab.data.SOURCES``: mnist, fashion-mnist, kmnist, digits,
    synthetic, and any added with ``aelab.data.register_source``) or a path: a folder of images or
    a ``.csv``/``.npy``/``.npz`` table. A path's content (not just its name) is part of the config
    hash. ``source``: that source's own options (a folder's ``channels``, a table's ``label_column``).
    """

    dataset: str = "mnist"
    #: "unit": x / the data's maximum (x/255 for 8-bit images; a float table as it is).
    #: "minmax": scikit-learn MinMaxScaler per feature. "standard": StandardScaler (z-score) per feature.
    scaling: Literal["unit", "minmax", "standard"] = "unit"
    #: "train": the scaler is fitted on the training split. "per_split": each split is fitted on
    #: itself, as the seed notebook does (a flaw the report measures).
    scaler_fit: Literal["train", "per_split"] = "train"
    #: Denoising: inputs are clip(x + f·N(0,1), 0, 1); targets stay clean.
    noise_factor: float = Field(default=0.0, ge=0.0, le=100.0)
    #: "once": noise drawn once before training (the seed's way). "per_epoch": redrawn each epoch.
    noise_mode: Literal["once", "per_epoch"] = "once"
    #: What the validation loss is computed on: the seed validates 4.1 on clean → clean.
    validate_on: Literal["clean", "noisy"] = "clean"
    #: Binary images for a Bernoulli likelihood (:data:`BINARIZE_MODES`): "dynamic" draws each epoch's
    #: training images as Bernoulli samples of the grey values (inputs and targets alike), "static" one
    #: sample for the whole run, "threshold" rounds at 0.5. The test split is binarised once from a
    #: fixed stream (threshold: rounded), the same for every run, so test NLLs compare.
    binarize: Literal["none", "dynamic", "static", "threshold"] = "none"
    #: Use only the first N training (and N//6 test, at least 1) images: quick runs and tests.
    limit: int | None = Field(default=None, gt=0)
    test_limit: int | None = Field(default=None, gt=0)
    #: Leave the samples with these labels out of training (and of the validation during training);
    #: the test split stays whole, so the held-out class can be scored as an anomaly.
    exclude_labels: tuple[int, ...] = ()
    #: The options of the source ``dataset`` names (its own class; tagged by ``kind``).
    source: SerializeAsAny[SourceOptions] = IdxOptions()

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, d: Any) -> Any:
        """Flat options (``channels``, ``test_fraction``: config files, CLI flags, earlier
        ``config.json``) into ``source``, validated by the class of the source ``dataset`` names;
        another source's options are dropped at their defaults and refused otherwise."""
        if not isinstance(d, dict):
            return d
        d = dict(d)
        dataset = d.get("dataset", "mnist")
        if isinstance(dataset, Path):
            dataset = d["dataset"] = str(dataset)
        if not isinstance(dataset, str) or not dataset.strip():
            return d  # the field's own validator says what is wrong
        src = d.pop("source", None)
        if src is not None and not isinstance(src, (dict, SourceOptions)):
            d["source"] = src  # not a table: the field says so
            return d
        opts = src.model_dump() if isinstance(src, SourceOptions) else dict(src or {})
        opts.pop("kind", None)
        common = set(cls.model_fields)
        for k in [k for k in d if k not in common]:
            opts[k] = d.pop(k)
        try:
            source = source_for(dataset)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        own = set(source.Options.model_fields) - {"kind"}
        known = option_fields()
        out: dict[str, Any] = {"kind": source.kind}
        for k, v in opts.items():
            if k in own or k not in known:
                out[k] = v  # an unknown key is the options class's "unknown key"
                continue
            default, where = known[k]
            if v is None or v == default or (isinstance(v, (list, tuple)) and list(v) == list(default or [])):
                continue
            raise ValueError(f"data.{k} applies to {where}, but data.dataset {dataset} is {source.what or 'another source'}; "
                             "drop it")
        d["source"] = out
        return d

    @field_validator("source", mode="wrap")
    @classmethod
    def _source(cls, v: Any, handler: Any, info: ValidationInfo) -> Any:
        # the class of the source ``dataset`` names, registered at any time: the registry is the union
        dataset = info.data.get("dataset")
        if isinstance(v, dict) and isinstance(dataset, str):
            return source_for(dataset).Options.model_validate(v)
        return handler(v)

    @model_validator(mode="after")
    def _binarize_needs_unit(self) -> "DataConfig":
        if self.binarize == "none":
            return self
        if self.scaling != "unit":
            raise ValueError(f"data.binarize {self.binarize} samples values in [0, 1] as probabilities, but data.scaling "
                             f"is {self.scaling}; use scaling = \"unit\" or binarize = \"none\"")
        if self.noise_factor > 0:
            raise ValueError(f"data.binarize {self.binarize} and data.noise_factor {self.noise_factor} both change the "
                             "inputs; drop one (noise_factor = 0 or binarize = \"none\")")
        return self

    @field_validator("noise_factor", mode="before")
    @classmethod
    def _int_is_float(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset(cls, v: Any) -> Any:
        if isinstance(v, Path):
            v = str(v)
        if isinstance(v, str) and not v.strip():
            raise ValueError("is empty; give a data set name (mnist, fashion-mnist, kmnist, digits, synthetic) or a path")
        return v

    @field_validator("exclude_labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = (v,)
        if isinstance(v, str):
            try:
                v = tuple(int(p) for p in v.split(",") if p.strip())
            except ValueError:
                raise ValueError(f"got {v!r}; give whole-number labels such as 3 or 3,5") from None
        if isinstance(v, list):
            v = tuple(v)
        if isinstance(v, tuple):
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                raise ValueError(f"got {list(v)}; give whole-number labels such as [3] or [3, 5]")
            if len(set(v)) != len(v):
                raise ValueError(f"got {list(v)}; a label is listed twice")
            v = tuple(sorted(v))  # the same set is the same config (and hash), in any order
        return v

    def flat(self) -> dict[str, Any]:
        """JSON-ready, with the source's options beside the shared fields (``kind`` left out): the
        spelling of config files and CLI flags."""
        d = self.model_dump(mode="json", exclude={"source"})
        d.update({k: v for k, v in self.source.model_dump(mode="json").items() if k != "kind"})
        return d

    def hash_fields(self) -> dict[str, Any]:
        """What the config hash covers: :meth:`flat`, less the options added later while at their
        defaults (so configs written before them keep their hashes)."""
        d = self.flat()
        for k, default in LATER_DEFAULTS.items():
            if k in d and d[k] == default:
                del d[k]
        return d

