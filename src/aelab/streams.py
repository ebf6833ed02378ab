"""Reproducible random streams: every random draw of a run derives from (run seed, stream, epoch).

A stream is a small integer naming what the numbers are for (initial weights, the epoch's
shuffle, a denoising autoencoder's noise, a VAE's ε, evaluation, binarised data's samples). :func:`derived_seed` turns
``(seed, stream, epoch[, batch])`` into an independent 63-bit seed through
``numpy.random.SeedSequence``, so streams share no state: a run resumed mid-epoch replays exactly
the draws an uninterrupted one made, and drawing more in one stream never shifts another. Below
the data layer and the engine, which both draw from it (the data layer its noise, the engine the
rest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

STREAM_INIT, STREAM_SHUFFLE, STREAM_NOISE, STREAM_SAMPLE, STREAM_EVAL = 0, 1, 2, 3, 4
#: the Bernoulli samples of binarised data (``data.binarize``)
STREAM_BINARIZE = 5


def derived_seed(seed: int, stream: int, epoch: int = 0, batch: int | None = None) -> int:
    """A 63-bit seed for (run seed, stream, epoch[, batch]); independent streams, no shared state.

    ``batch`` is for the per-step streams (a VAE's ε): a resumed run draws exactly what an
    uninterrupted one drew at that step, whatever happened before."""
    key = [int(seed) & 0xFFFFFFFF, stream, epoch] + ([batch] if batch is not None else [])
    ss = np.random.SeedSequence(key)
    return int(ss.generate_state(2, dtype=np.uint32).astype(np.uint64).dot([1, 1 << 31])) & ((1 << 63) - 1)


def generator(seed: int, stream: int, epoch: int = 0, batch: int | None = None) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derived_seed` (draws are device-independent)."""
    import torch  # deferred: torch is heavy, and `aelab data info` and --help import this module without it

    g = torch.Generator(device="cpu")
    g.manual_seed(derived_seed(seed, stream, epoch, batch))
    return g


__all__ = ["STREAM_BINARIZE", "STREAM_EVAL", "STREAM_INIT", "STREAM_NOISE", "STREAM_SAMPLE", "STREAM_SHUFFLE", "derived_seed", "generator"]
