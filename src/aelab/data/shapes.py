"""``shapes``: a dSprites-like data set with known factors of variation, generated from a seed.

Each image is one white shape on black, ``image_size`` × ``image_size`` pixels (32 by default), with
five factors drawn independently and uniformly from a grid, as dSprites (Matthey et al. 2017) has them:

    shape     square, ellipse, triangle (the label; 3 values)
    scale     6 values from 0.5 to 1 (the shape's half-size is scale · image_size / 4)
    rotation  40 values in [0, 2π)
    x, y      16 positions each, keeping the largest shape inside the image

Nothing is downloaded: the images are rendered from the factors (a pixel is on when its centre lies
in the shape), the factors drawn from ``seed`` (the training split first, then the test split), so
the same options always give the same images. :func:`factors` gives a split's factors again, for a
disentanglement metric (``aelab.disentangle.mig``) on a run's codes: they are the data's labels
beyond the class. Sizes come from ``data.limit`` (default 10,000) and ``data.test_limit`` (default a
sixth of it).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .dataset import IMAGES, Dataset
from .source import DataOptions, Source, SourceOptions

SHAPES = ("square", "ellipse", "triangle")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
#: the number of values each factor takes (its grid), in FACTOR_NAMES' order
FACTOR_SIZES = (3, 6, 40, 16, 16)
DEFAULT_TRAIN = 10_000


class ShapesOptions(SourceOptions):
    """``image_size``: the images' side in pixels; ``seed``: what the factors are drawn from."""

    kind: Literal["shapes"] = "shapes"
    image_size: int = Field(default=32, ge=16, le=256)
    seed: int = Field(default=0, ge=0)

    def sample_shape(self) -> tuple[int, ...]:
        return (1, self.image_size, self.image_size)


def factor_values(image_size: int) -> dict[str, np.ndarray]:
    """Each factor's grid of values (the scale, the angle in radians, x and y in pixels)."""
    half = 0.25 * image_size  # the largest shape's half-size
    margin = half * 1.2  # a rotated square's corner reaches half·√2 ≈ 1.41·half: keep most of it in
    pos = np.linspace(margin, image_size - margin, FACTOR_SIZES[3])
    return {"shape": np.arange(3, dtype=np.float64), "scale": np.linspace(0.5, 1.0, FACTOR_SIZES[1]),
            "rotation": np.arange(FACTOR_SIZES[2]) * (2 * np.pi / FACTOR_SIZES[2]), "x": pos, "y": pos}


def draw_indices(n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The factor indices (N, 5) of the training and test splits, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, k, size=n_train + n_test) for k in FACTOR_SIZES], axis=1)
    return idx[:n_train], idx[n_train:]


def render(idx: np.ndarray, image_size: int, chunk: int = 2048) -> np.ndarray:
    """uint8 images (N, S, S) of factor indices ``idx`` (N, 5): 255 inside the shape, 0 outside."""
    vals = factor_values(image_size)
    c = np.arange(image_size) + 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    out = np.zeros((len(idx), image_size, image_size), dtype=np.uint8)
    for s in range(0, len(idx), chunk):
        f = idx[s:s + chunk]
        scale = vals["scale"][f[:, 1]][:, None, None] * 0.25 * image_size
        th = vals["rotation"][f[:, 2]][:, None, None]
        dx = xx[None] - vals["x"][f[:, 3]][:, None, None]
        dy = yy[None] - vals["y"][f[:, 4]][:, None, None]
        # the pixel in the shape's own frame (rotated back, in units of its half-size)
        u = (np.cos(th) * dx + np.sin(th) * dy) / scale
        v = (-np.sin(th) * dx + np.cos(th) * dy) / scale
        shape = f[:, 0][:, None, None]
        square = (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
        ellipse = u ** 2 + (v / 0.55) ** 2 <= 1.0
        # an equilateral triangle pointing up in its frame, centred on its centroid
        triangle = (v >= -0.5) & (np.sqrt(3) * u + v <= 1.0) & (-np.sqrt(3) * u + v <= 1.0)
        inside = np.where(shape == 0, square, np.where(shape == 1, ellipse, triangle))
        out[s:s + chunk] = inside.astype(np.uint8) * 255
    return out


def sizes(cfg) -> tuple[int, int]:
    """The training and test sizes of a data config (``limit``, ``test_limit``)."""
    n_tr = cfg.limit or DEFAULT_TRAIN
    return n_tr, cfg.test_limit or max(1, n_tr // 6)


def factors(cfg, split: str = "test") -> np.ndarray:
    """The factor values (N, 5), in :data:`FACTOR_NAMES` order, of the ``split`` ("train" or "test")
    of the shapes data a data config (``data.dataset = "shapes"``) names: the shape's index, the
    scale, the angle, x and y, row ``i`` describing image ``i``."""
    opts = cfg.source if isinstance(cfg.source, ShapesOptions) else ShapesOptions()
    tr, te = draw_indices(*sizes(cfg), opts.seed)
    idx = tr if split == "train" else te
    vals = factor_values(opts.image_size)
    return np.stack([vals[name][idx[:, k]] for k, name in enumerate(FACTOR_NAMES)], axis=1)


def _read(cfg, opts: ShapesOptions, data_opts: DataOptions) -> Dataset:
    n_tr, n_te = sizes(cfg)
    tr, te = draw_indices(n_tr, n_te, opts.seed)
    s = opts.image_size
    return Dataset("shapes", "shapes", render(tr, s)[:, None], tr[:, 0].astype(np.uint8),
                   render(te, s)[:, None], te[:, 0].astype(np.uint8), (0, 255), SHAPES,
                   {"dataset": "shapes", "source": "generated", "seed": opts.seed, "image_size": s,
                    "factors": list(FACTOR_NAMES)}, IMAGES)


SOURCE = Source("shapes", _read, ShapesOptions,
                "dSprites-like shapes (square, ellipse, triangle) with known scale, rotation and position, generated "
                "from a seed", IMAGES, SHAPES, None, (0, 255), what="the shapes set", sized_by_limits=True)
