"""A path data set's fingerprint: the SHA-256 of its content, part of the config hash and cache keys.

Another folder, or the same folder with one image changed, is another data set. A registered name
has no fingerprint (None): its files are pinned by their own hashes. The content is hashed once per
(path, every file's relative name, size and modification time): a repeated call stats the files but
reads none. A run computes it once and carries it (``config_hash(cfg, fingerprint=...)``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_MEMO: dict = {}


def content_sha256(path: str) -> str:
    """SHA-256 over a file's or folder's content (each file's relative name and bytes, in sorted
    order); ``missing:<path>`` or ``unreadable:<path>`` when it cannot be listed."""
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            files = sorted(_walk(p))
            listing = tuple((str(f.relative_to(p)), *_stat(f)) for f in files)
        elif p.is_file():
            files = [p]
            listing = ((p.name, *_stat(p)),)
        else:
            return f"missing:{path}"
    except OSError:
        return f"unreadable:{path}"
    key = (str(p.resolve()), listing)
    if key not in _MEMO:
        h = hashlib.sha256()
        for f, (rel, *_rest) in zip(files, listing):
            h.update(rel.encode("utf-8") + b"\0")
            try:
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:
                h.update(b"<unreadable>")
            h.update(b"\0")
        if len(_MEMO) > 64:  # a long-lived process that saw many data sets: keep the memo small
            _MEMO.clear()
        _MEMO[key] = h.hexdigest()
    return _MEMO[key]


def _stat(f: Path) -> tuple[int, int]:
    st = f.stat()
    return st.st_size, st.st_mtime_ns


def _walk(root: Path):
    """Regular files under ``root``, hidden ones (``.DS_Store``, ``.git``) skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if not fn.startswith("."):
                yield Path(dirpath) / fn


