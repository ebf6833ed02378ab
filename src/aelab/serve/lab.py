"""The lab's Draw and Explore pages and their JSON APIs (``routes(workspace)``, mounted by ``app.py``).

**Draw** (``/draw``): the page sends the strokes drawn on its canvas (points in canvas pixels); the
server rasterises them (:func:`rasterize`) and preprocesses the ink as MNIST's digits were made
(:func:`mnist_preprocess`: bounding box, scaled to fit 20×20 keeping the aspect ratio with area
averaging — the anti-aliasing —, then placed in 28×28 so that the centre of mass sits at the
centre), optionally corrupts it with seeded Gaussian noise as a denoiser's training did, and answers
each chosen run's reconstruction and code (μ and σ for a VAE). Doing it here, in NumPy and Pillow,
keeps one definition of the preprocessing, unit-tested, instead of one per browser.

**Explore** (``/explore``): a run's test codes as a 2-D map (the code itself when it has two
dimensions, else PCA, or t-SNE on :data:`aelab.analysis.latent.MAP_POINTS` points, as
``aelab latent`` computes them, from the run's ``codes.npz`` when it has one), the test images as
one sprite sheet (PNG, fetched once), and the walks of the code space: a point's decoding and its
nearest neighbours in code space, decoding a location of the map (a 2-D code, or a VAE's PCA plane),
interpolation between two points, traversal of the most varying dimensions, samples from a VAE's prior.

Every run is named by its path relative to the workspace and opened through
:meth:`Workspace.open_run` (never a raw path). Images travel as raw ``uint8`` arrays in base64
(``{"shape": [N, C, H, W], "data": "..."}``), scaled from the data's range to 0‥255; a bad request
is a 400 (403 for a path outside the workspace) whose body is ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import latent as L
from ..errors import AelabError
from .pages import page
from .workspace import PathRefused, Workspace

#: MNIST's geometry: the digit fits a FIT×FIT box inside a SIZE×SIZE image
SIZE, FIT = 28, 20
#: the longer side, in pixels, of the ink's box as the server rasterises it (then averaged down to 20)
RASTER = 80
#: limits of a draw request (a digit is a few hundred points)
MAX_POINTS, MAX_STROKES, MAX_CANVAS = 20000, 500, 4096
#: runs compared side by side on the draw page, at most
MAX_RUNS = 4
#: nearest neighbours a click on the map shows
NEIGHBOURS = 8
#: code dimensions the traversal sliders offer, at most
TRAVERSAL_DIMS = 8
#: images one interpolation strip or prior draw decodes, at most
MAX_STRIP = 32


class BadRequest(AelabError):
    """A request the lab cannot answer as sent: one line saying what is wrong and what to send."""


# -- the preprocessing: pure functions ---------------------------------------------------------------
def rasterize(strokes: Sequence[Sequence[Sequence[float]]], width: int, height: int, pen: float) -> np.ndarray:
    """Strokes (each a list of ``[x, y]`` points in canvas pixels) drawn with a round pen of
    diameter ``pen`` on a ``height × width`` black canvas → ``(height, width)`` uint8 ink (255 = ink).
    A stroke of one point is a dot."""
    img = Image.new("L", (int(width), int(height)), 0)
    d = ImageDraw.Draw(img)
    r = max(float(pen), 1.0) / 2.0
    pen = max(float(pen), 1.0)
    for stroke in strokes:
        pts = [(float(x), float(y)) for x, y in stroke]
        if len(pts) > 1:
            d.line(pts, fill=255, width=max(1, int(round(pen))))
        last = None
        for x, y in pts:  # round caps and joints (a point within a quarter pen of the last dot adds nothing)
            if last is None or (x - last[0]) ** 2 + (y - last[1]) ** 2 > (r / 2) ** 2:
                d.ellipse((x - r, y - r, x + r, y + r), fill=255)
                last = (x, y)
        if pts and last != pts[-1]:
            x, y = pts[-1]
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(img, dtype=np.uint8)


def draw_ink(strokes: Sequence[Sequence[Sequence[float]]], width: int, height: int, pen: float) -> np.ndarray:
    """The ink of strokes drawn on a ``height × width`` canvas (points outside it are moved to its
    edge), rasterised (:func:`rasterize`) in the box around the ink only, at a scale that makes its
    longer side at most :data:`RASTER` pixels: enough for :func:`mnist_preprocess`'s area averaging
    (four ink pixels or more per output pixel) and small enough to stay within a millisecond. The
    crop does not change the preprocessing's result: it crops to the ink's box anyway."""
    pts = np.asarray([p for s in strokes for p in s], dtype=np.float64).reshape(-1, 2)
    if not len(pts):
        return np.zeros((1, 1), np.uint8)
    pts = np.clip(pts, 0, [width, height])
    r = max(float(pen), 1.0) / 2.0
    lo, hi = pts.min(axis=0) - r, pts.max(axis=0) + r
    scale = min(1.0, RASTER / float(max(hi - lo)))
    moved = [((np.clip(np.asarray(s, np.float64).reshape(-1, 2), 0, [width, height]) - lo) * scale).tolist()
             for s in strokes if len(s)]
    w, h = (int(math.ceil(v * scale)) + 1 for v in hi - lo)
    return rasterize(moved, w, h, pen * scale)


def _round_half_up(x: np.ndarray | float) -> Any:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def mnist_preprocess(ink: Any) -> np.ndarray:
    """An ink image ``(H, W)`` (0 = background, larger = more ink; any range) → ``(28, 28)`` uint8,
    as MNIST's digits were made (LeCun et al.): the ink's bounding box is scaled to fit a 20×20 box,
    keeping its aspect ratio (the longer side becomes 20 pixels, the shorter ``round(20·short/long)``,
    at least 1), by area averaging (Pillow's box filter: each output pixel is the mean of the ink it
    covers — the anti-aliasing that gives MNIST its grey edges); the result is placed in the 28×28
    field, first centred geometrically, then shifted by whole pixels so that its centre of mass lies
    as near as can be to the field's centre (13.5, 13.5) in pixel-index coordinates (the shift
    rounds half up, and is bounded so that no ink leaves the field). The darkest ink maps to 255.
    No ink at all: an all-zero image."""
    a = np.asarray(ink)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D ink image, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = np.where(np.isfinite(a) & (a > 0), a, 0.0)
    out = np.zeros((SIZE, SIZE), np.uint8)
    peak = float(a.max()) if a.size else 0.0
    if peak <= 0:
        return out
    rows, cols = np.nonzero(a.any(axis=1))[0], np.nonzero(a.any(axis=0))[0]
    crop = a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float64) * (255.0 / peak)
    h, w = crop.shape
    s = FIT / max(h, w)
    nh, nw = (max(1, int(_round_half_up(h * s))), max(1, int(_round_half_up(w * s))))
    small = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize((nw, nh), Image.Resampling.BOX),
                       dtype=np.float64)
    small = np.clip(small, 0.0, 255.0)
    top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
    mass = small.sum()
    if mass > 0:
        cy = (small.sum(axis=1) * np.arange(nh)).sum() / mass + top
        cx = (small.sum(axis=0) * np.arange(nw)).sum() / mass + left
        dy, dx = int(_round_half_up(13.5 - cy)), int(_round_half_up(13.5 - cx))
        top = min(max(top + dy, 0), SIZE - nh)
        left = min(max(left + dx, 0), SIZE - nw)
    out[top:top + nh, left:left + nw] = _round_half_up(small).astype(np.uint8)
    return out


def add_noise(x: np.ndarray, factor: float, seed: int) -> np.ndarray:
    """``clip(x/255 + factor·N(0, 1), 0, 1)`` as uint8 0‥255 (the corruption a denoiser trained on,
    ``aelab.data.prepare.add_noise``'s formula), the noise drawn from ``seed``: the same drawing and
    seed give the same noisy image."""
    if factor <= 0:
        return np.asarray(x, np.uint8)
    noise = np.random.default_rng(int(seed)).standard_normal(np.shape(x))
    y = np.clip(np.asarray(x, np.float64) / 255.0 + float(factor) * noise, 0.0, 1.0)
    return _round_half_up(y * 255.0).astype(np.uint8)


def to_uint8(x: np.ndarray, unit: float) -> np.ndarray:
    """Values in the data's range ``0‥unit`` → uint8 0‥255 (rounded half up, clipped)."""
    return _round_half_up(np.clip(np.asarray(x, np.float64) / float(unit), 0.0, 1.0) * 255.0).astype(np.uint8)


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def images_json(x: np.ndarray, unit: float) -> dict:
    """``(N, C, H, W)`` images in the data's range → ``{"shape", "data"}`` (uint8, base64)."""
    u8 = to_uint8(x, unit)
    return {"shape": list(u8.shape), "data": b64(u8)}


# -- request parsing ---------------------------------------------------------------------------------
def _short(v: Any, n: int = 60) -> str:
    """``repr(v)`` cut to ``n`` characters (an error line quotes what was sent, not all of it)."""
    r = repr(v)
    return r if len(r) <= n else r[:n - 1] + "…"


async def _body(request: Request) -> dict:
    raw = await request.body()
    if len(raw) > 4_000_000:
        raise BadRequest("the request body is larger than 4 MB; send strokes or indices, not images")
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise BadRequest("the request body is not JSON; send a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _number(body: dict, key: str, default: Optional[float] = None, lo: float = -math.inf, hi: float = math.inf) -> float:
    v = body.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise BadRequest(f"{key!r} must be a number between {lo:g} and {hi:g}, got {_short(v)}")
    return float(v)


def _int(body: dict, key: str, default: Optional[int] = None, lo: int = 0, hi: int = 2**31) -> int:
    v = body.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f"{key!r} must be a whole number between {lo} and {hi}, got {_short(v)}")
    return int(v)


def parse_strokes(body: dict) -> tuple[list, int, int, float]:
    """(strokes, width, height, pen) of a draw request, checked (one BadRequest line otherwise)."""
    size = body.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                              and 8 <= v <= MAX_CANVAS for v in size)):
        raise BadRequest(f"'size' must be the canvas's [width, height] in pixels (8…{MAX_CANVAS}), got {_short(size)}")
    pen = _number(body, "pen", 16, 1, 256)
    strokes = body.get("strokes")
    if not isinstance(strokes, list) or len(strokes) > MAX_STROKES:
        raise BadRequest(f"'strokes' must be a list of at most {MAX_STROKES} strokes, each a list of [x, y] points")
    n = 0
    for s in strokes:
        if not isinstance(s, list):
            raise BadRequest("each stroke must be a list of [x, y] points")
        n += len(s)
        if n > MAX_POINTS:
            raise BadRequest(f"too many points (more than {MAX_POINTS}); clear the canvas and draw again")
        for p in s:
            if not (isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                and math.isfinite(v) for v in p)):
                raise BadRequest(f"a point must be [x, y] with two finite numbers, got {_short(p)}")
    return strokes, size[0], size[1], pen


# -- runs ----------------------------------------------------------------------------------------------
def _unit(run) -> float:
    """The top of the run's data range (255 for 8-bit images): what 255 on the page stands for. The
    source's declared range when it has one (known without reading the data), else the data set's."""
    from ..data import SOURCES  # deferred: the data layer's registry (loaded with the run anyway)

    src = SOURCES.get(run.config.data.dataset)
    if src is not None and src.value_range:
        return float(src.value_range[1])
    vr = run.dataset.value_range
    return float(vr[1]) if vr else float(np.max(run.dataset.x_test))


def _image_like(shape: Sequence[int]) -> bool:
    return len(shape) == 3 and shape[0] in (1, 3)


class _RunState:
    """What the pages derive from one opened run, computed once: its unit, the test codes and their
    map, the test images, the PCA plane."""

    def __init__(self, run) -> None:
        self.run = run
        self.lock = threading.Lock()
        self.unit_: Optional[float] = None
        self.codes: Optional[dict] = None
        self.maps: dict[str, dict] = {}
        self.sprites: Optional[bytes] = None

    @property
    def unit(self) -> float:
        if self.unit_ is None:
            self.unit_ = _unit(self.run)
        return self.unit_

    @property
    def code_kind(self) -> str:
        """The family's kind of code: "deterministic", "mean" (a posterior's μ) or "discrete" (indices)."""
        from ..models import family_of  # deferred: the model registry (loaded with the run anyway)

        return family_of(self.run.config.model).code

    @property
    def stochastic(self) -> bool:
        """A VAE-like run: its code is a posterior's mean, its encoder gives μ and log σ², its prior is N(0, I)."""
        return (self.code_kind == "mean" and bool(getattr(self.run.model, "stochastic", False))
                and hasattr(self.run.model.encoder, "distribution"))


class Lab:
    """The draw and explore handlers for one workspace (its runs opened through it, their derived
    arrays kept per opened run)."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self._lock = threading.Lock()
        self._states: dict[str, _RunState] = {}  # by the run's path: a run reopened (its files changed) replaces it

    # -- runs --
    def state(self, rel: Any) -> _RunState:
        if not isinstance(rel, str) or not rel:
            raise BadRequest("'run' must name a run by its path in the workspace (as the run list gives it)")
        run = self.ws.open_run(rel)  # PathRefused / AelabError: one line
        key = self.ws.rel(run.run_dir)
        with self._lock:
            st = self._states.get(key)
            if st is None or st.run is not run:
                st = self._states[key] = _RunState(run)
        return st

    def run_list(self) -> list[dict]:
        """The workspace's finished runs with what the pages need to pick one (read from config.json
        through the workspace; nothing is opened)."""
        out = []
        for e in self.ws.runs():
            if e.status != "finished":
                continue
            try:
                cfg = json.loads((self.ws.resolve(e.rel) / "config.json").read_text(encoding="utf-8"))
                m, d = cfg.get("model", {}), cfg.get("data", {})
                shape = [int(v) for v in m.get("input_shape", [])]
            except (OSError, ValueError, AttributeError, TypeError, AelabError):
                continue
            fam = str(m.get("family", "ae"))
            out.append({"run": e.rel, "name": e.name, "family": fam, "data": e.data, "shape": shape,
                        "noise": float(d.get("noise_factor") or 0.0), "val_loss": e.final.get("val_loss"),
                        "drawable": shape == [1, SIZE, SIZE], "image": len(shape) == 3 and shape[0] in (1, 3)})
        return out

    # -- draw --
    def draw(self, body: dict) -> dict:
        strokes, width, height, pen = parse_strokes(body)
        runs = body.get("runs")
        if not isinstance(runs, list) or not 1 <= len(runs) <= MAX_RUNS:
            raise BadRequest(f"'runs' must be a list of 1 to {MAX_RUNS} run paths")
        noise = _number(body, "noise", 0.0, 0.0, 2.0)
        seed = _int(body, "seed", 0)
        states = [self.state(r) for r in runs]
        for r, st in zip(runs, states):
            if st.run.sample_shape != (1, SIZE, SIZE):
                raise BadRequest(f"{r} was trained on {'×'.join(map(str, st.run.sample_shape))} data; drawing "
                                 f"needs a run on 28×28 grey images (MNIST-like)")
        clean = mnist_preprocess(draw_ink(strokes, width, height, pen))
        x = add_noise(clean, noise, seed)
        out = {"input": b64(clean), "noisy": b64(x) if noise > 0 else None, "results": []}
        for r, st in zip(runs, states):
            out["results"].append({"run": r, **self.encode_reconstruct(st, x)})
        return out

    @staticmethod
    def encode_reconstruct(st: _RunState, x8: np.ndarray) -> dict:
        """Reconstruction (uint8 base64) and code of one 28×28 uint8 image under a run."""
        import torch  # deferred: loaded with the first opened run anyway

        run = st.run
        x = (x8.astype(np.float32) * np.float32(st.unit / 255.0)).reshape(1, *run.sample_shape)
        t = torch.from_numpy(np.ascontiguousarray(run.scaler.apply(x))).to(run.device)
        with torch.no_grad():  # one forward pass: TrainedRun.reconstruct's (model(x).recon) and the code
            out = run.model(t)
            recon = run.scaler.invert(out.recon.float().cpu().numpy())
            res: dict[str, Any] = {"recon": b64(to_uint8(recon, st.unit))}
            code = out.code.reshape(-1).float().cpu().tolist()
            if st.stochastic:
                _, logvar = run.model.encoder.distribution(t)
                res["mu"] = [round(v, 5) for v in code]
                res["sigma"] = [round(float(v), 5) for v in torch.exp(0.5 * logvar).reshape(-1)]
            else:
                res["code"] = [round(v, 5) for v in code]
                if st.code_kind == "discrete":
                    res["discrete"] = True
        return res

    # -- explore --
    def codes(self, st: _RunState) -> dict:
        """The test codes the map shows: the run's codes.npz (its test subsample, ≤ 5,000), else
        the same subsample encoded now (kept in memory; the run directory is not written). A discrete
        code (a VQ-VAE's indices) has none to explore: one BadRequest line."""
        if st.code_kind == "discrete":
            raise BadRequest(f"{self.ws.rel(st.run.run_dir)}'s code is codebook indices (names, not coordinates): it has "
                             "no map to explore; aelab latent shows how often each codebook entry is used")
        with st.lock:
            if st.codes is not None:
                return st.codes
            from ..runs.codes import MAX_TEST, names_of, read_codes  # deferred: PyTorch (loaded with the run)

            run = st.run
            arrays = read_codes(self.ws.resolve(self.ws.rel(run.run_dir)))
            ds = run.dataset
            if arrays is None:
                idx = L.subsample(len(ds.x_test), MAX_TEST, int(run.config.train.seed) + 1)
                arrays = {"test_index": idx, "test_codes": run.encode(ds.x_test[idx])}
                if ds.y_test is not None:
                    arrays["test_labels"] = np.asarray(ds.y_test)[idx]
            z = np.asarray(arrays["test_codes"], np.float64)
            idx = np.asarray(arrays["test_index"], np.int64)
            labels = arrays.get("test_labels")
            names = names_of(arrays) or tuple(str(c) for c in (ds.classes or ()))
            st.codes = {"z": z, "index": idx, "images": np.asarray(ds.x_test)[idx],
                        "labels": None if labels is None else np.asarray(labels, np.int64), "names": list(names)}
            return st.codes

    def map(self, st: _RunState, method: str) -> dict:
        c = self.codes(st)
        z = c["z"]
        dims = int(z.shape[1])
        methods = ["code"] if dims <= 2 else ["pca", "tsne"]
        if method == "auto":
            method = methods[0]
        if method not in methods:
            raise BadRequest(f"map method {method!r} does not apply to a {dims}-D code; use {' or '.join(methods)}")
        with st.lock:
            hit = st.maps.get(method)
        if hit is not None:
            return hit
        from ..analysis.latent import MAP_POINTS  # deferred: the analysis layer's constants, loaded on demand

        seed = 0
        order = L.subsample(len(z), MAP_POINTS, seed) if method == "tsne" else np.arange(len(z))
        pts = L.embed_2d(z[order], method, seed)
        plane = None
        if method == "code":
            plane = {"mean": [0.0] * dims, "axes": np.eye(dims, 2).T.tolist()}
        elif method == "pca" and st.stochastic:
            mean = z[order].mean(axis=0)
            w, *_ = np.linalg.lstsq(z[order] - mean, pts, rcond=None)  # (K, 2): the PCA's two axes
            plane = {"mean": mean.tolist(), "axes": w.T.tolist()}
        labels = c["labels"]
        res = {"method": method, "methods": methods, "dims": dims, "n": int(len(order)),
               "points": b64(pts.astype(np.float32)), "order": b64(order.astype(np.int32)),
               "labels": b64(labels[order].astype(np.int32)) if labels is not None else None,
               "names": c["names"], "plane": plane, "stochastic": st.stochastic,
               "image_shape": list(st.run.sample_shape) if _image_like(st.run.sample_shape) else None}
        with st.lock:
            st.maps[method] = res
        return res

    def sprites(self, st: _RunState) -> bytes:
        """The test images of the map (codes order) as one PNG, ``cols`` = 100 images a row."""
        if not _image_like(st.run.sample_shape):
            raise BadRequest(f"{self.ws.rel(st.run.run_dir)} was trained on rows of a table, not images: no sprites")
        c = self.codes(st)
        with st.lock:
            if st.sprites is not None:
                return st.sprites
        x = to_uint8(c["images"], st.unit)
        n, ch, h, w = x.shape
        cols = 100
        rows = max(1, math.ceil(n / cols))
        sheet = np.zeros((rows * h, cols * w, ch), np.uint8)
        for i in range(n):
            r, k = divmod(i, cols)
            sheet[r * h:(r + 1) * h, k * w:(k + 1) * w] = x[i].transpose(1, 2, 0)
        img = Image.fromarray(sheet[:, :, 0] if ch == 1 else sheet, mode="L" if ch == 1 else "RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=False, compress_level=6)
        with st.lock:
            st.sprites = buf.getvalue()
        return st.sprites

    def _point(self, st: _RunState, body: dict, key: str = "index") -> int:
        return _int(body, key, None, 0, len(self.codes(st)["z"]) - 1)

    def point(self, st: _RunState, body: dict) -> dict:
        """A map point's decoding, its nearest neighbours (code space, Euclidean) and the traversal's
        sliders on the most varying code dimensions."""
        c = self.codes(st)
        i = self._point(st, body)
        z = c["z"]
        d = ((z - z[i]) ** 2).sum(axis=1)
        d[i] = np.inf
        nn = np.argsort(d, kind="stable")[:NEIGHBOURS]
        dims = z.shape[1]
        order = np.argsort(-z.var(axis=0), kind="stable")[:min(TRAVERSAL_DIMS, dims)]
        sliders = []
        for k in order:
            vals = L.traversal_values(z, int(k), 2, prior=st.stochastic)
            sliders.append({"dim": int(k), "lo": float(vals[0]), "hi": float(vals[-1]), "value": float(z[i, k])})
        return {"index": i, "code": z[i].tolist(), "decoded": images_json(st.run.decode(z[i:i + 1]), st.unit),
                "neighbours": nn.tolist(), "distances": [float(np.sqrt(d[j])) for j in nn],
                "label": None if c["labels"] is None else int(c["labels"][i]), "sliders": sliders}

    def decode(self, st: _RunState, body: dict) -> dict:
        z = body.get("z")
        dims = int(self.codes(st)["z"].shape[1])
        if not (isinstance(z, list) and 1 <= len(z) <= MAX_STRIP):
            raise BadRequest(f"'z' must be a list of 1 to {MAX_STRIP} codes, each {dims} numbers")
        for v in z:
            if not (isinstance(v, list) and len(v) == dims and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                                                   and math.isfinite(a) for a in v)):
                raise BadRequest(f"each code in 'z' must be a list of {dims} finite numbers (this run's code size)")
        return {"decoded": images_json(st.run.decode(np.asarray(z, np.float32)), st.unit)}

    def interpolate(self, st: _RunState, body: dict) -> dict:
        z = self.codes(st)["z"]
        a, b = self._point(st, body, "a"), self._point(st, body, "b")
        steps = _int(body, "steps", 10, 2, MAX_STRIP)
        path = L.interpolate(z[a], z[b], steps, spherical=st.stochastic)
        return {"a": a, "b": b, "spherical": st.stochastic,
                "decoded": images_json(st.run.decode(path.astype(np.float32)), st.unit)}

    def prior(self, st: _RunState, body: dict) -> dict:
        if not st.stochastic:
            raise BadRequest(f"{self.ws.rel(st.run.run_dir)} is not a VAE: it has no prior to sample from")
        n = _int(body, "n", 16, 1, MAX_STRIP)
        seed = _int(body, "seed", 0)
        dims = int(self.codes(st)["z"].shape[1])
        return {"seed": seed, "decoded": images_json(st.run.decode(L.prior_samples(n, dims, seed).astype(np.float32)),
                                                     st.unit)}


# -- routes --------------------------------------------------------------------------------------------
def _error(exc: Exception) -> JSONResponse:
    status = 403 if isinstance(exc, PathRefused) else 400
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return JSONResponse({"error": msg}, status_code=status)


def routes(workspace: Workspace) -> list[BaseRoute]:
    """The Draw and Explore pages and their ``/api/lab/…`` endpoints for ``workspace``."""
    lab = Lab(workspace)

    def api(fn, *, post: bool = True, thread: bool = False):
        async def endpoint(request: Request) -> Response:
            try:
                body = await _body(request) if post else dict(request.query_params)
                if thread:
                    res = await run_in_threadpool(fn, body)
                else:
                    res = fn(body)
            except (AelabError, ValueError) as exc:
                return _error(exc)
            return res if isinstance(res, Response) else JSONResponse(res)
        return endpoint

    def with_run(method):
        return lambda body: method(lab.state(body.get("run")), body)

    def map_(q):
        return lab.map(lab.state(q.get("run")), str(q.get("method", "auto")))

    def sprites(q):
        png = lab.sprites(lab.state(q.get("run")))
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def draw_page(request: Request):
        return page(request, "draw.html", title="Draw")

    async def explore_page(request: Request):
        return page(request, "explore.html", title="Explore")

    return [
        Route("/draw", draw_page),
        Route("/explore", explore_page),
        Route("/api/lab/runs", api(lambda q: {"runs": lab.run_list()}, post=False, thread=True)),
        # the draw round trip runs on the event loop: a few milliseconds, no thread hop
        Route("/api/lab/draw", api(lab.draw), methods=["POST"]),
        Route("/api/lab/map", api(map_, post=False, thread=True)),
        Route("/api/lab/sprites", api(sprites, post=False, thread=True)),
        Route("/api/lab/point", api(with_run(lab.point), thread=True), methods=["POST"]),
        Route("/api/lab/decode", api(with_run(lab.decode)), methods=["POST"]),
        Route("/api/lab/interpolate", api(with_run(lab.interpolate), thread=True), methods=["POST"]),
        Route("/api/lab/prior", api(with_run(lab.prior), thread=True), methods=["POST"]),
    ]


__all__ = ["routes", "rasterize", "mnist_preprocess", "add_noise", "to_uint8", "draw_ink", "Lab", "BadRequest"]
