"""Finishing a run: evaluate the trained model and write its artifacts, ``DONE`` last.

:data:`FINISH_STEPS` names the steps in order; :func:`finish_run` reports each as it completes
(``emit``: a :class:`~aelab.runs.events.FinishStep` per step, after a
:class:`~aelab.runs.events.RunFinishing` naming them all), so a progress display covers the
finishing work as well as the epochs. Artifacts and their formats: ``docs/formats.md``.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import safetensors.torch  # called through the module, so a test can stand in for it (a full disk)
import torch

from .. import __version__
from .._atomic import atomic_path, ensure_dir, write_bytes, write_json
from .._owned import clean_temps
from ..artifacts import RUN_FORMATS, sha256_file
from .. import kernels as ckernels
from .. import latent as L
from .. import quality as Q
from .._paths import cache_root
from ..engine import numerics
from ..data.prepare import TrainData
from ..engine.loop import History
from ..metrics import evaluate
from ..models import family_of
from .codes import decode as decode_codes
from .codes import encode as encode_codes
from .codes import record as record_codes
from .directory import RUN_LAYOUT, RunResult, drop_checkpoint
from .events import Event, FinishStep, RunFinishing
from .spec import RunSpec

#: what finishing a run does, in order: the test metrics, the family's diagnostics, codes.npz (and the
#: code-quality numbers), samples.npz, the weights, recon.png, then run.json and DONE
FINISH_STEPS = ("metrics", "diagnostics", "codes", "samples", "weights", "figure", "record")
#: where a family's own figures go in a run directory (``Family.figures``)
FIGURES_DIR = "figures"


def finish_run(spec: RunSpec, model, history: History, d: TrainData, dev, *, engine_name: str,
               wall: float, group: Sequence[str], data_source: Optional[dict] = None,
               threads: Optional[int] = None, labels=None, x_test=None, classes: Sequence[str] = (),
               emit: Optional[Callable[[Event], None]] = None, figures: bool = True) -> RunResult:
    """Evaluate a trained model and write its artifacts; ``DONE`` last, then drop the checkpoint.

    ``labels``: (train labels, test labels) of the run's splits, or None: saved with the codes.
    ``x_test``: the whole test split when it differs from the validation split (a run trained without
    ``data.exclude_labels``): its codes and errors go into codes.npz, so the held-out classes can be scored.
    ``emit``: receives :class:`RunFinishing` first, then a :class:`FinishStep` as each step is done.
    ``figures``: False skips recon.png (an optional file: :meth:`TrainedRun.recon_png` draws it on demand)."""
    cfg, run_dir = spec.config, spec.run_dir
    emit = emit or (lambda ev: None)
    emit(RunFinishing(spec.name, spec.index, run_dir, FINISH_STEPS))
    step = iter(range(1, len(FINISH_STEPS) + 1))

    def done() -> None:
        k = next(step)
        emit(FinishStep(spec.name, spec.index, run_dir, FINISH_STEPS[k - 1], k, len(FINISH_STEPS)))

    model.eval()
    noisy = d.noisy_val() if cfg.data.noise_factor > 0 else None
    fam = family_of(cfg.model)
    # a conditional model's validation labels go wherever its validation images go (row for row)
    val_labels = d.y_val if fam.conditional else None
    lab = {} if val_labels is None else {"labels": val_labels}
    metrics = evaluate(model.encode, model.decode, d.x_val, x_test_noisy=noisy,
                       sample_shape=tuple(cfg.model.input_shape), labels=val_labels)
    done()
    diag = fam.diagnose(model, d.x_val, cfg.model, cfg.train.loss, **lab)
    if diag:
        metrics["family"] = {"name": cfg.model.family, **diag}
    if fam.stochastic and fam.code == "mean" and labels is not None and labels[0] is not None:
        metrics["samples"] = prior_sample_quality(model, d, labels[0], cfg.train.seed)
    done()
    latent = record_codes(run_dir, model, cfg, d.x_train, d.x_val if x_test is None else x_test,
                          labels, classes)  # codes.npz, with the classes' names
    if latent:
        metrics["latent"] = latent
    done()
    with torch.no_grad():  # not inference_mode: a contractive forward differentiates its encoder
        n = min(10, d.x_val.shape[0])
        first = {} if val_labels is None else {"labels": val_labels[:n]}
        samples = {"original": d.x_val[:n], "recon": model(d.x_val[:n], **first).recon}
        if noisy is not None:
            samples["noisy"] = noisy[:n]
            samples["recon_noisy"] = model(noisy[:n], **first).recon
    samples = {k: v.detach().to("cpu").float().numpy() for k, v in samples.items()}
    if figures and fam.figures is not None:  # the family's own figures, recorded in metrics.json
        drawn = write_family_figures(run_dir, fam.figures(model, d, cfg, names=tuple(classes)))
        if drawn:
            metrics["figures"] = drawn
    write_json(run_dir / "history.json", history.to_dict())
    write_json(run_dir / "metrics.json", metrics)
    with atomic_path(run_dir / "samples.npz", suffix=".npz") as tmp:
        np.savez(tmp, **samples)
    done()
    sha = save_weights(run_dir / "weights.safetensors", model)
    done()
    if figures:
        write_recon_png(run_dir / "recon.png", samples, shape=tuple(cfg.model.input_shape),
                        feature_mse=metrics.get("feature_mse"))
    done()
    write_json(run_dir / "run.json", {
        "config_hash": spec.fingerprint, "weights_sha256": sha,
        "config_sha256": sha256_file(run_dir / "config.json"), "aelab_version": __version__,
        "device": str(dev), "engine": engine_name, "trained_with": list(group), "group_wall_seconds": wall,
        "data_source": data_source, "n_train": int(d.x_train.shape[0]), "threads": threads,
        "cpu_kernels": ckernels.status() if dev.type == "cpu" else None,
        "numerics": numerics.fingerprint() if dev.type == "cpu" else None,  # what the bits depend on
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "formats": dict(RUN_FORMATS),  # each file's format version: a later aelab knows what it reads
        # what the run cannot keep and opening it asks for (your own modules' classes), when anything
        "outside_code": cfg.model.outside_code() if hasattr(cfg.model, "outside_code") else None,
    })
    write_bytes(run_dir / "DONE", b"ok\n")  # atomic too: an empty DONE left by a full disk would mark the run done
    with contextlib.suppress(OSError):
        drop_checkpoint(run_dir)
        clean_temps(run_dir, RUN_LAYOUT)  # a killed write's temporary files, from before a resume
    done()
    return RunResult(run_dir, cfg, history.to_dict(), metrics)


#: test images and prior samples the sample-quality numbers compare
SAMPLE_QUALITY_N = 2000


def prior_sample_quality(model, d: TrainData, train_labels, seed: int, n: int = SAMPLE_QUALITY_N) -> dict:
    """``metrics.json["samples"]``: how good a generative model's samples from its prior z ~ N(0, I)
    are, on the features of aelab's own classifier of the data set (:mod:`aelab.quality`; trained
    once per data set and kept in aelab's cache): Fréchet distance, precision and recall against
    (up to ``n``) test images, and the classifier's confidence on the samples."""
    x_train = d.x_train.detach().cpu().numpy()
    real = d.x_val[:n]
    net = Q.fit_classifier(x_train, np.asarray(train_labels)[: x_train.shape[0]], seed=0,
                           cache=cache_root() / Q.CACHE_DIR)
    asked = None
    if d.y_val is not None and getattr(model, "conditional", False):
        # a conditional model draws the classes of the test images compared with, in their proportions
        asked = d.y_val[:n]
        dims = encode_codes(model, real[:1], labels=asked[:1]).shape[1]
    else:
        dims = encode_codes(model, real[:1]).shape[1]
    fake = decode_codes(model, L.prior_samples(real.shape[0], dims, seed), device=real.device, labels=asked)
    out = {**Q.sample_quality(net, real.detach().cpu().numpy(), fake.reshape(real.shape)),
           "classifier": "aelab MLP features (comparable only within aelab)"}
    if asked is not None:  # does the classifier see the class each sample was asked for?
        _, probs = Q.features_and_probs(net, fake.reshape(real.shape))
        out["class_accuracy"] = float((probs.argmax(axis=1) == asked.cpu().numpy()).mean())
    return out


def write_family_figures(run_dir: Path, figs) -> dict:
    """Write a family's figures (``Family.figures``' mapping: name → (PNG bytes, a NumPy image or a PIL
    image; caption)) as ``figures/<name>.png`` in ``run_dir``, each atomically; what
    ``metrics.json["figures"]`` records: ``{name: {"file": "figures/<name>.png", "caption": ...}}``."""
    out: dict = {}
    for name, (image, caption) in (figs or {}).items():
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"a family figure's name must be letters, digits, '_' or '-', not {name!r}")
        rel = f"{FIGURES_DIR}/{name}.png"
        ensure_dir(run_dir / FIGURES_DIR, "run figures directory")
        write_bytes(run_dir / rel, png_bytes(image))
        out[name] = {"file": rel, "caption": str(caption)}
    return out


def png_bytes(image) -> bytes:
    """PNG bytes of PNG bytes (as they are), a PIL image, or a NumPy image ((H, W) or (H, W, 3|4);
    floats read as [0, 1], clipped)."""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    from PIL import Image  # deferred: Pillow (matplotlib's dependency), only for a family's figures

    if isinstance(image, np.ndarray):
        a = image
        if a.dtype != np.uint8:
            a = (np.clip(a.astype(np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        image = Image.fromarray(a)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def save_weights(path: Path, model: torch.nn.Module) -> str:
    """Write a model's state dict as safetensors (atomically); return the file's SHA-256."""
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        # one metadata key: safetensors writes them from a hash map, in another order in each process,
        # so two keys made equal weights differ in their header bytes (the version is in run.json)
        tmp.write_bytes(safetensors.torch.save(sd, metadata={"format": "pt"}))
    return sha256_file(path)


def write_recon_png(path: Path, samples: dict, shape: Optional[tuple] = None,
                    feature_mse: Optional[Sequence[float]] = None) -> None:
    """10 test originals above their reconstructions, drawn in the data's ``shape`` (8×8, 28×28,
    RGB …). For vectors (a table): the reconstruction error of each feature over the test split
    (``feature_mse``), above the samples and their reconstructions."""
    from ..plots import feature_error_plot, recon_grid  # deferred: matplotlib

    rows = [("original", samples["original"]), ("reconstruction", samples["recon"])]
    if shape is not None and len(shape) == 1 and feature_mse is not None:
        png = feature_error_plot(feature_mse, rows)
    else:
        png = recon_grid(rows, n=len(samples["original"]), shape=shape)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
