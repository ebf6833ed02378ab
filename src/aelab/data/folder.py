"""A folder of your own images (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM), read with Pillow.

Layouts, decided by what the folder holds:

- ``root/*.png``: one pool, no labels;
- ``root/<class>/*.png``: one pool, labelled by sub-folder name (classes in sorted order);
- ``root/train/…`` and ``root/test/…`` (each flat or with class sub-folders): the split as given.

A pool is split with a seeded, stratified ``data.test_fraction``. Images are converted to
grayscale or RGB (``data.channels``; by default RGB when any image has colour) and resized
(bilinear) to ``data.image_size`` when given; images of different sizes without it are refused.
Every failure is one :class:`~aelab.errors.DataError` line naming the file and what to do.
Hidden files are skipped; any other file that is not an image is an error (a stray file in a data
folder is more likely a mistake than a wish).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from ..errors import DataError
from .content import content_sha256
from .dataset import IMAGES, Dataset, split_indices
from .digits import PoolOptions
from .source import DataOptions, Source

TABLE_SUFFIXES = (".csv", ".npy", ".npz")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


class FolderOptions(PoolOptions):
    """A folder of images: ``channels`` 1 (grayscale) or 3 (RGB), by default RGB when any image has
    colour; ``image_size`` (H, W) to resize every image to (bilinear; ``"32"`` or ``"32x48"`` on the
    command line); a folder without train/ and test/ is split by ``test_fraction``/``split_seed``."""

    kind: Literal["folder"] = "folder"
    channels: Literal[1, 3] | None = None
    image_size: tuple[int, int] | None = None

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return parse_image_size(v) if v is not None else v

    def sample_shape(self) -> tuple[int, ...] | None:
        if self.channels is None or self.image_size is None:
            return None
        return (self.channels, *self.image_size)


def parse_image_size(v: Any) -> Any:
    """``32`` / ``"32"`` → (32, 32); ``"32x48"`` / ``[32, 48]`` → (32, 48) as (H, W); else a ValueError."""
    if isinstance(v, bool):
        raise ValueError(f"got {v!r}; give H or HxW such as 32 or 32x48")
    if isinstance(v, int):
        v = (v, v)
    elif isinstance(v, str):
        parts = v.lower().replace("×", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"got {v!r}; give H or HxW such as 32 or 32x48") from None
        if len(nums) not in (1, 2):
            raise ValueError(f"got {v!r}; give H or HxW such as 32 or 32x48")
        v = (nums[0], nums[-1])
    elif isinstance(v, list):
        v = tuple(v)
    if isinstance(v, tuple):
        if len(v) != 2 or not all(isinstance(d, int) and not isinstance(d, bool) for d in v):
            raise ValueError(f"got {list(v)}; give H or HxW such as 32 or 32x48")
        if not all(1 <= d <= 4096 for d in v):
            raise ValueError(f"got {v[0]}x{v[1]}; each side must be between 1 and 4096 pixels")
    return v


def load_folder(cfg, opts: FolderOptions, data_opts: DataOptions) -> Dataset:
    root = Path(cfg.dataset).expanduser()
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        tr_files, tr_labels = _listing(train_dir, root)
        te_files, te_labels = _listing(test_dir, root)
        classes = tuple(sorted(set(tr_labels or []) | set(te_labels or [])))
        if (tr_labels is None) != (te_labels is None):
            raise DataError(f"{root}: one of train/ and test/ has class sub-folders and the other not; give both the "
                            "same layout")
        files = tr_files + te_files
    else:
        files, labels = _listing(root, root)
        classes = tuple(sorted(set(labels))) if labels is not None else ()
        tr_labels = labels
    channels = opts.channels
    images = [_open(f, root) for f in files]
    if channels is None:
        channels = 3 if any(im.mode not in _GRAY_MODES for im in images) else 1
    size = tuple(opts.image_size) if opts.image_size is not None else None
    if size is None:
        sizes = {}
        for f, im in zip(files, images):
            sizes.setdefault((im.height, im.width), f)
        if len(sizes) > 1:
            (s1, f1), (s2, f2) = list(sizes.items())[:2]
            raise DataError(f"{root}: images differ in size ({_rel(f1, root)} is {s1[0]}x{s1[1]}, {_rel(f2, root)} is "
                            f"{s2[0]}x{s2[1]}); pass --image-size HxW (data.image_size) to resize them all")
        size = next(iter(sizes))
    arrays = np.stack([_pixels(im, f, root, channels, size) for f, im in zip(files, images)])
    y_all = None
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        lab = (tr_labels or []) + (te_labels or []) if train_dir.is_dir() and test_dir.is_dir() else tr_labels
        y_all = np.array([index[c] for c in lab], dtype=np.int64)
    if train_dir.is_dir() and test_dir.is_dir():
        n_tr = len(tr_files)
        tr, te = np.arange(n_tr), np.arange(n_tr, len(files))
        split = "train/ and test/"
    else:
        tr, te = split_indices(len(files), opts.test_fraction, opts.split_seed, y_all, str(root))
        split = f"seeded {opts.test_fraction:g} test fraction (seed {opts.split_seed})"
    prov = {"dataset": str(cfg.dataset), "kind": "images", "source": "folder", "path": str(root.resolve()),
            "files": len(files), "sha256": content_sha256(cfg.dataset), "split": split,
            "channels": channels, "image_size": list(size)}
    return Dataset(str(cfg.dataset), "images", arrays[tr], None if y_all is None else y_all[tr], arrays[te],
                   None if y_all is None else y_all[te], (0, 255), classes, prov, IMAGES)


def _claims(dataset: str) -> bool:
    """Any path that is not a table: a folder (whether it exists is checked when it is read)."""
    p = Path(dataset).expanduser()
    return not (p.suffix.lower() in TABLE_SUFFIXES and not p.is_dir())


SOURCE = Source("folder", load_folder, FolderOptions, "a folder of images (PNG, JPEG, ...): its own path", IMAGES,
                what="a folder of images", claims=_claims)


def _rel(f: Path, root: Path) -> str:
    try:
        return str(root / f.relative_to(root))
    except ValueError:
        return str(f)


def _listing(folder: Path, root: Path) -> tuple[list[Path], list[str] | None]:
    """The image files of ``folder`` (sorted) and their class names (sub-folders), or None when flat."""
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{folder}: cannot list it ({exc.strerror}); check its permissions") from None
    subdirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if not p.is_dir()]
    if subdirs and loose:
        raise DataError(f"{folder}: holds both images ({loose[0].name}) and sub-folders ({subdirs[0].name}); put every "
                        "image in a class sub-folder, or none")
    if not subdirs:
        files, labels = _images_in(loose, folder), None
    else:
        files, labels = [], []
        for d in subdirs:
            try:
                inner = sorted(p for p in d.iterdir() if not p.name.startswith("."))
            except OSError as exc:
                raise DataError(f"{d}: cannot list it ({exc.strerror}); check its permissions") from None
            nested = [p for p in inner if p.is_dir()]
            if nested:
                raise DataError(f"{nested[0]}: class sub-folders hold images, not more folders; flatten it")
            got = _images_in(inner, d)
            files += got
            labels += [d.name] * len(got)
    if not files:
        raise DataError(f"{folder}: no images (PNG, JPEG, BMP, GIF, TIFF, WebP) in it"
                        f"{' or its sub-folders' if subdirs else ''}; point --dataset at a folder of images")
    return files, labels


def _images_in(paths: list[Path], folder: Path) -> list[Path]:
    for p in paths:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"{p}: not an image file name (expected one of {', '.join(sorted(IMAGE_SUFFIXES))}); move "
                            "it out of the data folder")
    return list(paths)


def _open(f: Path, root: Path):
    # deferred: Pillow is needed only when a folder of images is read
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # a huge image is refused below as a DecompressionBombError; its warning must not fail a test run
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                im.load()  # Pillow opens lazily: a truncated file fails here, not later
                return im.copy()  # the file is closed on leaving; the copy keeps the pixels (and mode, info)
    except Image.DecompressionBombError:
        raise DataError(f"{f}: too large to be a training image (Pillow refuses it as a decompression bomb); "
                        "resize or remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # UnidentifiedImageError is an OSError; a truncated PNG/JPEG raises OSError from load()
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{f}: not a readable image ({msg}); replace or remove it") from None


def _pixels(im, f: Path, root: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) uint8 pixels of ``im`` in ``channels`` channels, resized to ``size`` = (H, W)."""
    from PIL import Image  # deferred: as in _open

    try:
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            # 16-bit or float grayscale: rescale to 8 bits by the type's range instead of clipping
            a = np.asarray(im, dtype=np.float64)
            top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
            im = Image.fromarray(np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8), mode="L")
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))  # transparency shows as white
            im = Image.alpha_composite(bg, im)
        im = im.convert("L" if channels == 1 else "RGB")
        if (im.height, im.width) != tuple(size):
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{f}: cannot convert it to {channels}-channel {size[0]}x{size[1]} pixels ({msg}); replace "
                        "or remove it") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
