"""Make ``examples/shapes/``: a small image folder data set, drawn here (nothing is downloaded).

Three classes of 16×16 RGB pictures, one sub-folder each (``circle/``, ``square/``,
``triangle/``), 40 images per class: a coloured shape of random size, place and colour on a dark
background. The class sub-folders are the labels; aelab splits the 120 images with a seeded
``--test-fraction``. Train on it with::

    python examples/make_shapes.py          # (re)writes examples/shapes/
    aelab train --dataset examples/shapes --epochs 30 --batch-size 16

The drawing is seeded, so running the script again writes the same PNG files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 16
PER_CLASS = 40


def draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One (SIZE, SIZE, 3) uint8 picture of ``kind``."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    cy, cx = rng.uniform(5.5, SIZE - 5.5, size=2)
    r = rng.uniform(3.0, 5.0)
    if kind == "circle":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    elif kind == "square":
        mask = (abs(yy - cy) <= r * 0.85) & (abs(xx - cx) <= r * 0.85)
    else:  # an upright triangle: below the apex, inside the two slanted sides
        mask = (yy >= cy - r) & (yy <= cy + r * 0.8) & (abs(xx - cx) <= (yy - (cy - r)) * 0.6)
    colour = rng.uniform(0.45, 1.0, size=3)
    background = rng.uniform(0.0, 0.15, size=3)
    img = np.where(mask[..., None], colour, background)
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("shapes")), help="folder to write (default: examples/shapes)")
    args = ap.parse_args()
    out = Path(args.out)
    rng = np.random.default_rng(2022)
    for kind in ("circle", "square", "triangle"):
        (out / kind).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            Image.fromarray(draw(kind, rng), mode="RGB").save(out / kind / f"{kind}-{i:02d}.png", optimize=True)
    print(f"wrote {3 * PER_CLASS} images in 3 classes to {out}")


if __name__ == "__main__":
    main()
