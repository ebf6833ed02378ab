"""Disentanglement metrics on codes and known factors of variation (pure: arrays in, numbers out).

:func:`mig` is the mutual information gap of Chen et al. (2018), "Isolating Sources of Disentanglement
in VAEs", computed as disentanglement_lib computes it: each code dimension is discretised into
``bins`` equal-width bins over its range, each factor is taken as it is when it has at most
``bins`` distinct values (else binned the same way), and for each factor v_k

    MIG_k = (I(z_j*; v_k) − I(z_j°; v_k)) / H(v_k),

j* the code dimension sharing the most information with v_k and j° the second: 1 when exactly one
dimension holds the factor (and holds all of it), 0 when two hold it equally or none does. MIG is
the mean over the factors; a factor that never varies (H = 0) is left out. The information is in
nats, from the empirical joint distribution (a plug-in estimate: it is biased upwards for few
samples per bin, so compare MIG at the same number of samples).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

#: bins per code dimension (disentanglement_lib's default)
DEFAULT_BINS = 20


def discretize(v: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Integer labels of ``v`` (N,): its distinct values when there are at most ``bins`` of them, else
    ``bins`` equal-width bins over its range."""
    v = np.asarray(v)
    uniq = np.unique(v)
    if len(uniq) <= bins:
        return np.searchsorted(uniq, v)
    edges = np.histogram_bin_edges(v.astype(np.float64), bins=bins)
    return np.clip(np.digitize(v, edges[1:-1]), 0, bins - 1)


def entropy(a: np.ndarray) -> float:
    """H(a) in nats of integer labels ``a`` (N,), from their frequencies."""
    _, counts = np.unique(np.asarray(a), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two integer label arrays (N,), from their joint frequencies."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"mutual_information takes two (N,) arrays, got {a.shape} and {b.shape}")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = DEFAULT_BINS,
        names: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The mutual information gap of ``codes`` (N, L) against ``factors`` (N, F).

    Returns ``{"mig": mean over varying factors, "per_factor": {name: MIG_k}, "top_dims": {name: j*},
    "mi": L × F matrix (nats, as lists), "entropy": {name: H(v_k)}, "bins", "n"}``. ``names``: the
    factors' names (default ``factor_0`` …).
    """
    z, v = np.asarray(codes), np.asarray(factors)
    if z.ndim == 1:
        z = z[:, None]
    if v.ndim == 1:
        v = v[:, None]
    if z.ndim != 2 or v.ndim != 2 or z.shape[0] != v.shape[0] or z.shape[0] < 2:
        raise ValueError(f"mig needs codes (N, L) and factors (N, F) with the same N >= 2, got {z.shape} and {v.shape}")
    if z.shape[1] < 1:
        raise ValueError("mig needs at least one code dimension")
    names = list(names) if names is not None else [f"factor_{k}" for k in range(v.shape[1])]
    if len(names) != v.shape[1]:
        raise ValueError(f"{len(names)} names for {v.shape[1]} factors")
    zd = [discretize(z[:, j], bins) for j in range(z.shape[1])]
    mi = np.zeros((z.shape[1], v.shape[1]))
    per, top, ent = {}, {}, {}
    for k in range(v.shape[1]):
        vk = discretize(v[:, k], bins)
        h = entropy(vk)
        ent[names[k]] = h
        for j in range(z.shape[1]):
            mi[j, k] = mutual_information(zd[j], vk)
        if h <= 0:
            continue
        order = np.argsort(-mi[:, k], kind="stable")
        second = mi[order[1], k] if len(order) > 1 else 0.0
        per[names[k]] = float((mi[order[0], k] - second) / h)
        top[names[k]] = int(order[0])
    return {"mig": float(np.mean(list(per.values()))) if per else float("nan"), "per_factor": per, "top_dims": top,
            "mi": mi.tolist(), "entropy": ent, "bins": int(bins), "n": int(z.shape[0])}


__all__ = ["DEFAULT_BINS", "discretize", "entropy", "mig", "mutual_information"]
