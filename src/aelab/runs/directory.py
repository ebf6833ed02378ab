"""A run directory: its layout, its state, its mark, its checkpoint, and reading a finished run back.

A run directory is aelab's when it carries :data:`RUN_MARK` (written before any other file), or
(written before marks) when it holds only the files aelab writes (:data:`RUN_LAYOUT`) and a
config.json of aelab's shape. It is reused only by the config whose fingerprint it records
(:func:`run_dir_state`). Every file is written atomically; ``DONE`` last (``finish.py``).
Formats: ``docs/formats.md``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import safetensors.torch  # called through the module, so a test can stand in for it (a full disk)
import torch

from .._atomic import atomic_path, write_json
from .._lock import LOCK_NAME, is_lock_file
from .._owned import foreign, is_own_temp, names_text, read_mark, remove_own, write_mark
from ..artifacts import (CheckpointMeta, HistoryFile, MetricsFile, check_model_tensors, checkpoint_problem, read,
                         read_config, read_dict, retrain_fix, sha256_file, verify_run, load_tensors, warn)
from ..config import RunConfig
from ..engine.loop import LoopState
from ..engine.optimizers import state_shapes
from ..errors import AelabError, WeightsError
from ..models import build_model
from .codes import CODES_FILE, LATENT_LAYOUT
from .spec import RunSpec

CHECKPOINT = "checkpoint"
#: the mark aelab writes first into every run directory (docs/formats.md): the directory is aelab's
RUN_MARK = ".aelab-run.json"
RUN_FORMAT = "aelab-run"
#: every name aelab writes in a run directory: cleanup (--overwrite, a failed run's tidy-up, a dropped
#: checkpoint, temporary files) removes these and nothing else; a new artifact must be added here
RUN_LAYOUT = {
    RUN_MARK: None, "config.json": None, "history.json": None, "metrics.json": None, "samples.npz": None,
    "weights.safetensors": None, "recon.png": None, "run.json": None, "DONE": None, CODES_FILE: None,
    CHECKPOINT: {"state.safetensors": None, "state.json": None},
    "figures": {"*.png": None},  # a family's own figures (Family.figures; finish.py)
    "latent": dict(LATENT_LAYOUT),  # aelab latent's default output
    # aelab export's default output (aelab.export.layout.EXPORT_LAYOUT, a layer above: the same names)
    "onnx": {".aelab-export.json": None, "encoder.onnx": None, "decoder.onnx": None, "export.json": None},
}


@dataclass
class RunResult:
    """A trained (or reused) run: where it is, its config, its history and metrics (as saved).
    ``cached``: read back from a finished run directory rather than trained by this call."""

    run_dir: Path
    config: RunConfig
    history: dict
    metrics: dict
    cached: bool = False


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / "DONE").exists()


# -- who may write a run directory ------------------------------------------------------------------
def entries(run_dir: Path) -> list[Path]:
    """What a run directory holds, its lock file aside."""
    return [p for p in run_dir.iterdir() if not is_lock_file(p.name)]


def write_run_mark(spec: RunSpec) -> None:
    """Mark the run's directory as an aelab run directory (for its config): before any other run file."""
    write_mark(spec.run_dir, RUN_MARK, {"format": RUN_FORMAT, "version": 1, "config_hash": spec.fingerprint})


def _is_legacy_run_config(path: Path) -> bool:
    """A config.json as aelab wrote it before run directories were marked: the settings of a run
    (model, data, train) and the 16-hex-digit hash of them."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    h = d.get("config_hash") if isinstance(d, dict) else None
    return (isinstance(h, str) and len(h) == 16 and all(c in "0123456789abcdef" for c in h)
            and all(isinstance(d.get(k), dict) for k in ("model", "data", "train")))


def run_dir_state(spec: RunSpec, overwrite: bool = False) -> str:
    """What training ``spec`` into its directory means: "new", "done", "resume" or "replace".

    The one rule the API, the CLI and the study runner share: a directory that already holds a
    run (finished, checkpointed or failed) is reused only for the config whose hash it records;
    anything else is refused with one line unless ``overwrite`` (which replaces a run directory,
    never a directory that is not one).

    Anything but an aelab run directory (see the module docstring) is refused, even with
    ``overwrite``; and ``overwrite`` also refuses an aelab run directory someone put other files
    into (it removes only aelab's own files, and will not leave a new run among someone else's).
    """
    run_dir = spec.run_dir
    if not run_dir.exists():
        return "new"
    if not run_dir.is_dir():
        raise AelabError(f"{run_dir} is a file, not a run directory; choose another output directory")
    try:
        held = [p for p in entries(run_dir) if p.name != RUN_MARK and not is_own_temp(p.name, RUN_LAYOUT)]
        others = foreign(run_dir, RUN_LAYOUT)
    except OSError as exc:
        raise AelabError(f"{run_dir}: cannot list it ({exc.strerror}); check its permissions") from None
    if not held:
        return "new"
    cpath = run_dir / "config.json"
    marked = (read_mark(run_dir, RUN_MARK) or {}).get("format") == RUN_FORMAT
    if not marked and (others or not _is_legacy_run_config(cpath)):
        what = f"it holds {names_text(others)}" if others else "no aelab config.json"
        raise AelabError(f"{run_dir} exists and is not a run directory aelab wrote ({what}); choose another output "
                         "directory (aelab never writes into, nor deletes from, a directory it did not make)")
    if overwrite or not cpath.is_file():
        if others:
            raise AelabError(f"{run_dir} holds files aelab did not write ({names_text(others)}); overwriting removes "
                             "only aelab's own files and never leaves a new run among others: move them out, or "
                             "choose another output directory")
        return "replace"  # overwrite, or aelab's own left-overs of a run that never recorded its config
    try:
        saved = json.loads(cpath.read_text()).get("config_hash")
    except (OSError, ValueError, AttributeError):
        raise AelabError(f"{cpath} is damaged; write to another directory, or pass overwrite=True "
                         "(--overwrite) to replace the run") from None
    if saved != spec.fingerprint:
        raise AelabError(f"{run_dir} holds a run of another config (config hash {saved} ≠ {spec.fingerprint}); write "
                         "to another directory, or pass overwrite=True (--overwrite) to replace it")
    return "done" if is_done(run_dir) else "resume"


def prepare_run_dir(spec: RunSpec) -> None:
    """The run's mark and config.json (with its fingerprint), before training writes anything else."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    write_run_mark(spec)  # the mark first: a directory with any run file in it is recognisably aelab's
    cfgd = spec.config.to_dict()
    cfgd["config_hash"] = spec.fingerprint
    write_json(spec.run_dir / "config.json", cfgd)


def clear_run_dir(run_dir: Path) -> None:
    """Remove aelab's own files (run_dir_state has refused a directory holding anything else)."""
    remove_own(run_dir, RUN_LAYOUT)


def cleanup_unstarted(run_dir: Path, created: bool) -> None:
    """After a failure or an interruption: a run with nothing to resume leaves nothing behind
    (of aelab's own files: the mark, config.json, a checkpoint never completed, temporary files)."""
    if is_done(run_dir) or (run_dir / CHECKPOINT / "state.json").exists():
        return
    with contextlib.suppress(OSError):
        remove_own(run_dir, RUN_LAYOUT)
    if created:
        with contextlib.suppress(OSError):
            if not entries(run_dir):
                (run_dir / LOCK_NAME).unlink(missing_ok=True)
                run_dir.rmdir()


# -- checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(spec: RunSpec, tensors: dict[str, torch.Tensor], st: LoopState, m: int,
                    threads: Optional[int] = None) -> None:
    """Everything needed to continue run ``m`` of a group exactly where it stopped."""
    ck = spec.run_dir / CHECKPOINT
    ck.mkdir(parents=True, exist_ok=True)
    t = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    if st.loss_rows is not None:
        t["loop.loss_rows"] = st.loss_rows[:, m].to("cpu").contiguous()
        t["loop.pen_rows"] = st.pen_rows[:, m].to("cpu").contiguous()
        if st.term_rows is not None:
            t["loop.term_rows"] = st.term_rows[:, m].to("cpu").contiguous()
    with atomic_path(ck / "state.safetensors") as tmp:
        tmp.write_bytes(safetensors.torch.save(t))
    write_json(ck / "state.json", {
        "config_hash": spec.fingerprint, "epoch": st.epoch, "batch": st.batch, "elapsed": st.elapsed,
        "history": st.histories[m].to_dict(), "threads": threads,
        "state_sha256": sha256_file(ck / "state.safetensors"),
    })


def load_checkpoint(spec: RunSpec):
    """(tensors, meta) of a run's checkpoint, or None when there is none or it is unusable.

    Used only when ``state.json`` is valid (aelab.artifacts.CheckpointMeta), is this config's, and
    ``state.safetensors`` has the SHA-256 it records and holds exactly the model's tensors, Adam's
    state and the loop's rows, in floating point; otherwise one warning line says the run starts
    again from the beginning."""
    ck = spec.run_dir / CHECKPOINT
    if not (ck / "state.json").exists():
        return None
    again = f"not used: {spec.run_dir.name} trains from the start"
    try:
        meta = read_dict(CheckpointMeta, ck / "state.json", again)
        if meta["config_hash"] != spec.fingerprint:
            raise AelabError(f"{ck / 'state.json'} is the checkpoint of another config; {again}")
        spath = ck / "state.safetensors"
        if not spath.is_file() or sha256_file(spath) != meta["state_sha256"]:
            raise AelabError(f"{spath} is missing or was modified after it was saved; {again}")
        tensors = load_tensors(spath, "checkpoint", again)
        model = build_model(spec.config.model)
        why = checkpoint_problem(tensors, model, CheckpointMeta.model_validate(meta), spec.config.train.epochs,
                                 optimizer_state=state_shapes(spec.config.train, model))
        if why:
            raise AelabError(f"{spath} does not fit the run ({why}); {again}")
    except AelabError as err:
        warn(str(err))
        return None
    return tensors, meta


def checkpoint_position(spec: RunSpec) -> Optional[tuple[int, int]]:
    """(epoch, batch) of a run's checkpoint when its state.json is valid and this config's, or None."""
    path = spec.run_dir / CHECKPOINT / "state.json"
    if not path.exists():
        return None
    try:
        meta = read(CheckpointMeta, path, "")
    except AelabError:
        return None
    return (meta.epoch, meta.batch) if meta.config_hash == spec.fingerprint else None


def drop_checkpoint(run_dir: Path) -> None:
    """Remove a run's checkpoint files (only the ones aelab writes there)."""
    ck = Path(run_dir) / CHECKPOINT
    if ck.is_dir() and not ck.is_symlink():
        remove_own(run_dir, {CHECKPOINT: RUN_LAYOUT[CHECKPOINT]})


def interruption_summary(why: str, run_dirs: Sequence[Path]) -> str:
    """One line: what stopped training, and what each run holds now."""
    done, saved, unstarted = [], [], []
    for rd in run_dirs:
        if is_done(rd):
            done.append(rd)
            continue
        try:
            meta = read(CheckpointMeta, rd / CHECKPOINT / "state.json", "")
            saved.append(f"{rd.name} (epoch {meta.epoch + 1}, batch {meta.batch})")
        except AelabError:
            unstarted.append(rd)
    parts = [f"{why}: training stopped"]
    if saved:
        shown = ", ".join(saved[:4]) + (f" and {len(saved) - 4} more" if len(saved) > 4 else "")
        parts.append(f"checkpoint saved for {shown}")
    if unstarted:
        parts.append(f"{len(unstarted)} run{'s' if len(unstarted) > 1 else ''} not started")
    if done:
        parts.append(f"{len(done)} finished")
    return "; ".join(parts)


# -- a finished run, read back ----------------------------------------------------------------------
def read_result(spec: RunSpec) -> RunResult:
    """A finished run's history and metrics, used only when they are valid (aelab.artifacts) and its
    weights have the SHA-256 its run.json records for this config."""
    run_dir = spec.run_dir
    fix = f"the run directory is damaged; retrain it (overwrite=True, or aelab train --overwrite --out {run_dir})"
    verify_run(run_dir, spec.fingerprint)
    return RunResult(run_dir, spec.config, read_dict(HistoryFile, run_dir / "history.json", fix),
                     read_dict(MetricsFile, run_dir / "metrics.json", fix), cached=True)


def load_model(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a finished run's model from ``config.json`` and ``weights.safetensors``.

    Weights are read with safetensors (never pickle), and only when ``run.json`` is valid and
    records their SHA-256 (:func:`aelab.artifacts.verify_run`): a run without that record (no
    run.json, a damaged one, a null hash), weights or a config changed since training, a
    truncated file, or tensors that don't fit the config (names, shapes, floating point) are
    refused with one :class:`WeightsError` line.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WeightsError(f"{run_dir} is not a directory; give a run directory written by aelab train or a study")
    if not (run_dir / "config.json").is_file():
        raise WeightsError(f"{run_dir} has no config.json; is it a run directory?")
    fix = retrain_fix(run_dir)
    cfg, recorded = read_config(run_dir, fix, WeightsError)
    verify_run(run_dir, recorded)
    wpath = run_dir / "weights.safetensors"
    sd = load_tensors(wpath, "weights", fix)
    model = build_model(cfg.model)
    check_model_tensors(sd, model, wpath, fix)
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval(), cfg
