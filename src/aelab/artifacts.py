"""Every artifact aelab reads back, validated as a whole before anything uses it.

A run directory's ``config.json``, ``run.json``, ``history.json``, ``metrics.json``,
``samples.npz``, ``codes.npz``, ``weights.safetensors`` and ``checkpoint/``, and a study's or
sweep's ``results.json`` (formats: ``docs/formats.md``). Each JSON format is a pydantic model:
extra keys are allowed (formats grow), the keys aelab relies on are checked for their types.
Arrays and tensors are checked for their names, dtypes and shapes.

A file that is missing (where it is required), unreadable, not JSON, of the wrong shape, or
whose recorded hash does not verify is one :class:`~aelab.errors.AelabError` line:
``<path> is not a valid <what> (<first problem>); <what to do>``. Nothing here writes.

:func:`verify_run` is the one gate a finished run's model passes: ``run.json`` must exist, be
valid and record the SHA-256 of ``weights.safetensors`` (and the config hash ``config.json``
records); a run without a verifiable record is refused.
"""

from __future__ import annotations

import hashlib
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Optional, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._atomic import read_json
from .config import RunConfig
from ._tensors import non_float
from .errors import AelabError, DataError, WeightsError, say_once

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Series = list[Optional[float]]  # a per-epoch series: JSON numbers (NaN included), null where undefined


class _Artifact(BaseModel):
    """Extra keys allowed (formats grow); the declared ones strictly typed."""

    model_config = ConfigDict(extra="allow", strict=True)


def _sha(v: str) -> str:
    if not _SHA256.match(v):
        raise ValueError("not a SHA-256 (64 hex digits)")
    return v


# -- run directory ----------------------------------------------------------------------------------
class DataSource(_Artifact):
    dataset: str = "?"
    source: str = "?"
    cache_dir: Optional[str] = None
    files: dict[str, str] = Field(default_factory=dict)


#: The version of each file format in a run directory, recorded in its ``run.json`` as ``formats``.
#: A file's layout changes → its number goes up, and the reader that knows both migrates the older
#: one; a run written by an aelab whose formats are newer than these is refused in one line rather
#: than misread. Runs from before the record (no ``formats``) are version 1 throughout.
RUN_FORMATS: dict[str, int] = {
    "config.json": 1, "history.json": 1, "metrics.json": 1, "codes.npz": 1, "samples.npz": 1,
    "weights.safetensors": 1, "recon.png": 1, "run.json": 1,
}


class RunRecord(_Artifact):
    """``run.json``: written last but ``DONE``; its hashes are what a finished run is checked against."""

    config_hash: str
    weights_sha256: str
    #: SHA-256 of config.json's bytes, where the writing version recorded it (checked when present)
    config_sha256: Optional[str] = None
    aelab_version: Optional[str] = None
    device: Optional[str] = None
    engine: Optional[str] = None
    trained_with: Optional[list[str]] = None
    group_wall_seconds: Optional[float] = None
    data_source: Optional[DataSource] = None
    n_train: Optional[int] = None
    threads: Optional[int] = None
    finished: Optional[str] = None
    #: each file's format version (:data:`RUN_FORMATS` of the writing aelab); None: written before the record
    formats: Optional[dict[str, int]] = None

    def format_version(self, name: str) -> int:
        """The format version of the run directory's file ``name`` (1 for a run from before the record)."""
        return int((self.formats or {}).get(name, 1))

    @field_validator("weights_sha256", "config_sha256")
    @classmethod
    def _check_sha(cls, v: Optional[str]) -> Optional[str]:
        return v if v is None else _sha(v)


class PartialHistory(_Artifact):
    """A history so far (a checkpoint's, a results.json record's): every series optional."""

    epoch: list[int] = Field(default_factory=list)
    loss: Series = Field(default_factory=list)
    val_loss: Series = Field(default_factory=list)
    penalty: Series = Field(default_factory=list)
    val_penalty: Series = Field(default_factory=list)
    epoch_seconds: Series = Field(default_factory=list)
    images_per_second: Series = Field(default_factory=list)
    terms: dict[str, Series] = Field(default_factory=dict)
    val_terms: dict[str, Series] = Field(default_factory=dict)


class HistoryFile(PartialHistory):
    """``history.json`` of a finished run: at least one epoch, as many validation losses as losses."""

    loss: Series
    val_loss: Series

    @model_validator(mode="after")
    def _epochs(self) -> "HistoryFile":
        if not self.loss:
            raise ValueError("no epochs in loss")
        if len(self.val_loss) != len(self.loss):
            raise ValueError(f"{len(self.loss)} losses but {len(self.val_loss)} val_losses")
        return self


class CodeStats(_Artifact):
    units: Optional[int] = None
    dead_units: Optional[int] = None
    dead_fraction: Optional[float] = None
    mean_activation: Optional[float] = None
    zero_fraction: Optional[float] = None


class NoisyMetrics(_Artifact):
    bce: Optional[float] = None
    mse: Optional[float] = None
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    diversity: Optional[float] = None
    input_psnr: Optional[float] = None
    input_ssim: Optional[float] = None


class FamilyMetrics(_Artifact):
    name: str


class MetricsFile(_Artifact):
    """``metrics.json`` (aelab.metrics.evaluate, plus the family's and the code's blocks)."""

    n_test: int
    bce: Optional[float] = None
    mse: Optional[float] = None
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    diversity: Optional[float] = None
    feature_mse: Optional[list[Optional[float]]] = None
    code: Optional[CodeStats] = None
    noisy: Optional[NoisyMetrics] = None
    family: Optional[FamilyMetrics] = None
    latent: Optional[dict[str, Any]] = None
    #: a generative run's prior samples against test images (aelab.quality): frechet, precision, recall …
    samples: Optional[dict[str, Any]] = None


class CheckpointMeta(_Artifact):
    """``checkpoint/state.json``."""

    config_hash: str
    epoch: int = Field(ge=0)
    batch: int = Field(ge=0)
    elapsed: float = Field(ge=0)
    history: PartialHistory
    threads: Optional[int] = Field(default=None, ge=1)
    state_sha256: str

    _check_sha = field_validator("state_sha256")(_sha)


class ConfigFile(_Artifact):
    """``config.json``: the RunConfig's keys (validated by RunConfig itself) plus ``config_hash``."""

    config_hash: Optional[str] = None


# -- study / sweep output ---------------------------------------------------------------------------
class ResultMetrics(MetricsFile):
    """A run's metrics as results.json holds them (every key optional, each of its type)."""

    n_test: Optional[int] = None


class ResultRun(_Artifact):
    name: Optional[str] = None
    dir: Optional[str] = None
    config: dict[str, Any] = Field(default_factory=dict)
    history: PartialHistory = Field(default_factory=PartialHistory)
    metrics: ResultMetrics = Field(default_factory=ResultMetrics)
    run: dict[str, Any] = Field(default_factory=dict)


class CorrectedBlock(_Artifact):
    description: Optional[str] = None
    runs: dict[str, ResultRun] = Field(default_factory=dict)


class ReplicatesBlock(_Artifact):
    seeds: list[int] = Field(default_factory=list)
    runs: dict[str, list[ResultRun]] = Field(default_factory=dict)


class SweepPoint(_Artifact):
    value: Any
    run: str


class ResultsFile(_Artifact):
    """``results.json`` of a study (``study``, ``questions``) or a sweep (``sweep``, ``points``)."""

    runs: dict[str, ResultRun]
    questions: list[dict[str, Any]] = Field(default_factory=list)
    points: Optional[list[SweepPoint]] = None
    baseline: Optional[str] = None
    corrected: Optional[CorrectedBlock] = None
    replicates: Optional[ReplicatesBlock] = None


# -- reading ----------------------------------------------------------------------------------------
M = TypeVar("M", bound=BaseModel)

_WHAT = {RunRecord: "run record", HistoryFile: "training history", MetricsFile: "metrics file",
         CheckpointMeta: "checkpoint record", ConfigFile: "run config", ResultsFile: "aelab results file"}


def first_problem(err: ValidationError) -> str:
    """The first of a ValidationError's problems as ``key.path: message``."""
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    msg = re.sub(r" or instance of \w+", "", msg)  # pydantic names its model classes: not the user's business
    if e["type"] == "missing":
        return f"no {where!r}"
    got = e.get("input")
    shown = f" (got {type(got).__name__})" if e["type"].endswith("_type") and got is not None else ""
    shown = " (got null)" if e["type"].endswith("_type") and got is None else shown
    return f"{where}: {msg[0].lower() + msg[1:]}{shown}" if where else msg[0].lower() + msg[1:]


def validate(model: type[M], data: Any, path: Path, fix: str, error: type[AelabError] = AelabError) -> M:
    """``data`` (read from ``path``) as ``model``; one ``error`` line naming the file otherwise."""
    what = _WHAT.get(model, model.__name__)
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
            type(data), "null")
        raise error(f"{path} is not a valid {what} ({kind} where a JSON object is needed); {fix}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise error(f"{path} is not a valid {what} ({first_problem(err)}); {fix}") from None


def read(model: type[M], path: str | Path, fix: str, error: type[AelabError] = AelabError) -> M:
    """Read and validate one JSON artifact; every problem is one ``error`` line ending in ``fix``."""
    path = Path(path)
    try:
        data = read_json(path, fix)
    except AelabError as err:
        raise error(str(err)) from None
    return validate(model, data, path, fix, error)


def read_dict(model: type[M], path: str | Path, fix: str, error: type[AelabError] = AelabError) -> dict:
    """:func:`read`, as the JSON dict itself (validated; extra keys kept, nothing filled in)."""
    path = Path(path)
    try:
        data = read_json(path, fix)
    except AelabError as err:
        raise error(str(err)) from None
    validate(model, data, path, fix, error)
    return data


def retrain_fix(run_dir: Path) -> str:
    return f"retrain the run (aelab train --overwrite --out {run_dir}, or delete it and run its study again)"


def read_config(run_dir: str | Path, fix: Optional[str] = None, error: type[AelabError] = AelabError):
    """(RunConfig, recorded config hash or None) of a run directory's ``config.json``."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    fix = fix or retrain_fix(run_dir)
    d = read_dict(ConfigFile, path, fix, error)
    recorded = d.get("config_hash")
    try:
        cfg = RunConfig.from_dict({k: v for k, v in d.items() if k != "config_hash"})
    except AelabError as err:
        raise error(f"{path} is not a valid run config ({_strip(str(err))}); {fix}") from None
    return cfg, recorded


def _strip(msg: str) -> str:
    return msg[len("invalid config: "):] if msg.startswith("invalid config: ") else msg


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_run(run_dir: str | Path, recorded_config: Optional[str] = None) -> RunRecord:
    """The run's ``run.json``, after checking that ``weights.safetensors`` has the SHA-256 it records
    and, given ``recorded_config`` (``config.json``'s hash, or the config's own), that run.json
    records that config hash. Raises one WeightsError line otherwise (no run.json, a damaged one, a
    null hash included): a run without a verifiable record is never used.

    The config is not re-hashed here: the hash function has changed between aelab versions, and
    runs written by earlier versions keep loading (their tensors are checked against the config)."""
    run_dir = Path(run_dir)
    fix = retrain_fix(run_dir)
    rpath, wpath = run_dir / "run.json", run_dir / "weights.safetensors"
    if not wpath.is_file():
        raise WeightsError(f"{wpath} does not exist; the run did not finish — resume it with "
                           f"aelab train --resume {run_dir}")
    if not rpath.is_file():
        raise WeightsError(f"{rpath} does not exist, so its weights cannot be verified; {fix}")
    rec = read(RunRecord, rpath, f"its weights cannot be verified; {fix}", WeightsError)
    newer = sorted(n for n, v in (rec.formats or {}).items() if n in RUN_FORMATS and v > RUN_FORMATS[n])
    if newer:
        raise WeightsError(f"{rpath}: {', '.join(newer)} {'is' if len(newer) == 1 else 'are'} in a newer format than "
                           f"this aelab ({rec.aelab_version or 'a later version'} wrote the run) reads; upgrade aelab "
                           f"(pip install -U aelab) or {fix}")
    actual = sha256_file(wpath)
    if actual != rec.weights_sha256:
        raise WeightsError(f"{wpath} was modified after training (SHA-256 {actual[:12]}… ≠ recorded "
                           f"{rec.weights_sha256[:12]}… in run.json); {fix}, or restore the file")
    cpath = run_dir / "config.json"
    if rec.config_sha256 is not None and (not cpath.is_file() or sha256_file(cpath) != rec.config_sha256):
        raise WeightsError(f"{cpath} was modified after training (its SHA-256 is not the one run.json records); "
                           f"{fix}, or restore the file")
    if recorded_config is not None and recorded_config != rec.config_hash:
        raise WeightsError(f"{run_dir / 'config.json'} records config hash {recorded_config}, run.json "
                           f"{rec.config_hash}: the run directory was modified after training; {fix}")
    return rec


# -- tensors ----------------------------------------------------------------------------------------
def load_tensors(path: str | Path, what: str, fix: str, error: type[AelabError] = WeightsError) -> dict:
    """The tensors of a safetensors file (never pickle); a truncated or damaged file is one line."""
    # deferred: safetensors.torch imports PyTorch, which reading and checking the JSON artifacts never needs
    from safetensors import SafetensorError
    from safetensors.torch import load_file  # deferred: as above

    path = Path(path)
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist; {fix}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise error(f"{what} {path} is not a valid safetensors file ({_one_line(err)}); it is truncated or "
                    f"damaged — {fix}") from None


def _one_line(err: BaseException) -> str:
    s = str(err).strip().splitlines()
    return s[0] if s else type(err).__name__


def check_model_tensors(tensors: dict, model, path: Path, fix: str, error: type[AelabError] = WeightsError,
                        what: str = "") -> None:
    """``tensors`` hold exactly ``model``'s state-dict names, shapes and floating-point dtypes."""
    want = model.state_dict()
    head = f"{what} {path}".strip()
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}" + (" …" if len(missing) > 3 else "")] if missing else []) + \
                ([f"unexpected {', '.join(extra[:3])}" + (" …" if len(extra) > 3 else "")] if extra else [])
        raise error(f"{head} does not match the model in config.json ({'; '.join(parts)}); {fix}")
    for k, v in want.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise error(f"{head} does not match the model in config.json: {k} has shape {list(tensors[k].shape)}, "
                        f"the model needs {list(v.shape)}; {fix}")
    bad = [k for k, v in want.items() if tensors[k].dtype != v.dtype]
    if bad:
        k = bad[0]
        kind = "not floating point" if not tensors[k].is_floating_point() else "of another precision"
        raise error(f"{head} holds tensors {kind} ({k}: {_dt(tensors[k])}, the model's is {_dt(want[k])}); {fix}")


def checkpoint_problem(tensors: dict, model, meta: CheckpointMeta, epochs: Optional[int] = None,
                       optimizer_state: Optional[tuple[dict, str]] = None) -> Optional[str]:
    """Why a checkpoint cannot continue ``model``'s training (of ``epochs`` epochs), or None when it
    can: a position inside the run, a history of as many epochs as it has finished, the model's
    state dict, the optimizer's state for each parameter and its step count and, in the middle of
    an epoch, the epoch's batch losses so far (``loop.*``), each in its dtype.

    ``optimizer_state``: ``({key: the parameter it matches in shape and dtype}, step-count key)`` of the
    run's optimizer (``aelab.engine.optimizers.state_shapes``); None: Keras Adam's ``adam.m.<name>``,
    ``adam.v.<name>`` and ``adam.t``."""
    if epochs is not None and (meta.epoch > epochs or (meta.epoch == epochs and meta.batch > 0)):
        return f"epoch {meta.epoch}, batch {meta.batch} is past the run's {epochs} epochs"
    if len(meta.history.loss) != meta.epoch:
        return f"its history holds {len(meta.history.loss)} epochs, not the {meta.epoch} it has finished"
    want = model.state_dict()
    params = dict(model.named_parameters())
    if optimizer_state is None:
        slots, t_key = {f"adam.{s}.{name}": p for name, p in params.items() for s in ("m", "v")}, "adam.t"
    else:
        slots, t_key = optimizer_state
    shapes = {k: tuple(v.shape) for k, v in want.items()}
    shapes.update({k: tuple(p.shape) for k, p in slots.items()})
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        return f"no tensor {missing[0]}"
    for k, shape in shapes.items():
        if tuple(tensors[k].shape) != shape:
            return f"{k} has shape {list(tensors[k].shape)}, the model needs {list(shape)}"
    t = tensors.get(t_key)
    if t is None or t.dim() != 0 or t.is_floating_point() or t.is_complex() or int(t) < 0:
        return f"no valid step count {t_key}"
    loop = {k for k in tensors if k.startswith("loop.")}
    extra = sorted(set(tensors) - set(shapes) - loop - {t_key})
    if extra:
        return f"unexpected tensor {extra[0]}"
    if meta.batch > 0 and not {"loop.loss_rows", "loop.pen_rows"} <= loop:
        return "the epoch's batch losses are missing"
    dtypes = {k: v.dtype for k, v in want.items()}
    dtypes.update({k: p.dtype for k, p in slots.items()})
    for k, dt in dtypes.items():
        if tensors[k].dtype != dt:
            return f"{k} is {_dt(tensors[k])}, the model's is {str(dt).replace('torch.', '')}"
    bad = non_float({k: v for k, v in tensors.items() if k.startswith("loop.")})
    if bad:
        return f"{bad[0]} is not floating point"
    return None


def _dt(t) -> str:
    return str(t.dtype).replace("torch.", "")


# -- arrays -----------------------------------------------------------------------------------------
def load_npz(path: Path, what: str, fix: str, error: type[AelabError] = DataError) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (never unpickled); a damaged archive is one line."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise error(f"{path} is not a valid {what} ({_one_line(exc)}); {fix}") from None


def _kind(a: np.ndarray) -> str:
    return "float" if a.dtype.kind == "f" else "integer" if a.dtype.kind in "iu" else a.dtype.name


def samples_problem(arrays: dict[str, np.ndarray]) -> Optional[str]:
    for k in ("original", "recon"):
        if k not in arrays:
            return f"no {k!r} array"
    shape = arrays["original"].shape
    for k, a in arrays.items():
        if a.dtype.kind != "f":
            return f"{k!r} holds {_kind(a)} values, not float"
        if a.ndim != 2 or a.shape != shape:
            return f"{k!r} has shape {list(a.shape)}, not that of 'original' {list(shape)} (images × values)"
    return None


def read_samples(path: Path, fix: str, error: type[AelabError] = DataError) -> dict[str, np.ndarray]:
    """``samples.npz``: float (N, D) arrays "original", "recon" (+ "noisy", "recon_noisy"), equal shapes."""
    arrays = load_npz(path, "samples file", fix, error)
    why = samples_problem(arrays)
    if why:
        raise error(f"{path} is not a valid samples file ({why}); {fix}")
    return arrays


def codes_problem(arrays: dict[str, np.ndarray]) -> Optional[str]:
    """Why ``arrays`` are not a valid ``codes.npz`` (see aelab.latent_io), or None."""
    for split in ("train", "test"):
        codes, index = arrays.get(f"{split}_codes"), arrays.get(f"{split}_index")
        if codes is None:
            return f"no {split}_codes array"
        if codes.ndim != 2 or codes.dtype.kind != "f":
            return f"{split}_codes is not a 2-D float array ({codes.ndim}-D {_kind(codes)})"
        n = codes.shape[0]
        for k, kind in ((f"{split}_index", "iu"), (f"{split}_labels", "iu"), ("test_errors" if split == "test" else "",
                                                                                "f")):
            a = arrays.get(k) if k else None
            if a is None:  # optional: aelab latent needs the positions (latent_io checks), a report does not
                continue
            if a.ndim != 1 or a.dtype.kind not in kind or a.shape[0] != n:
                return f"{k} is not a 1-D {'integer' if kind == 'iu' else 'float'} array of {n} values, one per code"
        if index is not None and index.size and index.min() < 0:
            return f"{split}_index holds negative positions"
    if arrays["train_codes"].shape[1] != arrays["test_codes"].shape[1]:
        return "train_codes and test_codes have different widths"
    return None


def warn(msg: str) -> None:
    """One warning line on stderr (not Python's warnings: a note for the user, not a code problem)."""
    print(f"aelab: warning: {msg}", file=sys.stderr, flush=True)


def warn_once(msg: str) -> None:
    """:func:`warn`, once per process for each message (a check that runs twice says it once)."""
    say_once(f"aelab: warning: {msg}")
