"""``aelab.track.tensorboard(log_dir)``: TensorBoard event files and an Embedding Projector folder per run.

Written with PyTorch's own ``torch.utils.tensorboard.SummaryWriter`` (TensorBoard's event-file
format and protos; no TensorFlow needed). Per run, ``<log_dir>/[<study or sweep>/]<run name>/``:

* scalars per epoch (step = the epoch): ``train/<term>`` and ``val/<term>`` for every loss term of
  :class:`~aelab.runs.events.EpochEnded` (``loss``, ``penalty``, ``reconstruction``, ``kl`` …),
  ``time/epoch_seconds``, ``time/images_per_second``; at the last epoch ``diagnostics/<path>``
  for every number of ``metrics.json``;
* the config as hyperparameters (the HParams dashboard: flattened dotted keys, the final losses
  as its metrics) and as text; the run's summary, ``run.json`` and the tags (data SHA-256, data
  set, seed, aelab version, config hash) as text;
* images: ``recon.png``, a latent map of the test codes (PCA, or the code itself in 2-D, one
  thumbnail per class) and ``aelab latent``'s figures when present;
* ``plugins/org_tensorflow_tensorboard_projector/`` (the projector plugin's own asset folder):
  ``tensors.tsv`` (the test codes of codes.npz), ``metadata.tsv`` (label,
  class, reconstruction error, test index; a header row), ``sprite.png`` (the test images in the
  codes' order) and ``projector_config.pbtxt`` — the folder TensorBoard's projector plugin reads,
  so its Projector tab opens the codes with their images.

A study's or sweep's group directory gets its report (``report.md`` as text, its figures as images).
An existing directory is never written into: a run or group whose directory exists gets a
timestamped one beside it, as ``aelab train`` names run directories.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np

from .._atomic import check_out_path
from .base import (MAX_PROJECTOR, EventTracker, Group, RunFiles, Tracked, TrackerError, code_images, code_kind,
                   diagnostics,
                   flat_config, latent_map_png, metadata_rows, missing, png_bytes, png_size, sprite)

#: the projector's largest sprite side in pixels (its WebGL texture)
SPRITE_MAX = 8192
#: PNG colour types (IHDR byte 25) → TensorBoard's image colorspace
_COLORSPACE = {0: 1, 4: 2, 2: 3, 6: 4}


def _safe(name: str) -> str:
    """A run's name as one directory name (no separators)."""
    out = "".join(c if c.isalnum() or c in "-_.=@+," else "_" for c in name).strip(".")
    return out or "run"


def _fresh(path: Path) -> Path:
    """``path``, or a timestamped sibling when it exists already (nothing is written into old logs)."""
    if not path.exists():
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        cand = path.with_name(f"{path.name}-{stamp}" + (f"-{k}" if k else ""))
        if not cand.exists():
            return cand
    raise TrackerError(f"{path}: no free directory name beside it; choose another --track-dir")


class TensorBoardTracker(EventTracker):
    """Logs each run into ``log_dir`` as TensorBoard reads it (see the module docstring); open the
    result with ``tensorboard --logdir <log_dir>``. ``projector``: write the Embedding Projector
    folder (test codes, labels, sprite). Other keywords: :class:`~aelab.track.base.EventTracker`."""

    kind = "tensorboard"

    def __init__(self, log_dir: str | Path = "tb-logs", *, projector: bool = True, group: Optional[str] = None,
                 output: Optional[Path] = None, data=None, strict: bool = False) -> None:
        try:
            from tensorboard.compat.proto.summary_pb2 import Summary  # deferred: tensorboard is optional (aelab[track])
            from torch.utils.tensorboard import SummaryWriter  # deferred: needs tensorboard, optional (aelab[track])
            from torch.utils.tensorboard.summary import hparams  # deferred: needs tensorboard, optional
        except ImportError as err:
            raise missing("tensorboard", err) from None
        self._Summary, self._Writer, self._hparams = Summary, SummaryWriter, hparams
        self.log_dir = Path(check_out_path(Path(log_dir), "--track-dir"))
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise TrackerError(f"--track-dir {self.log_dir} is a file; give a directory for the TensorBoard logs")
        self.projector = projector
        self._writers: list = []
        super().__init__(group=group, output=output, data=data, strict=strict)

    # -- where things go -------------------------------------------------------------------------------
    def run_path(self, run_dir: str | Path) -> Optional[Path]:
        """The TensorBoard directory this tracker wrote for the run in ``run_dir`` (None: not tracked)."""
        t = self._runs.get(str(Path(run_dir).resolve()))
        return None if t is None or t.handle is None else Path(t.handle.log_dir)

    def _writer(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        w = self._Writer(log_dir=str(path), flush_secs=10)
        self._writers.append(w)
        return w

    # -- runs --------------------------------------------------------------------------------------------
    def _open(self, t: Tracked) -> None:
        parent = Path(t.group.handle["dir"]) if t.group is not None else self.log_dir
        t.handle = self._writer(_fresh(parent / _safe(t.name)))

    def _epoch(self, t: Tracked, epoch: int, values: dict[str, float]) -> None:
        for tag, v in values.items():
            t.handle.add_scalar(tag, v, global_step=epoch)

    def _final(self, t: Tracked, files: RunFiles) -> None:
        w, h = t.handle, files.history
        step = int((h.get("epoch") or [len(h["loss"])])[-1])
        for tag, v in diagnostics(files.metrics).items():
            w.add_scalar(tag, v, global_step=step)
        # the config as hyperparameters, the final losses as the HParams dashboard's metrics
        params = {k: v for k, v in flat_config(files.config).items() if k != "config_hash"}
        metrics = {"train/loss": float(h["loss"][-1]), "val/loss": float(h["val_loss"][-1])}
        for summary in self._hparams(params, metrics):
            w.file_writer.add_summary(summary, step)
        w.add_text("config", "```json\n" + json.dumps(files.config, indent=2) + "\n```", step)
        w.add_text("summary", files.summary_markdown(), step)
        w.add_text("run.json", "```json\n" + json.dumps(files.record, indent=2, default=str) + "\n```", step)
        for k, v in files.tags().items():
            w.add_text(f"tags/{k.removeprefix('aelab.')}", v, step)
        for name, path in files.figures.items():
            self._image(w, f"figures/{name.removesuffix('.png')}", path.read_bytes(), step)
        images = code_images(files, self.data)
        png = latent_map_png(files, images)
        if png is not None:
            self._image(w, "figures/latent_map", png, step)
        if (self.projector and files.codes is not None and "test_codes" in files.codes
                and code_kind(files.config) != "discrete"):
            write_projector(projector_folder(Path(w.log_dir)), files, images)
        w.flush()

    def _image(self, w, tag: str, png: bytes, step: int) -> None:
        """A PNG as an image summary, its bytes as they are (nothing decoded and encoded again)."""
        height, width = png_size(png)
        img = self._Summary.Image(height=height, width=width, colorspace=_COLORSPACE.get(png[25], 4),
                                  encoded_image_string=png)
        w.file_writer.add_summary(self._Summary(value=[self._Summary.Value(tag=tag, image=img)]), step)

    def _end(self, t: Tracked, status: str) -> None:
        if t.handle is not None:
            t.handle.close()

    # -- groups ------------------------------------------------------------------------------------------
    def _open_group(self, g: Group) -> None:
        path = _fresh(self.log_dir / _safe(g.name))
        path.mkdir(parents=True, exist_ok=True)
        g.handle = {"dir": str(path), "writer": None}

    def _group_report(self, g: Group, results: dict) -> None:
        out = g.output
        if out is None:
            return
        w = g.handle["writer"] = g.handle["writer"] or self._writer(Path(g.handle["dir"]))
        if g.describe:
            w.add_text("study", g.describe, 0)
        if (out / "report.md").is_file():
            w.add_text("report", (out / "report.md").read_text(encoding="utf-8"), 0)
        rows = ["| run | epochs | loss | val_loss |", "|---|--:|--:|--:|"]
        for name, r in results.get("runs", {}).items():
            hist = r.get("history") or {}
            if hist.get("loss"):
                rows.append(f"| {name} | {len(hist['loss'])} | {hist['loss'][-1]:.6g} | {hist['val_loss'][-1]:.6g} |")
        w.add_text("runs", "\n".join(rows), 0)
        for png in sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []:
            self._image(w, f"report/{png.stem}", png.read_bytes(), 0)
        w.flush()

    def _end_group(self, g: Group) -> None:
        if g.handle.get("writer") is not None:
            g.handle["writer"].close()

    def _release(self) -> None:
        for w in self._writers:
            w.close()


def projector_folder(run_path: Path) -> Path:
    """Where TensorBoard's projector plugin reads a run's projector files:
    ``<run>/plugins/org_tensorflow_tensorboard_projector/`` (its asset directory, named by the plugin)."""
    from tensorboard.plugins.projector import metadata  # deferred: tensorboard is optional (aelab[track])

    return run_path / metadata.PLUGINS_DIR / metadata.PLUGIN_ASSETS_NAME


def write_projector(folder: Path, files: RunFiles, images: Optional[np.ndarray]) -> None:
    """The Embedding Projector's files for a run's test codes in ``folder`` (see the module docstring).

    The codes, the metadata rows and the sprite's cells are in the same order; with a sprite, as
    many codes as its largest side (8,192 px) holds images, at most 5,000."""
    from google.protobuf import text_format  # deferred: protobuf comes with tensorboard (aelab[track])
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig  # deferred: optional

    codes = files.codes
    z = np.asarray(codes["test_codes"], dtype=np.float32)
    n = min(len(z), MAX_PROJECTOR)
    if images is not None:
        per_side = SPRITE_MAX // max(images.shape[1:3])
        n = min(n, per_side * per_side)
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "tensors.tsv", z[:n].reshape(n, -1), fmt="%.8g", delimiter="\t")
    header, rows = metadata_rows(codes, n)
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows] if len(header) > 1 else ["\t".join(r) for r in rows]
    (folder / "metadata.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = ProjectorConfig()
    emb = cfg.embeddings.add()
    emb.tensor_name = f"{files.name} test codes"
    emb.tensor_path = "tensors.tsv"
    emb.metadata_path = "metadata.tsv"
    emb.tensor_shape.extend([n, int(z[:n].reshape(n, -1).shape[1])])
    if images is not None:
        grid, h, w = sprite(images[:n])
        (folder / "sprite.png").write_bytes(png_bytes(grid))
        emb.sprite.image_path = "sprite.png"
        emb.sprite.single_image_dim.extend([w, h])
    (folder / "projector_config.pbtxt").write_text(text_format.MessageToString(cfg), encoding="utf-8")
