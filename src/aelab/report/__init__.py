"""Reports: rebuild a study's or sweep's report from its saved artifacts, without training.

* :mod:`aelab.report.claims` — read numbers out of run records, judge claims, write observations;
* :mod:`aelab.report.figures` — loss curves, reconstruction grids, sweep plots (PNG bytes);
* :mod:`aelab.report.render` — load results.json + samples.npz, write report.html / report.md /
  figures/*.png atomically from the Jinja2 templates in ``templates/``.
"""

from __future__ import annotations

from .claims import evaluate_claim
from .render import build_report, build_sweep_report

__all__ = ["build_report", "build_sweep_report", "evaluate_claim"]
