"""The report's own figure composition: what to draw is decided here, the drawing is :mod:`aelab.plots`.

:func:`loss_curves` picks the loss terms besides the reconstruction that a question's runs recorded
(:func:`aelab.report.prose.penalty_terms`) and their display names, and hands the curves to
:func:`aelab.plots.loss_curves`. The other figure functions the report draws are :mod:`aelab.plots`'s
own, named here too so the report reads them from one place.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .. import plots
from ..plots.figures import (DPI, MIN_REL_SPAN, STRIP_VALUE, feature_error_plot, infer_shape, paired_grid,
                             png as _png, recon_grid, sweep_plot, sweep_ylim)
from .prose import penalty_terms, term_name, term_phrase

__all__ = ["DPI", "MIN_REL_SPAN", "STRIP_VALUE", "extra_terms", "feature_error_plot", "infer_shape", "loss_curves",
           "paired_grid", "recon_grid", "sweep_plot", "sweep_ylim", "_png"]


def extra_terms(*runs: Mapping[str, Any]) -> list[str]:
    """The loss terms besides the reconstruction that any of the runs recorded per epoch (see
    :func:`aelab.report.prose.penalty_terms`)."""
    return penalty_terms(*runs)


def loss_curves(baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any],
                labels: Sequence[str] = ("baseline", "variant")) -> bytes:
    """Train and validation loss per epoch of both runs and, when either has terms besides the
    reconstruction, those terms in a panel of their own (:func:`aelab.plots.loss_curves`), as PNG bytes."""
    terms = extra_terms(baseline_run, variant_run)
    return plots.loss_curves(baseline_run, variant_run, labels, terms=terms,
                             term_names={k: term_name(k) for k in terms},
                             terms_title=f"{term_phrase(terms)} (in the loss)" if terms else None)
