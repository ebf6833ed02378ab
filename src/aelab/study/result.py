"""What :func:`aelab.run_study` and :func:`aelab.run_sweep` return: results.json's content as a dict, as
before, that also knows its output directory, opens its runs, and shows itself in a notebook.

:class:`StudyResult` *is* a ``dict`` (``res["runs"]``, ``json.dumps(res)`` and ``res == {...}`` work as
they did), so every caller of the runners keeps working; what it adds is ``out``, :meth:`run` (a run
of the study opened as a :class:`~aelab.runs.trained.TrainedRun`) and the rich display
(``_repr_html_``: the questions or the swept values with their final losses, every run's key numbers
and the loss curves; ``_repr_png_``: one figure). The full report — claims judged, observations,
reconstructions, code maps — is the report layer's: ``aelab.compose_report(res.out)``, itself
displayable; this layer sits below the report and does not build it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from .. import _display as D
from .. import numfmt as N
from .. import plots
from ..errors import AelabError
from ..runs.trained import TrainedRun, open_run

__all__ = ["StudyResult"]


def _last(run: Mapping[str, Any], key: str) -> Optional[float]:
    values = (run.get("history") or {}).get(key)
    v = values[-1] if isinstance(values, list) and values else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _metric(run: Mapping[str, Any], *path: str) -> Any:
    node: Any = run.get("metrics")
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


class StudyResult(dict):
    """A study's or sweep's results.json content (this dict) and its output directory ``out``.

    ``kind``: ``"study"`` or ``"sweep"``. :meth:`run` opens one of its runs by name."""

    def __init__(self, results: Mapping[str, Any], out: str | Path) -> None:
        super().__init__(results)
        self.out = Path(out)

    @property
    def kind(self) -> str:
        return "sweep" if "sweep" in self else "study"

    def run(self, name: str) -> TrainedRun:
        """The study's run ``name`` (a key of ``self["runs"]``), opened from its run directory."""
        runs = self.get("runs") or {}
        if name not in runs:
            raise AelabError(f"{self.title}: no run named {name!r}; its runs: {', '.join(runs) or 'none'}")
        return open_run(self.out / runs[name]["dir"])

    @property
    def title(self) -> str:
        return str(self.get("title") or self.get("study") or self.get("sweep") or "results")

    def __repr__(self) -> str:
        return f"StudyResult({str(self.out)!r}, {self.kind} {self.title!r}, {len(self.get('runs') or {})} runs)"

    # -- display -------------------------------------------------------------------------------
    def _meta(self) -> str:
        parts = [f"{self.kind} {self.get('study') or self.get('sweep') or ''}".strip()]
        if self.get("protocol"):
            parts.append(f"protocol {self['protocol']}")
        parts.append(f"{len(self.get('runs') or {})} runs")
        wall = self.get("wall_seconds")
        if isinstance(wall, (int, float)):
            parts.append(f"training {N.fmt_seconds(wall)}")
        if self.get("quick"):
            parts.append("quick: a data slice and few epochs, a smoke test, not a result")
        parts.append(str(self.out))
        return " · ".join(parts)

    def _run_rows(self) -> list[list[Any]]:
        rows = []
        for name, run in (self.get("runs") or {}).items():
            loss = (run.get("history") or {}).get("loss")
            rows.append([name, len(loss) if isinstance(loss, list) else None, _last(run, "loss"), _last(run, "val_loss"),
                         _metric(run, "bce"), _metric(run, "psnr"), _metric(run, "ssim"),
                         _metric(run, "latent", "probe_accuracy")])
        return rows

    def _questions(self) -> tuple[str, list[tuple[str, bytes]]]:
        runs = self.get("runs") or {}
        rows, figs = [], []
        for q in self.get("questions") or []:
            b, v = runs.get(q.get("baseline")), runs.get(q.get("variant"))
            if b is None or v is None:
                continue
            bv, vv = _last(b, "val_loss"), _last(v, "val_loss")
            rows.append([q.get("id"), q.get("question"), q.get("baseline"), bv, q.get("variant"), vv,
                         N.fmt_change(vv, bv)])
            figs.append((f"{q.get('id')}: {q.get('baseline')} (blue) vs {q.get('variant')} (red)",
                         plots.loss_curves(b, v, (str(q.get("baseline")), str(q.get("variant"))))))
        if not rows:
            return "", []
        return D.table(["id", "question", "baseline", "final val loss", "variant", "final val loss",
                        "variant vs baseline"], rows), figs

    def _sweep(self) -> tuple[str, Optional[bytes]]:
        runs = self.get("runs") or {}
        param = str(self.get("parameter") or "value")
        points = [(p.get("value"), runs.get(p.get("run"))) for p in self.get("points") or []]
        points = [(v, r) for v, r in points if r is not None]
        if not points:
            return "", None
        rows = [[N.fmt_value(v), _last(r, "loss"), _last(r, "val_loss"), _metric(r, "bce"), _metric(r, "psnr"),
                 _metric(r, "latent", "probe_accuracy")] for v, r in points]
        values = [v for v, _ in points]
        series = {"loss/train": [_last(r, "loss") for _, r in points],
                  "loss/val": [_last(r, "val_loss") for _, r in points],
                  "test PSNR (dB)": [_metric(r, "psnr") for _, r in points],
                  "linear-probe accuracy": [_metric(r, "latent", "probe_accuracy") for _, r in points]}
        try:
            png = plots.sweep_plot(values, series, param, self.get("log_x"),
                                   ylims={"linear-probe accuracy": (0.0, 1.0)})
        except (ValueError, TypeError):
            png = None
        return D.table([param, "final loss", "final val loss", "test BCE", "PSNR (dB)", "probe accuracy"], rows), png

    def summary_png(self) -> Optional[bytes]:
        """One figure of the results: a sweep's final losses and diagnostics against its parameter, a
        study's first question's loss curves (baseline against variant); None when there is none."""
        if self.kind == "sweep":
            return self._sweep()[1]
        figs = self._questions()[1]
        return figs[0][1] if figs else None

    def _repr_png_(self) -> Optional[bytes]:
        return self.summary_png()

    def _repr_html_(self) -> str:
        """The result as a notebook shows it (self-contained: figures inline, no script, no network)."""
        parts = []
        if self.kind == "sweep":
            table, png = self._sweep()
            parts += ["<h4>Final numbers per value</h4>", table,
                      D.figure(png, f"{self.title}: final losses against {self.get('parameter')}",
                               f"final losses and diagnostics against {self.get('parameter')}")]
        else:
            table, figs = self._questions()
            if table:
                parts += ["<h4>Questions</h4>", table]
        parts += ["<h4>Every run</h4>",
                  D.table(["run", "epochs", "final loss", "final val loss", "test BCE", "PSNR (dB)", "SSIM",
                           "probe accuracy"], self._run_rows())]
        if self.kind == "study" and figs:
            parts.append("<h4>Loss per epoch, question by question (train solid, validation dashed)</h4>")
            parts.append('<div class="row">' + "".join(D.figure(png, cap, cap, width=520) for cap, png in figs)
                         + "</div>")
        parts.append(f'<p class="meta">The full report (claims judged, reconstructions, code maps): '
                     f'<code>aelab.compose_report({D.escape(repr(str(self.out)))})</code>; one run: '
                     f'<code>result.run(NAME)</code>.</p>')
        return D.card(self.title, self._meta(), *parts)
