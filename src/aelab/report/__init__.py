"""Reports: a study's or sweep's report rebuilt from its saved artifacts, without training.

Data, then text: :mod:`~aelab.report.records` loads results.json once (checked, older formats
migrated there alone) with each run's saved arrays; :mod:`~aelab.report.claims` judges a question's
claims (their kinds are :mod:`aelab.study.claims`'); :mod:`~aelab.report.prose` says what the numbers
show in sentences, with the vocabulary of each family (``aelab.models.FAMILIES``);
:mod:`~aelab.report.latent_sections` and :mod:`~aelab.report.figures` compose the code maps and
curves; :mod:`~aelab.report.render` builds a :class:`Report` (content only, no file written) of typed
sections (:mod:`~aelab.report.sections`), each of which turns itself into blocks
(:mod:`~aelab.report.blocks`) that render as HTML and as Markdown from the same objects.

* :func:`compose_report` — the content of the report on a study/sweep directory or a results.json's content;
* :func:`write_report` — write a :class:`Report`'s figures, report.md and report.html into a directory;
* :func:`build_report` / :func:`build_sweep_report` — both steps for a study / sweep directory.
"""

from __future__ import annotations

from .claims import evaluate_claim, judge, register_judge
from .records import Results, load_results
from .render import Report, build_report, build_sweep_report, compose_report, write_report

__all__ = ["Report", "Results", "build_report", "build_sweep_report", "compose_report", "evaluate_claim", "judge",
           "load_results", "register_judge", "write_report"]
