"""The report's sections as typed objects: what each section says, built once from the results.

:mod:`aelab.report.render` builds these from the loaded records (numbers already formatted, figures
drawn); each section turns itself into :mod:`aelab.report.blocks` (:meth:`blocks`), which render as
HTML and as Markdown. Tests read the sections' fields; the two renderings need no test of their own
beyond a few checks that the blocks come out right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

from .blocks import (Block, Bold, Box, Break, Cell, Code, DefinitionList, Em, Figure, Heading, Link, ListBlock,
                     Paragraph, Row, Span, Table, Text)

__all__ = ["Appendix", "ClaimRow", "CompareRow", "Doc", "FamilyFigures", "Header", "MethodNotes", "ModelFigures",
           "Note", "Observation", "Overview", "ProtocolEffect", "QuestionSection", "ReevaluatedRow", "RunRow",
           "Section", "Series", "StudySummary", "SummaryRow", "SweepRow", "SweepSection", "all_blocks"]


@dataclass(frozen=True)
class Observation:
    """What the numbers show, in words: a lead sentence (or several) and the evidence behind it."""

    lead: str
    evidence: tuple[str, ...] = ()

    def blocks(self) -> list[Block]:
        return [ListBlock(self.evidence, cls="evidence")] if self.evidence else []


# -- header ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    """The page's top: title, what the data was, the protocol, when and how long, and what is missing."""

    kind: str
    title: str
    study: str
    protocol: str
    protocol_derived: bool
    protocol_sentence: str
    quick: bool
    wall_time: str
    wall_total: Optional[str]
    n_runs: int
    description: str = ""
    data_sentence: str = ""
    claims_sentence: str = ""
    device: str = ""
    engine: str = ""
    created: str = "—"
    version: str = "—"
    missing: tuple[str, ...] = ()

    def blocks(self) -> list[Block]:
        out: list[Block] = [Heading(1, self.title)]
        if self.description:
            out.append(Paragraph(self.description))
        if self.data_sentence:
            out.append(Paragraph(Bold(self.data_sentence), id="data"))
        if self.claims_sentence:
            out.append(Paragraph(self.claims_sentence, cls="notes", id="claims-on-this-data", quote=True))
        meta: list = [f"{self.kind} ", Code(self.study), " · "] if self.study else []
        meta += ["protocol ", Bold(self.protocol), " (read from the runs' configs)" if self.protocol_derived else "",
                 f" · wall time {self.wall_time}", f" (training; {self.wall_total} in all)" if self.wall_total else "",
                 f" · {self.n_runs} run(s)", f" · device {self.device}" if self.device else "",
                 f" · engine {self.engine}" if self.engine else "", f" · created {self.created} · aelab {self.version}"]
        out.append(Paragraph(tuple(m for m in meta if m), cls="meta"))
        if self.quick:
            out.append(Paragraph((Bold("Quick mode:"), " fewer epochs and/or a data slice. These numbers are a smoke "
                                  "test, not a result; do not draw conclusions from them."), cls="warn", quote=True))
        out.append(Paragraph(self.protocol_sentence))
        if self.missing:
            out.append(Box([Paragraph(Bold("Missing artifacts:")), ListBlock(self.missing)], cls="warn"))
        return out


# -- a study's summary -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SummaryRow:
    """A question's line in the summary table: the two final val losses, their comparison, the claims'
    tally (``claims``) and its colour (``status``: ``ok``, ``no``, ``nj`` (only unjudged), ``none``)."""

    id: str
    anchor: str
    question: str
    baseline_val: str
    variant_val: str
    ratio: str
    claims: str
    all_ok: bool
    status: str


@dataclass(frozen=True)
class Overview:
    """Every run in one table (:func:`aelab.report.latent_sections.overview`): ``columns`` and one tuple of
    cells per run (``keys``: the runs' keys, in the same order)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    keys: tuple[str, ...] = ()


_RATIO_NOTE = ("In every table, “variant vs baseline” is a ratio (×) only where both numbers are positive and of "
               "comparable size; otherwise it is the difference (Δ, variant − baseline), and always for dB, SSIM and "
               "fractions.")
_OVERVIEW_NOTE = (
    "Test BCE per pixel compares every run on one scale (a loss summed over an image's pixels is hundreds of times a "
    "per-pixel one). Linear probe and k-NN: how often the label is read from the code of a test image; active code "
    "dims: code dimensions whose variance over the test images exceeds 0.01 for a posterior mean μ (Burda et al. "
    "2016), or 1% of the most variable dimension's for a deterministic code (whose scale training sets). Training "
    "time is the time of the group a run trained in (models of the same shape train side by side).")
_SAMPLES_NOTE = (
    " Prior samples: decodings of z ~ N(0, I) of a generative run against test images, on the features of a small "
    "classifier aelab trains on the data set (not Inception: comparable within aelab only) — the Fréchet distance "
    "(lower is better), precision (samples that look like real images) and recall (real images the samples cover).")


@dataclass(frozen=True)
class StudySummary:
    """The top of a study's report: one line per question, every run in one table, and every run's code."""

    rows: tuple[SummaryRow, ...]
    overview: Overview
    gallery: Optional[Figure] = None

    def blocks(self) -> list[Block]:
        out: list[Block] = [
            Heading(2, "Summary", id="summary-heading"),
            Table(("id", "question", "baseline val loss", "variant val loss", "variant vs baseline",
                   "claims confirmed"),
                  [Row((Link(s.id, "#" + s.anchor), s.question, s.baseline_val, s.variant_val, s.ratio,
                        Cell(s.claims, cls=s.status))) for s in self.rows],
                  numeric=(False, False, True, True, True, True), id="summary"),
            Paragraph(_RATIO_NOTE, cls="meta"),
        ]
        ov = self.overview
        if ov.rows:
            out += [Heading(3, "Every run", id="all-runs"),
                    Table(ov.columns, [Row(r) for r in ov.rows], numeric=[i >= 3 for i in range(len(ov.columns))],
                          id="overview"),
                    Paragraph(_OVERVIEW_NOTE + (_SAMPLES_NOTE if "prior samples: Fréchet distance" in ov.columns
                                                else ""), cls="meta")]
        if self.gallery is not None:
            out.append(self.gallery)
        return out


# -- a study's question ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimRow:
    """One claim of a question, judged: its sentence and kind, the :class:`~aelab.report.claims.Verdict`'s
    ``status``/``measured``/``detail``, and how it fares across seed replicates (``seeds``, "" without)."""

    text: str
    kind: str
    status: str
    measured: str
    detail: str
    seeds: str = ""

    def item(self) -> Text:
        colour = {"confirmed": "ok", "not confirmed": "no"}.get(self.status, "nj")
        seeds = f" Across seeds: {self.seeds}." if self.seeds else ""
        return (Span(self.status, colour, strong=True), f": {self.text}", Break(),
                Span(f"measured: {self.measured}. {self.detail}{seeds}", "measured"))


@dataclass(frozen=True)
class CompareRow:
    """A line of a question's table: what it is, the baseline's and the variant's cells, their comparison."""

    label: str
    baseline: str
    variant: str
    ratio: str


@dataclass(frozen=True)
class Series:
    """Every run of a study that differs from a question's baseline in one numeric setting (``key``) alone:
    the curve over its values, a reconstruction row per value and what the curve shows."""

    key: str
    n: int
    value_list: str
    plot: Figure
    recon: Optional[Figure]
    observation: Observation

    def blocks(self) -> list[Block]:
        out: list[Block] = [Heading(4, ("Over every value of ", Code(self.key), f" ({self.n} runs)")), self.plot]
        if self.recon is not None:
            out.append(self.recon)
        return out + self.observation.blocks()


@dataclass(frozen=True)
class QuestionSection:
    """One question of a study: its two runs, the comparison table (``rows``), the figures, the answer in
    words (``observation``) and the judged claims."""

    id: str
    anchor: str
    section: str
    question: str
    baseline_key: str
    variant_key: str
    baseline_name: str
    variant_name: str
    rows: tuple[CompareRow, ...]
    curves: Figure
    recon: Optional[Figure]
    latent: Optional[Figure]
    series: Optional[Series]
    observation: Observation
    claims: tuple[ClaimRow, ...]
    time_note: str

    def blocks(self) -> list[Block]:
        out: list[Block] = [
            Heading(2, self.id + (f" · {self.section}" if self.section else ""), id=self.anchor, md_anchor=True),
            Paragraph(Em(self.question), cls="question"),
            Heading(3, "Answer"),
            Paragraph(self.observation.lead, cls="lead"),
        ]
        s = self.series
        if s is not None and s.observation.lead:
            out.append(Paragraph(("Over every value of ", Code(s.key), f" in this study ({s.value_list}): "
                                  f"{s.observation.lead}"), cls="lead"))
        out += [
            Heading(3, "Evidence"),
            Paragraph(("baseline ", Code(self.baseline_name), f" (run {self.baseline_key}) · variant ",
                       Code(self.variant_name), f" (run {self.variant_key})"), cls="meta"),
            Table(("", "baseline", "variant", "variant vs baseline"),
                  [Row((r.label, r.baseline, r.variant, r.ratio)) for r in self.rows],
                  numeric=(False, True, True, True), cls="compare", row_headers=True),
            Paragraph(self.time_note, cls="meta"),
            self.curves,
        ]
        out += [f for f in (self.recon, self.latent) if f is not None]
        if s is not None:
            out += s.blocks()
        if self.observation.evidence:
            out += [Paragraph(Bold("The numbers behind the answer"))] + self.observation.blocks()
        out.append(Heading(3, "Claims"))
        out.append(ListBlock([c.item() for c in self.claims], cls="claims") if self.claims
                   else Paragraph("No claims recorded for this question."))
        return out


# -- a run's own figures ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FamilyFigures:
    """The figures a run's model family drew for it when it finished (``metrics.json["figures"]``), shown
    as they are, under the run's name."""

    run: str
    key: str
    figures: tuple[Figure, ...]

    def blocks(self) -> list[Block]:
        return [Heading(3, ("Run ", Code(self.run))), *self.figures]


@dataclass(frozen=True)
class ModelFigures:
    """Every run's family figures, one subsection per run that has any."""

    runs: tuple[FamilyFigures, ...]

    def blocks(self) -> list[Block]:
        if not self.runs:
            return []
        out: list[Block] = [Heading(2, "Each model's own figures", id="model-figures"),
                            Paragraph("Figures a run's model family draws when the run finishes (what that kind of "
                                      "model is for), as the run saved them.", cls="meta")]
        for r in self.runs:
            out += r.blocks()
        return out


# -- a sweep ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepRow:
    """A value of the swept setting: its label, its run, one cell per column of the sweep's table."""

    value: str
    run: str
    cells: tuple[str, ...]
    baseline: bool = False


@dataclass(frozen=True)
class SweepSection:
    """A sweep: the values, the panel of results against the value, one table row per value, the
    disentanglement curve where the data's factors are known, and what it all shows."""

    parameter: str
    values: tuple[str, ...]
    plot: Optional[Figure]
    columns: tuple[str, ...]
    table: tuple[SweepRow, ...]
    observation: Observation
    anomaly_note: str = ""
    recon: Optional[Figure] = None
    mig: Optional[Figure] = None
    mig_sentence: str = ""

    def blocks(self) -> list[Block]:
        out: list[Block] = [Heading(2, ("Sweep over ", Code(self.parameter))),
                            Paragraph("Values: " + ", ".join(self.values) + ".")]
        if self.plot is not None:
            out.append(self.plot)
        out.append(Table((self.parameter, "run", *self.columns),
                         [Row((r.value + (" (baseline)" if r.baseline else ""), Code(r.run), *r.cells),
                              cls="baseline" if r.baseline else "") for r in self.table],
                         numeric=(True, False) + (True,) * len(self.columns), id="sweep"))
        if self.anomaly_note:
            out.append(Paragraph(self.anomaly_note, cls="meta", id="anomaly-note"))
        if self.mig is not None:
            out += [Heading(3, "Disentanglement", id="disentanglement"), self.mig]
        if self.mig_sentence:
            out.append(Paragraph(self.mig_sentence, cls="lead", id="mig-trade-off"))
        out += [Heading(3, "Observation"), Paragraph(self.observation.lead, cls="lead")] + self.observation.blocks()
        if self.recon is not None:
            out.append(self.recon)
        return out


# -- method notes and appendix ---------------------------------------------------------------------
@dataclass(frozen=True)
class Note:
    """One of the study's own method notes."""

    title: str
    text: str


@dataclass(frozen=True)
class ReevaluatedRow:
    """A run's final val loss under the study's protocol and under the other, and their relative difference."""

    key: str
    name: str
    base: str
    other: str
    rel: str


@dataclass(frozen=True)
class ProtocolEffect:
    """The runs evaluated again under another protocol (a study's ``reevaluate``): how much it moves them."""

    label: str
    other: str
    description: str
    rows: tuple[ReevaluatedRow, ...]
    summary: str
    missing: tuple[str, ...] = ()

    def blocks(self) -> list[Block]:
        missing = (f" Not measured under the {self.other} protocol: {', '.join(self.missing)}." if self.missing
                   else "")
        return [Paragraph((Bold("How much the protocol matters."),
                           f" {self.other.capitalize()} protocol: {self.description}.")),
                Table(("run", f"val loss ({self.label} protocol)", f"val loss ({self.other})", "relative difference"),
                      [Row((Code(r.name), r.base, r.other, r.rel)) for r in self.rows],
                      numeric=(False, True, True, True), id="reevaluated"),
                Paragraph(self.summary + missing)]


@dataclass(frozen=True)
class MethodNotes:
    """The study's own notes on its method, and the effect of its protocol when it measured one."""

    notes: tuple[Note, ...] = ()
    effect: Optional[ProtocolEffect] = None

    def blocks(self) -> list[Block]:
        if not self.notes and self.effect is None:
            return []
        inner: list[Block] = []
        if self.notes:
            inner.append(ListBlock([((Bold(n.title + "."), " ", n.text) if n.title else n.text) for n in self.notes],
                                   ordered=True))
        if self.effect is not None:
            inner += self.effect.blocks()
        return [Heading(2, "Method notes", id="method-notes"), Box(inner, cls="notes")]


@dataclass(frozen=True)
class Doc:
    """A definition in the appendix: a metric, a loss term (``name``: what it is called) or a diagnostic."""

    key: str
    text: str
    name: str = ""


@dataclass(frozen=True)
class RunRow:
    """A run in the appendix's table: where it is and what it was."""

    key: str
    name: str
    dir: str
    hash: str
    epochs: str


@dataclass(frozen=True)
class Appendix:
    """What the losses and metrics are, the loss terms and diagnostics the runs have, and every run's directory."""

    loss_intro: str
    metric_docs: tuple[Doc, ...]
    term_docs: tuple[Doc, ...]
    family_docs: tuple[Doc, ...]
    runs: tuple[RunRow, ...] = field(default=())

    def blocks(self) -> list[Block]:
        out: list[Block] = [Heading(2, "Appendix: metric definitions", id="appendix"), Paragraph(self.loss_intro)]
        if self.metric_docs:
            out.append(DefinitionList([(Code(d.key), d.text) for d in self.metric_docs]))
        if self.term_docs:
            out += [Heading(3, "Loss terms", id="loss-terms"),
                    DefinitionList([((Code(d.key), f" ({d.name})"), d.text) for d in self.term_docs])]
        if self.family_docs:
            out += [Heading(3, ("Model diagnostics (", Code("metrics.family"), ")"), id="family-diagnostics"),
                    DefinitionList([(Code(d.key), d.text) for d in self.family_docs])]
        out += [Heading(3, "Runs"),
                Table(("key", "name", "directory", "config hash", "epochs"),
                      [Row((Code(r.key), r.name, Code(r.dir), Code(r.hash), r.epochs)) for r in self.runs],
                      numeric=(False, False, False, False, True), id="runs")]
        return out


class Section(Protocol):
    """What every section above is: an object that says itself as blocks."""

    def blocks(self) -> list[Block]: ...


def all_blocks(sections: Sequence[Section]) -> list[Block]:
    """Every section's blocks, in order."""
    out: list[Block] = []
    for s in sections:
        out += s.blocks()
    return out
