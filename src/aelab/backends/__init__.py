"""Backends: where the groups of a study or sweep train.

A unit of work is one *group*: runs of the same shape trained side by side in one stepper
(``runs._train_group``). ``runs.train_runs`` validates, owns the run directories, groups and
balances the runs; a backend only decides where each group trains and brings its progress, its
interruptions and its failures back:

* ``local`` (default) — this machine: one group after another in this process, or groups in
  parallel worker processes (``local.py``). Needs nothing beyond aelab.
* ``ray`` — the tasks of a Ray cluster, or of a Ray instance started on this machine
  (``ray.py``; ``pip install 'aelab[ray]'``). Same unit of work, same thread count per group,
  so the same bits.

``schedule.py`` holds what both share: how many groups run at once, and how groups are split so
that the workers finish together. Importing this package imports neither Ray nor the workers.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from ..errors import AelabError

#: the names ``--backend`` takes
BACKENDS = ("local", "ray")


@contextlib.contextmanager
def open_backend(backend="local", *, address: Optional[str] = None,
                 shared_fs: Optional[bool] = None) -> Iterator[object]:
    """The backend named ``backend`` ("local" or "ray"), opened for the block, closed after it.

    An already opened backend object passes through untouched (it belongs to whoever opened it).
    ``address`` (Ray only): ``auto``, ``host:port`` or ``ray://host:port``; without one, Ray
    starts an instance on this machine for the block. ``shared_fs`` (Ray only): whether the
    workers see this machine's run directories at the same paths; ``None`` — only when the Ray
    instance is this machine's own.
    """
    if not isinstance(backend, str):
        yield backend
        return
    if backend == "local":
        if address is not None:
            raise AelabError("--address names a Ray cluster, and the local backend uses none; add --backend ray "
                             "or drop --address")
        from .local import LocalBackend

        yield LocalBackend()
        return
    if backend == "ray":
        from .ray import RayBackend

        be = RayBackend(address=address, shared_fs=shared_fs)
        try:
            yield be
        finally:
            be.close()
        return
    raise AelabError(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
