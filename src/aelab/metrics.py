"""Evaluation metrics for autoencoders: pure, vectorised functions on torch tensors.

What belongs here: the numbers written to ``metrics.json`` (see ``docs/formats.md``) and the
functions that compute them — reconstruction quality (BCE, MSE, PSNR, SSIM), code statistics
(dead units, mean activation, sparsity) and reconstruction diversity — plus
:func:`evaluate`, which runs an encoder/decoder over a test set and returns the
``metrics.json`` dict, and :data:`METRIC_DOCS`, the plain-English definitions used by the
report's appendix.

What does not belong here: file I/O, training losses (``aelab.losses``), plotting, reports.

What depends on the test images alone — not on the model — is computed once per process and set
of images (:func:`_data_memo`, by the images' content): the spread of the originals that
:func:`diversity` divides by, SSIM's local moments of the clean images, and a denoising run's
``input_psnr`` / ``input_ssim`` of its noisy inputs. Every run evaluated on the same test split
(a study's runs) reuses them; the numbers are the ones computed, to the bit.

Every function takes whole batches (first axis = image) and works without Python loops over
images, so evaluating a 10 000-image MNIST test set with every metric takes well under a second
on a small CPU. Images are flat ``(N, 784)`` float tensors with values in ``[0, 1]`` unless a
docstring says otherwise.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import Any, Callable

import torch

__all__ = [
    "METRIC_DOCS",
    "bce",
    "bce_per_image",
    "code_stats",
    "diversity",
    "evaluate",
    "mse",
    "mse_per_image",
    "psnr",
    "psnr_per_image",
    "ssim",
    "ssim_per_image",
]

#: Keras' default ``backend.epsilon()``: predictions are clipped to ``[EPS, 1 - EPS]`` for BCE.
EPS = 1e-7
#: PSNR's MSE floor: identical images get a large, finite PSNR (100 dB for ``data_range=1``).
MSE_FLOOR = 1e-10
#: A code unit is dead when ``max - min`` over the evaluated set is at most this.
DEAD_TOL = 1e-6

# SSIM constants (Wang et al. 2004, as in ``skimage.metrics.structural_similarity`` with
# ``gaussian_weights=True``): an 11-tap Gaussian window (sigma 1.5, truncate 3.5 -> radius 5).
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # 5, as scipy.ndimage computes it
SSIM_WIN = 2 * SSIM_RADIUS + 1  # 11
_SSIM_CHUNK = 512  # images per SSIM chunk: cache-sized, the fastest on CPU
#: how many data-only results :func:`_data_memo` keeps, and how many bytes of tensors at most
_MEMO_ENTRIES = 16
_MEMO_BYTES = 256 * 2**20
_MEMO: "OrderedDict[tuple, Any]" = OrderedDict()


def _fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-1 of the tensors' dtypes, shapes and values: the same images, the same fingerprint."""
    h = hashlib.sha1()
    for t in tensors:
        t = t.detach().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).reshape(-1).numpy() if t.numel() else b"")
    return h.hexdigest()


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


def _data_memo(key: tuple | None, compute: Callable[[], Any]) -> Any:
    """``compute()`` of something that depends on test images alone, kept under ``key`` (what it is,
    and the images' :func:`_fingerprint`) for the next call on the same images; ``key`` None: not
    kept. Kept tensors are never modified by their users."""
    if key is None:
        return compute()
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    value = compute()
    if _nbytes(value) <= _MEMO_BYTES:
        _MEMO[key] = value
        while len(_MEMO) > _MEMO_ENTRIES or sum(_nbytes(v) for v in _MEMO.values()) > _MEMO_BYTES:
            _MEMO.popitem(last=False)
    return value


def _cpu_fingerprint(x: torch.Tensor) -> str | None:
    """:func:`_fingerprint` of images on the CPU; None elsewhere (there the arithmetic is cheap, and
    hashing would copy the images over)."""
    return _fingerprint(x) if x.device.type == "cpu" else None


def _flat(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as a floating ``(N, D)`` tensor (a 1-D tensor is one image)."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.float()
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    return x


def _pair(x: torch.Tensor, y: torch.Tensor, xn: str, yn: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _flat(x, xn), _flat(y, yn)
    if x.shape != y.shape:
        raise ValueError(f"{xn} and {yn} must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


# --------------------------------------------------------------------------------------------
# Reconstruction quality
# --------------------------------------------------------------------------------------------


def bce_per_image(y_true: torch.Tensor, y_pred: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Keras binary cross-entropy from probabilities, one value per image.

    ``p = clip(y_pred, eps, 1 - eps)``;
    ``bce_i = mean_j -(y_ij * log(p_ij) + (1 - y_ij) * log(1 - p_ij))``.

    Args:
        y_true: ``(N, D)`` targets in ``[0, 1]`` (e.g. ``(N, 784)`` clean images).
        y_pred: ``(N, D)`` predicted probabilities; values outside ``[0, 1]`` (a relu output
            above 1) are clipped like Keras does.
        eps: clipping epsilon (Keras' ``backend.epsilon()`` = 1e-7).

    Returns:
        ``(N,)`` float tensor, dtype of the inputs.
    """
    y, p = _pair(y_true, y_pred, "y_true", "y_pred")
    p = p.to(y.dtype).clamp(eps, 1.0 - eps)
    log_not_p = torch.log1p(-p)
    # y log p + (1 - y) log(1 - p), rearranged to save one full-size temporary.
    return -(log_not_p + y * (torch.log(p) - log_not_p)).mean(dim=1)


def bce(y_true: torch.Tensor, y_pred: torch.Tensor, eps: float = EPS) -> float:
    """Mean of :func:`bce_per_image` over the images (= Keras' ``binary_crossentropy`` loss)."""
    return float(bce_per_image(y_true, y_pred, eps).double().mean())


def mse_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: ``mean_j (x_ij - y_ij)**2``.

    Args:
        x, y: ``(N, D)`` float tensors (e.g. ``(N, 784)`` in ``[0, 1]``).

    Returns:
        ``(N,)`` float tensor.
    """
    x, y = _pair(x, y, "x", "y")
    return (x - y.to(x.dtype)).square().mean(dim=1)


def mse(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean of :func:`mse_per_image` (= the MSE over all pixels of all images)."""
    return float(mse_per_image(x, y).double().mean())


def psnr_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    ``psnr_i = 10 * log10(data_range**2 / max(mse_i, 1e-10))``; the MSE floor keeps identical
    images finite (100 dB for ``data_range=1``).

    Args:
        x, y: ``(N, D)`` float tensors with values in ``[0, data_range]``.
        data_range: the span of possible pixel values (1.0 for images scaled to ``[0, 1]``).

    Returns:
        ``(N,)`` float64 tensor.
    """
    m = mse_per_image(x, y).double().clamp_min(MSE_FLOOR)
    return 10.0 * torch.log10(data_range**2 / m)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean of :func:`psnr_per_image` over the images (the mean of per-image dB values)."""
    return float(psnr_per_image(x, y, data_range).mean())


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian taps scipy.ndimage uses (sigma 1.5, radius 5)."""
    t = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * t.square() / SSIM_SIGMA**2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _valid_filter_matrix(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(size - 10, size)`` banded Toeplitz matrix ``G``: ``G @ v`` is the valid (unpadded)
    11-tap Gaussian correlation of the vector ``v`` (row ``i`` holds the taps at ``i..i+10``)."""
    g = _gaussian_window(torch.float64, device)
    out = size - SSIM_WIN + 1
    m = torch.zeros(out, size, dtype=torch.float64, device=device)
    rows = torch.arange(out, device=device).unsqueeze(1)
    cols = rows + torch.arange(SSIM_WIN, device=device)
    m[rows.expand_as(cols), cols] = g.expand(out, SSIM_WIN)
    return m.to(dtype)


def _as_images(x: torch.Tensor, name: str) -> torch.Tensor:
    """``(N, H, W)`` from ``(N, H, W)`` or flat square ``(N, H*W)`` (784 -> 28 x 28)."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.float()
    if x.ndim == 3:
        return x
    x = _flat(x, name)
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"{name}: flat images must be square (e.g. 784 = 28x28), got {x.shape[1]} pixels")
    return x.reshape(x.shape[0], side, side)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, as skimage computes it.

    Local statistics use an 11x11 Gaussian window (sigma 1.5, taps normalised to sum 1, the
    kernel ``scipy.ndimage.gaussian_filter`` uses with truncate 3.5) and population (not
    sample) covariances: ``mu_x = G*x``, ``s_x^2 = G*x^2 - mu_x^2``,
    ``s_xy = G*(xy) - mu_x mu_y`` and

        ``S = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``

    with ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``, ``R = data_range``. The image's SSIM is the
    mean of ``S`` over the pixels whose window lies fully inside the image: skimage filters
    with reflect padding, then crops ``(11 - 1) // 2 = 5`` pixels from every border before
    averaging, so only unpadded ("valid") positions count — the central 18 x 18 of a
    28 x 28 image. A valid convolution computes exactly those positions.

    Implementation: the separable Gaussian is applied as two batched matrix products with a
    banded Toeplitz matrix, ``G_h @ M @ G_w^T``, for all images and each of the five maps
    (x, y, x², y², xy) — the same valid separable convolution as ``conv2d`` with a 1x11 then
    an 11x1 kernel, but over 10x faster on CPU (float64 ``conv2d`` took 1.3 s for 10 000
    images, this takes 0.08 s). Everything is computed in float64, whatever the input dtype:
    in float32 the cancellation in ``E[x²] - E[x]²`` costs up to ~3e-5 of SSIM on flat
    grey or near-white regions, where ``C2 = 9e-4`` is all that stabilises the ratio. It
    matches ``skimage.metrics.structural_similarity(a, b, data_range=1.0,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` on float64 images to
    ~1e-12 (and skimage's own float32 computation, used for float32 images, to ~1e-5).

    Args:
        x, y: ``(N, 784)`` flat 28x28 images (any flat square size, or ``(N, H, W)``;
            H, W >= 11), values in ``[0, data_range]``.
        data_range: the span of possible pixel values.

    Returns:
        ``(N,)`` float64 tensor.
    """
    return _ssim_images(_as_images(x, "x"), _as_images(y, "y"), data_range)


def _ssim_filters(h: int, w: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return _valid_filter_matrix(h, torch.float64, dev), _valid_filter_matrix(w, torch.float64, dev).T


def _ssim_moments(a: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per chunk of :data:`_SSIM_CHUNK` images of ``a`` (N, H, W): the local mean and mean square
    ``(G*a, G*a²)``, float64 — the half of SSIM's moments that one image set alone determines."""
    gh, gwt = _ssim_filters(a.shape[1], a.shape[2], a.device)
    out = []
    for s in range(0, a.shape[0], _SSIM_CHUNK):
        xa = a[s : s + _SSIM_CHUNK].to(torch.float64)
        out.append((gh @ xa @ gwt, gh @ (xa * xa) @ gwt))
    return out


def _ssim_images(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0,
                 a_moments: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """:func:`ssim_per_image` of ``(N, H, W)`` images; ``a_moments``: :func:`_ssim_moments` of ``a``
    when already at hand."""
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    n, h, w = a.shape
    if h < SSIM_WIN or w < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN}, got {h}x{w}")
    dtype = torch.float64
    dev = a.device
    gh, gwt = _ssim_filters(h, w, dev)
    moments = a_moments if a_moments is not None else _ssim_moments(a)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    out = torch.empty(n, dtype=torch.float64, device=dev)
    for k, s in enumerate(range(0, n, _SSIM_CHUNK)):
        xa = a[s : s + _SSIM_CHUNK].to(dtype)
        ya = b[s : s + _SSIM_CHUNK].to(dtype)
        # Local moments; five separate batched products beat stacking the maps.
        ux, uxx = moments[k]
        uy = gh @ ya @ gwt
        uyy, uxy = gh @ (ya * ya) @ gwt, gh @ (xa * ya) @ gwt
        vx = uxx - ux * ux
        vy = uyy - uy * uy
        vxy = uxy - ux * uy
        num = (2 * ux * uy + c1) * (2 * vxy + c2)
        den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
        out[s : s + _SSIM_CHUNK] = (num / den).mean(dim=(1, 2), dtype=torch.float64)
    return out


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean of :func:`ssim_per_image` over the images."""
    return float(ssim_per_image(x, y, data_range).mean())


# --------------------------------------------------------------------------------------------
# Codes and diversity
# --------------------------------------------------------------------------------------------


def code_stats(h: torch.Tensor) -> dict:
    """Statistics of the codes ``h``: ``(N, units)`` encoder outputs over an evaluation set.

    Returns a dict of plain Python numbers:
        ``units``: number of code units (columns).
        ``dead_units``: units whose value never varies over the set, ``max - min <= 1e-6``
            (a relu that is never active, a saturated sigmoid, a constant unit); a unit is
            useless to the decoder when it carries the same value for every input.
        ``dead_fraction``: ``dead_units / units``.
        ``mean_activation``: mean of all entries of ``h``.
        ``zero_fraction``: fraction of entries of ``h`` that are exactly 0.
    """
    h = torch.as_tensor(h)
    if h.ndim == 1:
        h = h.unsqueeze(1)
    h = h.reshape(h.shape[0], -1)
    n, units = h.shape
    if n == 0 or units == 0:
        raise ValueError(f"code_stats needs a non-empty (N, units) code matrix, got {tuple(h.shape)}")
    hd = h.double()
    span = hd.amax(dim=0) - hd.amin(dim=0)
    dead = int((span <= DEAD_TOL).sum())
    return {
        "units": int(units),
        "dead_units": dead,
        "dead_fraction": dead / units,
        "mean_activation": float(hd.mean()),
        "zero_fraction": float((h == 0).sum()) / (n * units),
    }


def _mean_offdiag_distance(z: torch.Tensor) -> float:
    """Mean Euclidean distance over all ordered pairs ``i != j`` of rows of ``z`` (float64)."""
    m = z.shape[0]
    z = z.double()
    # Centring leaves distances unchanged, makes identical rows exactly 0 apart and keeps
    # cdist's |a|^2 + |b|^2 - 2ab (matmul) path accurate.
    z = z - z.mean(dim=0)
    d = torch.cdist(z, z)
    d.fill_diagonal_(0.0)
    return float(d.sum()) / (m * (m - 1))


def _diversity(x: torch.Tensor, recon: torch.Tensor, n: int, x_spread: float | None = None) -> float:
    m = min(int(n), x.shape[0])
    if m < 2:
        raise ValueError(f"diversity needs at least 2 images, got {m}")
    den = _mean_offdiag_distance(x[:m]) if x_spread is None else x_spread
    if den == 0.0:
        return math.nan
    return _mean_offdiag_distance(recon[:m]) / den


def diversity(x: torch.Tensor, recon: torch.Tensor, n: int = 1000) -> float:
    """How much reconstructions vary, relative to how much the originals vary.

    Over the first ``n`` images (all of them when fewer):
    ``mean_{i != j} ||recon_i - recon_j|| / mean_{i != j} ||x_i - x_j||``
    (Euclidean distances between flat images, diagonal excluded; float64).

    About 0: the model outputs (nearly) the same image for every input; about 1: the
    reconstructions are as spread out as the digits themselves (``recon == x`` gives exactly 1).

    Args:
        x: ``(N, D)`` originals, e.g. ``(N, 784)``.
        recon: ``(N, D)`` their reconstructions.
        n: number of leading images used (pairwise cost grows as ``n**2``).

    Returns:
        The ratio as a float; ``nan`` when the ``n`` originals are all identical (0 / 0).
    """
    x, r = _pair(x, recon, "x", "recon")
    return _diversity(x, r, n)


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------


#: Images used by :func:`evaluate` for :func:`diversity`.
DIVERSITY_N = 1000


def _reconstruct(encode, decode, x: torch.Tensor, batch_size: int, keep_codes: bool,
                 labels: torch.Tensor | None = None):
    """Run ``decode(encode(.))`` over ``x`` in chunks; flat codes (or None) and flat recon. With
    ``labels`` (a conditional model's), each chunk's labels go to both as their second argument."""
    codes, recons = [], []
    for s in range(0, x.shape[0], batch_size):
        xb = x[s : s + batch_size]
        extra = () if labels is None else (labels[s : s + batch_size],)
        h = torch.as_tensor(encode(xb, *extra))
        r = torch.as_tensor(decode(h, *extra))
        if keep_codes:
            codes.append(h.reshape(xb.shape[0], -1))
        recons.append(r.reshape(xb.shape[0], -1))
    recon = torch.cat(recons).float()
    if recon.shape != x.shape:
        raise ValueError(f"decode output flattens to {tuple(recon.shape)}, expected {tuple(x.shape)}")
    return (torch.cat(codes) if keep_codes else None), recon


def _quality(clean: torch.Tensor, out: torch.Tensor, sample_shape: tuple | None = None,
             clean_key: str | None = None) -> tuple[dict, torch.Tensor]:
    """bce on the raw output (BCE clips it itself); mse/psnr/ssim on the output clipped to
    [0, 1]. Also returns the clipped output.

    ``sample_shape`` (C, H, W) or (D,): what one flat row is. None: a flat square grayscale image,
    as before shapes were recorded. SSIM only where it means something: images of at least 11×11
    (its window), averaged over the channels. Vectors (a table): no PSNR or SSIM, and when the data
    leaves [0, 1] (a standard-scaled table) no BCE either; MSE on the raw output, and
    ``feature_mse``, the MSE of each feature (what the per-feature error plot shows).
    ``clean_key``: the clean images' fingerprint, under which their SSIM moments are kept.
    """
    if sample_shape is not None and len(sample_shape) == 1:
        err = (clean - out.to(clean.dtype)).double().square()
        q = {"mse": float(err.mean(dim=1).mean()), "feature_mse": [float(v) for v in err.mean(dim=0)]}
        if float(clean.min()) >= 0.0 and float(clean.max()) <= 1.0:
            q = {"bce": bce(clean, out), **q}
        return q, out
    clipped = out.clamp(0.0, 1.0)
    m = mse_per_image(clean, clipped).double()
    q = {
        "bce": bce(clean, out),
        "mse": float(m.mean()),
        "psnr": float((10.0 * torch.log10(1.0 / m.clamp_min(MSE_FLOOR))).mean()),
    }
    s = _ssim_shaped(clean, clipped, sample_shape, clean_key)
    if s is not None:
        q["ssim"] = s
    return q, clipped


def _ssim_shaped(x: torch.Tensor, y: torch.Tensor, sample_shape: tuple | None,
                 x_key: str | None = None) -> float | None:
    """Mean SSIM of flat images of ``sample_shape`` (each channel on its own, then averaged), or None
    where SSIM has no meaning (smaller than its 11×11 window, not an image). ``x_key``: the
    fingerprint of ``x``, under which its SSIM moments are kept (:func:`_data_memo`)."""
    n = x.shape[0]
    if sample_shape is None:  # a run from before shapes were recorded: a flat square image
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1] or side < SSIM_WIN:
            return None
        c, h, w = 1, side, side
    else:
        c, h, w = sample_shape
        if h < SSIM_WIN or w < SSIM_WIN:
            return None
    a, b = _as_images(x.reshape(n * c, h, w), "x"), _as_images(y.reshape(n * c, h, w), "y")
    moments = _data_memo(None if x_key is None else ("ssim moments", x_key, c, h, w), lambda: _ssim_moments(a))
    per = _ssim_images(a, b, 1.0, moments)
    if sample_shape is None:
        return float(per.mean())
    return float(per.reshape(n, c).mean(dim=1).mean())


def evaluate(
    encode: Callable[[torch.Tensor], torch.Tensor],
    decode: Callable[[torch.Tensor], torch.Tensor],
    x_test: torch.Tensor,
    *,
    x_test_noisy: torch.Tensor | None = None,
    batch_size: int = 2000,
    sample_shape: tuple | None = None,
    labels: torch.Tensor | None = None,
) -> dict:
    """Evaluate an autoencoder on a test set; returns the ``metrics.json`` dict.

    Args:
        encode: maps a ``(B, 784)`` batch to codes ``(B, k)``.
        decode: maps codes ``(B, k)`` to reconstructions ``(B, 784)``: probabilities in
            ``[0, 1]`` or, for a relu output layer, possibly above 1.
        x_test: ``(N, 784)`` clean test images in ``[0, 1]`` (after the run's scaling).
        x_test_noisy: optional ``(N, 784)`` noisy version of ``x_test``; adds the ``"noisy"``
            block.
        batch_size: images per encode/decode call.
        sample_shape: what one flat row is, (C, H, W) or (D,) (see :func:`_quality`); None: a
            flat square grayscale image (``(N, 784)`` → 28×28), as before.
        labels: ``(N,)`` class labels of ``x_test`` for a conditional model: ``encode(x, labels)``
            and ``decode(h, labels)`` get each chunk's labels as their second argument (the noisy
            images too). None: both are called with the images or codes alone, as before.

    Output handling: BCE is computed from the raw reconstruction (BCE clips it to
    ``[1e-7, 1 - 1e-7]``, as Keras does); MSE, PSNR and SSIM compare the clean image with the
    reconstruction clipped to ``[0, 1]`` — a pixel can't be brighter than white, and the
    ``[0, 1]`` data range is what PSNR/SSIM assume. The noisy input in ``input_psnr`` /
    ``input_ssim`` is clipped the same way (a no-op for the usual clipped noise).

    Aggregation: ``bce``, ``mse``, ``psnr`` and ``ssim`` are means of per-image values over
    the test set; ``diversity`` uses the first 1000 images; ``code`` is :func:`code_stats` of
    the codes of the clean test set (the noisy block has no code statistics).

    Returns:
        ``{"n_test", "bce", "mse", "psnr", "ssim", "code": {...}, "diversity"}`` plus
        ``"noisy": {"bce", "mse", "psnr", "ssim", "diversity", "input_psnr", "input_ssim"}``
        when ``x_test_noisy`` is given; plain Python ints and floats (JSON-serialisable).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with torch.inference_mode():
        x = _flat(x_test, "x_test").float()
        if x.shape[0] < 2:
            raise ValueError(f"evaluate needs at least 2 test images, got {x.shape[0]}")
        xn = None
        if x_test_noisy is not None:
            xn = _flat(x_test_noisy, "x_test_noisy").float()
            if xn.shape != x.shape:
                raise ValueError(f"x_test_noisy has shape {tuple(xn.shape)}, expected {tuple(x.shape)}")
        if labels is not None and len(labels) != x.shape[0]:
            raise ValueError(f"{len(labels)} labels for {x.shape[0]} test images")
        codes, recon = _reconstruct(encode, decode, x, batch_size, keep_codes=True, labels=labels)
        fx = _cpu_fingerprint(x)  # what depends on the test images alone is kept under it
        result: dict = {"n_test": int(x.shape[0])}
        quality, recon_c = _quality(x, recon, sample_shape, fx)
        result.update(quality)
        result["code"] = code_stats(codes)
        x_spread = _data_memo(None if fx is None else ("spread", fx, DIVERSITY_N),
                              lambda: _mean_offdiag_distance(x[:DIVERSITY_N]))
        result["diversity"] = _diversity(x, recon_c, DIVERSITY_N, x_spread)
        if xn is not None:
            _, recon_n = _reconstruct(encode, decode, xn, batch_size, keep_codes=False, labels=labels)
            noisy, recon_nc = _quality(x, recon_n, sample_shape, fx)
            noisy.pop("feature_mse", None)
            noisy["diversity"] = _diversity(x, recon_nc, DIVERSITY_N, x_spread)
            fxn = _cpu_fingerprint(xn) if fx is not None else None
            noisy.update(_data_memo(None if fxn is None else ("noisy input", fx, fxn, sample_shape),
                                    lambda: _input_quality(x, xn, sample_shape, fx)))
            result["noisy"] = noisy
    return result


def _input_quality(x: torch.Tensor, xn: torch.Tensor, sample_shape: tuple | None, x_key: str | None) -> dict:
    """``input_psnr`` and (for images) ``input_ssim``: the noisy inputs against the clean images,
    the noisy ones clipped to [0, 1] as reconstructions are. Numbers of the data alone."""
    xn_c = xn.clamp(0.0, 1.0)
    out = {"input_psnr": psnr(x, xn_c)}
    s_in = _ssim_shaped(x, xn_c, sample_shape, x_key) if sample_shape is None or len(sample_shape) == 3 else None
    if s_in is not None:
        out["input_ssim"] = s_in
    return out


METRIC_DOCS: dict[str, str] = {
    "bce": (
        "Binary cross-entropy between each clean test image and its reconstruction, averaged over "
        "pixels and images, exactly as Keras computes its binary_crossentropy loss: predictions are "
        "clipped to [1e-7, 1 - 1e-7] and the per-pixel loss is -(y log p + (1 - y) log(1 - p)). "
        "Lower is better; it never reaches 0 for grey target pixels, so compare it between runs, "
        "not with zero."
    ),
    "mse": (
        "Mean squared error between the clean test image and its reconstruction (clipped to [0, 1]), "
        "averaged over all pixels of all test images. 0 is a perfect copy; predicting an all-black "
        "image for MNIST gives about 0.11."
    ),
    "psnr": (
        "Peak signal-to-noise ratio in decibels, 10 log10(1 / MSE) for images in [0, 1], computed per "
        "image and averaged over the test set. Higher is better; each +10 dB is a tenfold smaller "
        "squared error, and about 20 dB or more looks like a clean, recognisable digit."
    ),
    "ssim": (
        "Structural similarity (Wang et al. 2004) between the clean image and its reconstruction "
        "(clipped to [0, 1]): it compares local brightness, contrast and structure in 11x11 Gaussian "
        "windows (sigma 1.5) and averages over the image interior, matching scikit-image. It is 1 for "
        "identical images and near 0 for unrelated ones; it rewards sharp strokes that MSE can "
        "miss, so a blurry reconstruction scores lower on SSIM than its MSE suggests."
    ),
    "dead_units": (
        "Number of code units whose value never changes across the test set (max - min at most 1e-6): "
        "a relu that never fires or a sigmoid stuck at 0 or 1. A dead unit carries no information to "
        "the decoder, so the effective code size is units - dead_units; dead_fraction is the share of "
        "dead units."
    ),
    "mean_activation": (
        "Mean value of the code over all units and test images. It shows the scale of the code: an "
        "activity (L1) penalty pushes it down, and a value near 0 together with many dead units signals "
        "a collapsed code."
    ),
    "zero_fraction": (
        "Fraction of code entries that are exactly zero over the test set. For relu codes it measures "
        "sparsity: 0.9 means a typical image switches on only a tenth of the units; a sigmoid or linear "
        "code is almost never exactly zero."
    ),
    "diversity": (
        "Mean pairwise Euclidean distance between the reconstructions of the first 1000 test images "
        "divided by the mean pairwise distance between the images themselves. Near 0 means the model "
        "outputs the same smudge for every digit (collapse); near 1 means the reconstructions vary as "
        "much as the digits do (exactly 1 for a perfect copy)."
    ),
    "noisy": (
        "Denoising metrics, present only when the run adds noise: the noisy test images are "
        "reconstructed and compared with the clean originals (bce, mse, psnr, ssim, diversity as above). "
        "input_psnr and input_ssim compare the noisy input itself with the clean image, so the gain of "
        "denoising is psnr - input_psnr (and ssim - input_ssim)."
    ),
    "samples": (
        "Sample quality of a generative model (a VAE-like family), present when the data has labels: up to 2,000 "
        "decodings of z ~ N(0, I) against as many test images, on the 64 features of a small classifier aelab "
        "trains itself on the data set (an MLP, fixed seed, kept in aelab's cache; aelab.quality), not on "
        "Inception's: the numbers compare runs within aelab only, and are not FID values. frechet: the Fréchet "
        "distance between Gaussians fitted to the two feature sets (0 for identical statistics; lower is "
        "better). precision: the share of samples inside the test images' feature manifold (k = 3 nearest "
        "neighbours, Kynkäänniemi et al. 2019): are samples realistic. recall: the share of test images inside "
        "the samples' manifold: do samples cover the data's variety. confidence: the classifier's mean top-class "
        "probability on the samples, to read against real_confidence, the same on test images."
    ),
}
