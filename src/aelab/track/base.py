"""What every tracker shares: events in, one tracked run per aelab run, everything read back from the run.

A tracker is an event consumer (:mod:`aelab.runs.events`): ``train(..., on_event=tracker)``,
``run_study(..., on_event=tracker)``. It follows each run through its events — a tracked run opens
at :class:`~aelab.runs.events.RunStarted`, each :class:`~aelab.runs.events.EpochEnded` is logged as
it comes (so a dashboard shows training live), and at :class:`~aelab.runs.events.RunFinished` the
rest is read from the finished run directory: epochs a resumed run trained before this call
(from ``history.json``, so the logged curves always equal the history), the final diagnostics
(``metrics.json``), the figures, the codes and the tags. What is logged is therefore what the run
directory holds, not a second account of it.

Runs of one study or sweep are grouped: a run directory ``<out>/runs/<name>-<hash>`` whose ``<out>``
holds a study's output mark belongs to the group ``<out>``; on :meth:`EventTracker.close` the
group's report (``report.md``/``report.html``, its figures and ``results.json``) is logged with it,
and so are the group's runs that this call did not train (finished earlier, reused from their
directories): a tracked study holds all of its runs. ``group="name"`` puts every run of the
tracker under that name instead.

A tracker never stops training: a logging failure (a locked database, a full disk) prints one
line and the tracker goes quiet for the rest of the call (``strict=True`` raises instead, as the
tests use it). Subclasses implement the ``_open``/``_epoch``/``_final``/``_end`` hooks and the
group hooks.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from .. import __version__
from ..artifacts import ConfigFile, HistoryFile, MetricsFile, RunRecord, load_npz, read_dict, retrain_fix
from ..config import RunConfig
from ..data import DataCache, DataOptions
from ..errors import AelabError
from ..models import FAMILIES
from ..runs.events import EpochEnded, Event, RunFinished, RunStarted

#: a study's or sweep's output mark (aelab.study.output.OUTPUT_MARK; named here, not imported, since
#: the study layer pulls in the report's dependencies and a tracker needs only the file's name)
OUTPUT_MARK = ".aelab-output.json"
#: the figures ``aelab latent`` may have left in a run directory, logged when present
LATENT_FIGURES = ("map.png", "interpolation.png", "traversal.png", "manifold.png", "prior.png")
#: the codes shown in a projector, at most (codes.npz holds up to 5,000 test codes)
MAX_PROJECTOR = 5000


class TrackerError(AelabError):
    """A tracker cannot start or write (a missing package, an unreachable store, a bad directory)."""


def missing(package: str, err: ImportError) -> TrackerError:
    """The one line for a tracker whose package is not installed."""
    return TrackerError(f"the {package} tracker needs the {package} package ({err.name or err} is not installed); "
                        "install it with pip install 'aelab[track]'")


# -- what a run directory holds, as trackers log it ----------------------------------------------------
def _leaves(d: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from _leaves(v, key + ".")
        else:
            yield key, v


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as dotted keys (``model.encoder``, ``train.lr`` …): numbers, strings and booleans
    as they are, a list or None as its JSON text (what a tracker's parameters can hold)."""
    out = {}
    for k, v in _leaves(config):
        out[k] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
    return out


def diagnostics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``metrics.json`` as ``diagnostics/<dotted path>`` (``diagnostics/bce``,
    ``diagnostics/latent.probe_accuracy`` …); lists (per-feature errors) and text are left out."""
    out = {}
    for k, v in _leaves(metrics):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[f"diagnostics/{k}"] = float(v)
    return out


def epoch_values(train: Mapping[str, float], val: Mapping[str, float], seconds: float,
                 images_per_second: float) -> dict[str, float]:
    """One epoch's values under the trackers' names: ``train/<term>`` and ``val/<term>`` for every
    name of :class:`~aelab.runs.events.EpochEnded` (``loss``, ``penalty``, ``reconstruction``, the
    family's terms), ``time/epoch_seconds`` and ``time/images_per_second``."""
    out = {f"train/{k}": float(v) for k, v in train.items()}
    out.update({f"val/{k}": float(v) for k, v in val.items()})
    out["time/epoch_seconds"] = float(seconds)
    out["time/images_per_second"] = float(images_per_second)
    return out


def history_epochs(history: Mapping[str, Any]) -> dict[int, dict[str, float]]:
    """``history.json`` as :func:`epoch_values` per epoch number: the same names and values the
    events of those epochs carried (``loss`` → ``train/loss``, ``val_terms.kl`` → ``val/kl`` …)."""
    out = {}
    for i, ep in enumerate(history.get("epoch") or range(1, len(history["loss"]) + 1)):
        def at(key: str) -> float:
            seq = history.get(key) or []
            return seq[i] if i < len(seq) else math.nan

        train = {"loss": at("loss"), "penalty": at("penalty"),
                 **{k: v[i] for k, v in (history.get("terms") or {}).items() if i < len(v)}}
        val = {"loss": at("val_loss"), "penalty": at("val_penalty"),
               **{k: v[i] for k, v in (history.get("val_terms") or {}).items() if i < len(v)}}
        vals = epoch_values(train, val, at("epoch_seconds"), at("images_per_second"))
        out[int(ep)] = {k: v for k, v in vals.items() if math.isfinite(v)}
    return out


@dataclass
class RunFiles:
    """A finished run directory as trackers log it (read once, when the run finishes)."""

    run_dir: Path
    config: dict
    history: dict
    metrics: dict
    record: dict
    codes: Optional[dict] = None
    figures: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def read(cls, run_dir: Path) -> "RunFiles":
        fix = retrain_fix(run_dir)
        config = read_dict(ConfigFile, run_dir / "config.json", fix)
        history = read_dict(HistoryFile, run_dir / "history.json", fix)
        metrics = read_dict(MetricsFile, run_dir / "metrics.json", fix)
        record = read_dict(RunRecord, run_dir / "run.json", fix)
        codes = load_npz(run_dir / "codes.npz", "codes.npz", fix) if (run_dir / "codes.npz").is_file() else None
        figures = {"recon.png": run_dir / "recon.png"} if (run_dir / "recon.png").is_file() else {}
        for name in LATENT_FIGURES:  # aelab latent's figures, when it was run on this directory
            if (run_dir / "latent" / name).is_file():
                figures[f"latent/{name}"] = run_dir / "latent" / name
        return cls(run_dir, config, history, metrics, record, codes, figures)

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.run_dir.name)

    def tags(self) -> dict[str, str]:
        """What identifies the run beyond its parameters: the data's fingerprint and source, the
        seed, aelab's version, the config's hash and the run directory."""
        src = self.record.get("data_source") or {}
        tags = {
            "aelab.version": str(self.record.get("aelab_version") or __version__),
            "aelab.seed": str(self.config.get("train", {}).get("seed")),
            "aelab.config_hash": str(self.record.get("config_hash") or self.config.get("config_hash")),
            "aelab.data": str(src.get("dataset") or self.config.get("data", {}).get("dataset")),
            "aelab.run_dir": str(self.run_dir),
        }
        if src.get("sha256"):
            tags["aelab.data_sha256"] = str(src["sha256"])
        if src.get("source"):
            tags["aelab.data_source"] = str(src["source"])
        return tags

    def summary_markdown(self) -> str:
        """The run in a few lines of Markdown: what it trained on, its final losses and diagnostics."""
        h = self.history
        tags = self.tags()
        lines = [f"**{self.name}**: {len(h['loss'])} epochs on {tags['aelab.data']} "
                 f"(data SHA-256 `{tags.get('aelab.data_sha256', 'n/a')}`), seed {tags['aelab.seed']}, "
                 f"aelab {tags['aelab.version']}, config `{tags['aelab.config_hash']}`", "",
                 f"final loss {h['loss'][-1]:.6g}, val_loss {h['val_loss'][-1]:.6g}", "",
                 "| diagnostic | value |", "|---|--:|"]
        lines += [f"| {k.removeprefix('diagnostics/')} | {v:.6g} |" for k, v in diagnostics(self.metrics).items()]
        return "\n".join(lines)


# -- pictures of the codes ------------------------------------------------------------------------------
def sample_shape(config: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(int(d) for d in (config.get("model", {}).get("input_shape") or ()))


def code_kind(config: Mapping[str, Any]) -> str:
    """What the run's ``encode()`` gives (``Family.code``): "deterministic", "mean" (a posterior's μ)
    or "discrete" (codebook indices: names, not coordinates — no map, no projector)."""
    fam = FAMILIES.get(str(config.get("model", {}).get("family") or "ae"))
    return str(getattr(fam, "code", "deterministic"))


def code_images(files: RunFiles, data) -> Optional[np.ndarray]:
    """The test images behind codes.npz's test codes, ``(N, H, W)`` gray or ``(N, H, W, 3)`` colour in
    [0, 1]; None for data that is not images (a table) or when the data cannot be read now."""
    shape = sample_shape(files.config)
    if files.codes is None or "test_index" not in files.codes or len(shape) != 3 or shape[0] not in (1, 3):
        return None
    cfg = RunConfig.model_validate({k: v for k, v in files.config.items() if k != "config_hash"})
    try:
        ds = data.dataset(cfg.data)
    except AelabError:  # the data moved or is offline: the codes are logged without their pictures
        return None
    x = np.asarray(ds.x_test)[files.codes["test_index"][:MAX_PROJECTOR]].astype(np.float32)
    lo, hi = ds.value_range if ds.value_range else (float(x.min()), float(x.max()))
    x = np.clip((x - lo) / ((hi - lo) or 1.0), 0.0, 1.0).reshape(len(x), *shape)
    return x[:, 0] if shape[0] == 1 else np.transpose(x, (0, 2, 3, 1))


def latent_map_png(files: RunFiles, images: Optional[np.ndarray]) -> Optional[bytes]:
    """The test codes in 2-D (the code itself when it has two dimensions, else PCA), coloured by
    label, a thumbnail of one image per class at its point: ``aelab latent``'s map without t-SNE
    (seconds, not minutes, at the end of every run). None without codes or labels."""
    from ..latent import embed_2d  # deferred: scikit-learn, only when a run finishes
    from ..plots.latent import latent_maps, map_panel  # deferred: matplotlib, only when a run finishes

    codes = files.codes
    if codes is None or "test_codes" not in codes or "test_labels" not in codes or code_kind(files.config) == "discrete":
        return None
    z = np.asarray(codes["test_codes"])[:MAX_PROJECTOR]
    labels = np.asarray(codes["test_labels"])[:MAX_PROJECTOR]
    dims = z.shape[1]
    method = "code" if dims <= 2 else "pca"
    stochastic = code_kind(files.config) == "mean"
    panel = map_panel(method, embed_2d(z, method), labels, dims, stochastic=stochastic, title=files.name)
    shape = sample_shape(files.config)
    thumbs = None
    if images is not None:
        thumbs = images.reshape(len(images), -1) if shape[0] == 1 else np.transpose(images, (0, 3, 1, 2)).reshape(
            len(images), -1)
    names = [str(c) for c in codes["class_names"]] if "class_names" in codes else ()
    return latent_maps([panel], thumbs=thumbs, image_shape=shape if thumbs is not None else None,
                       class_names=names)


def sprite(images: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The Embedding Projector's sprite: every image on a square grid, row by row in the codes'
    order, as uint8 RGB ``(side·h, side·w, 3)`` (white on black, as the data is drawn); (sprite,
    h, w). The projector reads image ``i`` at grid cell ``i``."""
    n, h, w = images.shape[:3]
    side = math.ceil(math.sqrt(n))
    rgb = images if images.ndim == 4 else np.repeat(images[..., None], 3, axis=3)
    grid = np.zeros((side * h, side * w, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, side)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = np.round(rgb[i] * 255).astype(np.uint8)
    return grid, h, w


def png_bytes(array: np.ndarray) -> bytes:
    """An ``(H, W, 3)`` uint8 array as PNG (PIL, which matplotlib already needs)."""
    from PIL import Image  # deferred: pillow (matplotlib's dependency), only for a sprite

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(height, width) of a PNG, from its IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return int.from_bytes(png[20:24], "big"), int.from_bytes(png[16:20], "big")


def metadata_rows(codes: Mapping[str, np.ndarray], n: int) -> tuple[list[str], list[list[str]]]:
    """The projector's metadata.tsv: a header and one row per code — its label (and class name),
    its reconstruction error and its position in the test split."""
    header, cols = [], []
    if "test_labels" in codes:
        labels = np.asarray(codes["test_labels"])[:n]
        header.append("label")
        cols.append([str(int(x)) for x in labels])
        if "class_names" in codes:
            names = [str(c) for c in codes["class_names"]]
            header.append("class")
            cols.append([names[int(x)] if 0 <= int(x) < len(names) else str(int(x)) for x in labels])
    if "test_errors" in codes:
        header.append("reconstruction_error")
        cols.append([f"{float(x):.6g}" for x in np.asarray(codes["test_errors"])[:n]])
    header.append("test_index")
    cols.append([str(int(x)) for x in np.asarray(codes["test_index"])[:n]])
    return header, [list(r) for r in zip(*cols)]


# -- the runs and groups a tracker follows ---------------------------------------------------------------
@dataclass
class Group:
    """Runs tracked together: a study's or sweep's output directory, or a name given to the tracker."""

    name: str
    output: Optional[Path] = None
    describe: str = ""
    handle: Any = None
    runs: list["Tracked"] = field(default_factory=list)


@dataclass
class Tracked:
    """One aelab run as a tracker follows it."""

    name: str
    run_dir: Path
    group: Optional[Group]
    start_epoch: int = 0
    logged: set = field(default_factory=set)
    handle: Any = None
    finished: bool = False


def output_of(run_dir: Path) -> Optional[Path]:
    """The study's or sweep's output directory holding ``run_dir`` (``<out>/runs/<name>-<hash>``), or None."""
    out = run_dir.parent.parent
    if run_dir.parent.name == "runs" and (out / OUTPUT_MARK).is_file():
        return out
    return None


class EventTracker:
    """The base of aelab's trackers: a callable taking training events, closed with :meth:`close`
    (or used as a context manager). See the module docstring.

    ``group``: a name under which every run of this tracker is grouped (default: a study's or
    sweep's runs under its output directory's name, a lone run alone). ``output``: the output
    directory of the study or sweep this tracker follows, so that its report and its runs reused
    from earlier calls are logged even when nothing trains (found from the run directories
    otherwise). ``data``: an :class:`aelab.data.DataCache` to read the runs' test images from
    (the projector's sprite, the map's thumbnails); ``strict``: raise logging errors instead of
    saying them once and going quiet."""

    kind = "tracker"

    def __init__(self, *, group: Optional[str] = None, output: Optional[Path] = None, data=None,
                 strict: bool = False) -> None:
        self._group_name = group
        self._groups: dict[str, Group] = {}
        self._runs: dict[str, Tracked] = {}
        self._data = data
        self._strict = strict
        self._broken: Optional[str] = None
        self._closed = False
        self.call_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        if output is not None:
            self._group_for(Path(output))

    # -- the event consumer ------------------------------------------------------------------------
    def __call__(self, ev: Event) -> None:
        if self._broken or self._closed:
            return
        self._guard(self._on_event, ev)

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, RunStarted):
            self._started(ev.run, Path(ev.run_dir), ev.start_epoch, fresh=True)
        elif isinstance(ev, EpochEnded):
            t = self._started(ev.run, Path(ev.run_dir), ev.epoch - 1)
            self._epoch(t, ev.epoch, epoch_values(ev.train, ev.val, ev.seconds, ev.images_per_second))
            t.logged.add(ev.epoch)
        elif isinstance(ev, RunFinished):
            self._finished(self._started(ev.run, Path(ev.run_dir), 0))

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001 — tracking never costs a training run; said once
            if self._strict:
                raise
            self._broken = f"{type(err).__name__}: {err}".splitlines()[0]
            print(f"aelab: the {self.kind} tracker stopped ({self._broken}); training goes on untracked",
                  file=sys.stderr, flush=True)

    def _started(self, name: str, run_dir: Path, start_epoch: int, fresh: bool = False) -> Tracked:
        key = str(run_dir.resolve())
        t = self._runs.get(key)
        if t is None or (fresh and t.finished):  # new, or the same directory trained again (overwrite)
            t = Tracked(name, run_dir, self._group_of(run_dir), start_epoch)
            self._runs[key] = t
            if t.group is not None:
                t.group.runs.append(t)
                self._open_group_once(t.group)
            self._open(t)
        return t

    def _finished(self, t: Tracked) -> None:
        files = RunFiles.read(t.run_dir)
        for ep, vals in sorted(history_epochs(files.history).items()):  # epochs before a resume, or all
            if ep not in t.logged:
                self._epoch(t, ep, vals)
                t.logged.add(ep)
        self._final(t, files)
        self._end(t, "FINISHED")
        t.finished = True

    def log_run(self, run_dir: str | Path) -> None:
        """Log a finished run from its directory (every epoch, diagnostics, figures, codes, tags):
        a run trained earlier, or one this tracker's events did not reach."""
        run_dir = Path(run_dir)
        files = RunFiles.read(run_dir)
        self._finished(self._started(files.name, run_dir, 0, fresh=True))

    # -- groups ------------------------------------------------------------------------------------
    def _group_of(self, run_dir: Path) -> Optional[Group]:
        out = output_of(run_dir)
        if out is None and self._group_name is None:
            return None  # a lone run
        return self._group_for(out)

    def _group_for(self, out: Optional[Path]) -> Group:
        """The group of a study's output directory ``out``; with ``group=`` given, the one named group."""
        key = f"name:{self._group_name}" if self._group_name is not None else str(out.resolve())
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = Group(self._group_name or out.resolve().name, out)
        elif g.output is None:
            g.output = out
        return g

    def _open_group_once(self, g: Group) -> None:
        """Open the group's tracked record the first time it is needed, saying what the output
        directory holds (its mark's description: the study or sweep, its data) once it exists."""
        if g.handle is not None:
            return
        if g.output is not None and not g.describe:
            try:
                mark = json.loads((g.output / OUTPUT_MARK).read_text(encoding="utf-8"))
                g.describe = str(mark.get("describe", "")) if isinstance(mark, dict) else ""
            except (OSError, ValueError):
                pass
        self._open_group(g)

    def _finish_group(self, g: Group) -> None:
        """At close: the group's runs this call did not train (reused), then its report."""
        if g.output is None:
            return
        results = g.output / "results.json"
        if not results.is_file():  # the study stopped before writing it: nothing more to log
            return
        res = json.loads(results.read_text(encoding="utf-8"))
        dirs = [r.get("dir") for r in res.get("runs", {}).values()]
        for reps in (res.get("replicates") or {}).get("runs", {}).values():
            dirs += [r.get("dir") for r in reps[1:]]
        for rel in dirs:
            if not rel:
                continue
            rd = g.output / rel
            if str(rd.resolve()) not in self._runs and (rd / "DONE").is_file():
                self.log_run(rd)
        self._open_group_once(g)
        self._group_report(g, res)

    # -- closing -----------------------------------------------------------------------------------
    def close(self) -> None:
        """End the tracked runs (those that did not finish as KILLED), log each study's or sweep's
        report and reused runs, and release the store. Closing twice does nothing."""
        if self._closed:
            return
        try:
            if not self._broken:
                for t in self._runs.values():
                    if not t.finished:
                        self._guard(self._end, t, "KILLED")
                for g in list(self._groups.values()):
                    if not self._broken:
                        self._guard(self._finish_group, g)
                for g in self._groups.values():
                    if g.handle is not None and not self._broken:
                        self._guard(self._end_group, g)
        finally:
            self._closed = True
            self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- shared helpers for subclasses -------------------------------------------------------------
    @property
    def data(self):
        if self._data is None:
            self._data = DataCache(DataOptions(progress=False))
        return self._data

    # -- the hooks ---------------------------------------------------------------------------------
    def _open(self, t: Tracked) -> None:
        raise NotImplementedError

    def _epoch(self, t: Tracked, epoch: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def _final(self, t: Tracked, files: RunFiles) -> None:
        raise NotImplementedError

    def _end(self, t: Tracked, status: str) -> None:
        raise NotImplementedError

    def _open_group(self, g: Group) -> None:
        raise NotImplementedError

    def _group_report(self, g: Group, results: dict) -> None:
        raise NotImplementedError

    def _end_group(self, g: Group) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Release the store (close files, connections); called once, by :meth:`close`."""
