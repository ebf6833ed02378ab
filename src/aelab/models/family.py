"""What a model family is: one object that says everything the rest of aelab needs to know about it.

A family is one file (``ae.py``, ``vae.py``, …) that ends in ``FAMILY = Family(...)``: its
pydantic ``Config`` (a :class:`~aelab.models.base.ModelConfig` subclass whose ``family`` literal
is the registry key), how to ``build`` the model, the loss ``terms`` it adds with their
formulas, the ``diagnostics`` it measures with what each means, what its code is, whether its
forward pass draws random numbers, and optionally the sentences the report says about its
diagnostics. The engine, the run directories, the study runner and the report look families up
here and never name one, so adding a family touches no other file (:func:`aelab.models.register_family`
adds one from outside the package, as a test does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Optional

if TYPE_CHECKING:
    import torch

    from .base import Autoencoder, ModelConfig

#: What ``Autoencoder.encode`` gives: a deterministic code, the mean of a posterior, discrete indices.
CodeKind = Literal["deterministic", "mean", "discrete"]
CODE_KINDS = ("deterministic", "mean", "discrete")


def no_diagnostics(model: "Autoencoder", x: "torch.Tensor", cfg: "ModelConfig", loss: str = "bce") -> dict[str, Any]:
    """Nothing beyond the reconstruction and code statistics every run gets (``metrics.evaluate``)."""
    return {}


def never_fast(cfg: "ModelConfig") -> bool:
    """The stacked fast path implements none of this family's configs: it trains on autograd."""
    return False


@dataclass(frozen=True)
class Family:
    """One autoencoder family, as the registry (``aelab.models.FAMILIES``) holds it.

    name:          the registry key, equal to ``Config``'s ``family`` literal.
    Config:        the family's pydantic config class.
    build:         ``build(cfg, generator) -> Autoencoder``, initialised from ``generator``.
    terms:         loss-term name (``AEOutput.terms``' keys) → one-line doc with its formula.
    diagnostics:   ``metrics.json`` family key → what it measures (``diagnose``'s keys).
    code:          what ``encode()`` gives: ``"deterministic"``, ``"mean"`` (of a posterior) or ``"discrete"``.
    stochastic:    whether ``forward`` draws random numbers (the engine then passes a seeded generator).
    diagnose:      ``diagnose(model, x, cfg, loss) -> dict``, the family's own measurements on ``x``.
    supports_fast: ``supports_fast(cfg) -> bool``: the stacked dense fast path implements every field
                   of ``cfg`` (``cfg.fast_plan()`` then describes what it trains).
    explain:       optional ``explain(b, v, who="the variant", other="the baseline") -> str | None``:
                   what this family's diagnostics say about a difference between a run ``b`` and a
                   run ``v`` of it, as the report holds runs (mappings with ``config``, ``metrics``,
                   ``history``): lower-case clauses joined by ``"; "``, naming ``v`` as ``who`` and
                   ``b`` as ``other``; ``None`` when there is nothing family-specific to say.
    label:         the display name (``"VAE"``, ``"contractive AE"``).
    term_labels:   loss-term name → how the report writes it (``"kl"`` → ``"KL"``); default: the
                   name with spaces for underscores.
    term_purposes: loss-term name → what it asks of the model, completing "training trades
                   reconstruction quality for …".
    shown:         diagnostic key → how the report shows it: ``label``; ``mode``, how two runs'
                   values compare (``"ratio"``, ``"diff"``, ``"count"``, or None: not compared);
                   ``of``: a key to show it out of ("2 / 2"); ``target``: a key to show it beside,
                   written with ``target_symbol``; ``table: False``: defined in the appendix only.
    conditional:   whether the model is conditioned on each sample's class label (a conditional
                   VAE): its ``forward``, ``encode`` and ``decode`` take ``labels=`` ((B,) int64), the
                   engine passes the training labels beside the inputs, row for row, ``diagnose``
                   gets ``labels=`` too, and a data set without labels is refused before training.
    figures:       optional ``figures(model, data, cfg, names=()) -> {name: (image, caption)}``: the
                   family's own figures of a finished run (``data``: its
                   :class:`~aelab.data.prepare.TrainData`, the validation split and, for a conditional
                   family, its labels; ``names``: the data set's class names). ``image``: PNG bytes, a
                   NumPy array or a PIL image. Finishing writes each as ``figures/<name>.png`` and
                   records it in ``metrics.json["figures"]`` with its caption.
    """

    name: str
    Config: type
    build: Callable[..., Any]
    terms: Mapping[str, str] = field(default_factory=dict)
    diagnostics: Mapping[str, str] = field(default_factory=dict)
    code: CodeKind = "deterministic"
    stochastic: bool = False
    diagnose: Callable[..., dict] = no_diagnostics
    supports_fast: Callable[[Any], bool] = never_fast
    explain: Optional[Callable[[Mapping, Mapping], Optional[str]]] = None
    label: str = ""
    term_labels: Mapping[str, str] = field(default_factory=dict)
    term_purposes: Mapping[str, str] = field(default_factory=dict)
    shown: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    conditional: bool = False
    figures: Optional[Callable[..., Mapping[str, tuple[Any, str]]]] = None

    def __post_init__(self) -> None:
        if self.code not in CODE_KINDS:
            raise ValueError(f"family {self.name!r}: code must be one of {', '.join(CODE_KINDS)}, not {self.code!r}")
        tag = getattr(self.Config, "model_fields", {}).get("family")
        if tag is None or tag.default != self.name:
            raise ValueError(f"family {self.name!r}: its Config's family field must default to {self.name!r}")
        if not self.label:
            object.__setattr__(self, "label", self.name)
        unknown = sorted(set(self.shown) - set(self.diagnostics))
        if unknown:
            raise ValueError(f"family {self.name!r}: shown names diagnostics without a doc: {', '.join(unknown)}")

    def term_doc(self, term: str) -> Optional[str]:
        """The one-line doc of loss term ``term``, or None when this family does not add it."""
        return self.terms.get(term)

    def term_label(self, term: str) -> str:
        """How the report names loss term ``term``: ``"kl"`` → ``"KL"``."""
        return self.term_labels.get(term, term.replace("_", " "))

    def diagnostic_label(self, key: str) -> str:
        """How the report names diagnostic ``key``: ``"elbo"`` → ``"ELBO per test image"``."""
        return str(self.shown.get(key, {}).get("label", key.replace("_", " ")))


# -- reading a run as the report holds it (for ``explain``) -----------------------------------------------
def diagnostic(run: Mapping[str, Any], key: str) -> Any:
    """``run["metrics"]["family"][key]``, or None when any step is missing."""
    metrics = run.get("metrics") if isinstance(run, Mapping) else None
    block = metrics.get("family") if isinstance(metrics, Mapping) else None
    return block.get(key) if isinstance(block, Mapping) else None


def diagnostic_number(run: Mapping[str, Any], key: str) -> Optional[float]:
    """:func:`diagnostic` as a finite float when it is a (non-bool) number, else None."""
    v = diagnostic(run, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)
