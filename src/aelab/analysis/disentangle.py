"""How disentangled a finished run's code is, on data with known factors: MIG of its test codes.

What belongs here: reading a run's saved test codes (``codes.npz``: μ for a VAE, at most 5,000 test
images) and the factors of the same images from a data source that knows them (the generated
``shapes`` set: :func:`aelab.data.shapes.factors`), and handing both to the pure metric
(:func:`aelab.disentangle.mig`). :func:`mig_curve` does it for every run of a sweep, so a β sweep
of the β-TCVAE (or the β-VAE) shows the trade-off between reconstruction and disentanglement::

    aelab sweep --config tcvae-shapes.toml --param model.beta --values 1,4,8 --out sweep-beta
    python -m aelab.analysis.disentangle sweep-beta --param model.beta
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from ..artifacts import read_config
from ..config import RunConfig
from ..data import shapes
from ..disentangle import mig
from ..errors import AelabError
from ..runs import is_done
from ..runs.codes import read_codes

#: the data sources whose factors are known, by ``data.dataset``
FACTOR_SOURCES = {"shapes": (shapes.factors, shapes.FACTOR_NAMES)}


def run_config(run_dir: Path) -> RunConfig:
    """The config a run directory records (its config.json, read as aelab reads it)."""
    cfg, _ = read_config(Path(run_dir), "give a run directory written by aelab", AelabError)
    return cfg


def run_mig(run_dir: str | Path, bins: int = 20) -> dict[str, Any]:
    """MIG (:func:`aelab.disentangle.mig`) of a finished run's saved test codes against the factors of
    the same test images; the run must have trained on a data set whose factors are known (``shapes``)."""
    run_dir = Path(run_dir)
    if not is_done(run_dir):
        raise AelabError(f"{run_dir} is not a finished run directory; give one written by aelab train, a study or a sweep")
    cfg = run_config(run_dir)
    known = FACTOR_SOURCES.get(cfg.data.dataset)
    if known is None:
        raise AelabError(f"{run_dir} trained on {cfg.data.dataset}, whose factors of variation are unknown; MIG needs a "
                         f"data set with known factors ({', '.join(FACTOR_SOURCES)})")
    arrays = read_codes(run_dir)
    if arrays is None:
        raise AelabError(f"{run_dir} has no codes.npz; run aelab latent {run_dir} to write it")
    factors_of, names = known
    v = factors_of(cfg.data, "test")[arrays["test_index"]]
    out = mig(arrays["test_codes"], v, bins=bins, names=names)
    out["run"] = cfg.name
    return out


def mig_curve(directory: str | Path, param: Optional[str] = None) -> list[dict[str, Any]]:
    """MIG of every finished run under ``directory`` (a sweep's or study's ``runs/``, or the directory
    itself), with the value of ``param`` (a dotted config key such as ``model.beta``) of each, sorted
    by it: ``[{"run", "value", "mig", "per_factor", ...}]``."""
    root = Path(directory)
    base = root / "runs" if (root / "runs").is_dir() else root
    dirs = [d for d in sorted(base.iterdir()) if d.is_dir() and is_done(d)] if base.is_dir() else []
    if not dirs:
        raise AelabError(f"{directory} holds no finished runs; give a sweep's or study's output directory")
    rows = []
    for d in dirs:
        r = run_mig(d)
        r["dir"] = str(d)
        r["value"] = _value(run_config(d).to_dict(), param) if param else None
        rows.append(r)
    return sorted(rows, key=lambda r: (r["value"] is None, r["value"] if isinstance(r["value"], (int, float)) else 0,
                                       r["run"]))


def _value(d: dict, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aelab.analysis.disentangle",
                                 description="MIG of the runs of a sweep or study on a data set with known factors")
    ap.add_argument("directory")
    ap.add_argument("--param", help="the swept config key to print beside each run, e.g. model.beta")
    args = ap.parse_args(argv)
    try:
        rows = mig_curve(args.directory, args.param)
    except AelabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = list(rows[0]["per_factor"])
    head = f"{args.param or 'run':<14}{'MIG':>7}" + "".join(f"{n:>10}" for n in names)
    print(head)
    for r in rows:
        label = str(r["value"]) if args.param else r["run"]
        print(f"{label:<14}{r['mig']:>7.3f}" + "".join(f"{r['per_factor'].get(n, float('nan')):>10.3f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
