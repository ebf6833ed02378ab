"""Where aelab keeps what it can rebuild: ``$XDG_CACHE_HOME/aelab``, else ``~/.cache/aelab``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """aelab's cache directory (MNIST under ``mnist/``, the compiled C kernels under ``kernels/``)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "aelab"
