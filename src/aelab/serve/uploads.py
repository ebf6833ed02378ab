"""Uploads: a learner's own data from the Train page — a CSV table or a zip of images.

An upload is read by the same checked readers as ``aelab train --dataset PATH``
(:func:`aelab.data.load`: :mod:`aelab.data.table` for a ``.csv``, :mod:`aelab.data.folder` for a
folder of images, flat or one sub-folder per class), so the page and the CLI accept and refuse the
same files with the same one-line messages. Nothing is written on failure: the upload is unpacked
and read in a temporary folder inside ``<workspace>/uploads`` (hidden, ``.tmp-…``), and only once
it reads cleanly is that folder renamed to ``uploads/<name>`` (one rename on one file system:
atomic; a name already taken is refused, never overwritten).

What a server refuses before any reader sees the bytes:

* a request larger than ``max_bytes`` (``aelab serve --max-upload-mb``, default 50 MB): by its
  ``Content-Length`` at once, and by counting what arrives when it has none (or lies);
* in a zip: an absolute member name, a ``..`` step, a backslash or a drive letter (path traversal),
  a symbolic link, more than ``MAX_MEMBERS`` members, or more than ``max_unpacked`` bytes unpacked
  — counted from what is actually inflated, not from the sizes the archive declares (a
  decompression bomb lies about them); an encrypted member; a damaged archive (CRC, truncation).

A truncated or corrupt image, a CSV with a text cell or ragged rows: the reader's one line, shown
beside the upload field. The hidden ``.upload.json`` beside the data records what was uploaded
(file name, kind, samples, shape); the folder reader and the content hash skip hidden files.

A study of one's own (:class:`StudyUploads`, the Studies page): a study TOML as ``aelab study FILE``
takes, read by the CLI's own reader and checked whole — its runs, its protocols and every claim's
kind and parameters, with and without its quick settings — before it is kept as
``<workspace>/studies/<name>.toml`` (written hidden, then linked into place: never over another
file). A shipped study's name is refused (the two would share an output folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

from .. import catalog
from ..errors import AelabError

MB = 1 << 20
#: the largest request body an upload may have (``aelab serve --max-upload-mb``)
DEFAULT_MAX_BYTES = 50 * MB
#: a zip's members at most (files and folders)
MAX_MEMBERS = 20_000
#: what a zip may unpack to, as a multiple of the upload limit (a bomb inflates far beyond this)
UNPACK_FACTOR = 4
#: the file a CSV upload is kept as, inside ``uploads/<name>/``
CSV_NAME = "data.csv"
META = ".upload.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]{0,63}$")


class UploadRefused(AelabError):
    """An upload that is not kept: one line saying what is wrong and how to fix it.
    ``status``: the HTTP status it is answered with (413 for too large, else 400)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """A kept upload: ``name`` (its folder under ``uploads/``), ``dataset`` (the absolute path a
    run config names: the CSV file or the image folder), ``kind`` ("table" or "images") and a
    one-line ``summary`` for the form (samples, shape, classes)."""

    name: str
    dataset: str
    kind: str
    summary: str
    label_column: Optional[str] = None  #: a CSV's column of labels, named at upload

    @property
    def choice(self) -> str:
        """The value the form's data select carries: never a path (see :meth:`Uploads.upload`)."""
        return "upload:" + self.name

    @property
    def settings(self) -> dict[str, str]:
        """The data settings a run config takes for this upload (its path, and its label column)."""
        return {"data.dataset": self.dataset, **({"data.label_column": self.label_column} if self.label_column else {})}


class Uploads:
    """The uploads of one workspace, kept in ``root`` (default ``<workspace>/uploads``)."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_unpacked: Optional[int] = None, max_members: int = MAX_MEMBERS) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.max_unpacked = int(max_unpacked if max_unpacked is not None else UNPACK_FACTOR * self.max_bytes)
        self.max_members = int(max_members)

    # -- what is kept ------------------------------------------------------------------------------
    def list(self) -> list[Upload]:
        """Every kept upload, by name (a folder without a readable ``.upload.json`` is not one)."""
        out = []
        try:
            dirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return []
        for d in dirs:
            got = self.get(d.name)
            if got is not None:
                out.append(got)
        return out

    def get(self, name: str) -> Optional[Upload]:
        if not _NAME.match(name):
            return None
        d = self.root / name
        try:
            meta = json.loads((d / META).read_text(encoding="utf-8"))
            kind, summary = str(meta["kind"]), str(meta["summary"])
            label = meta.get("label_column")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if d.is_symlink():
            return None
        path = d / CSV_NAME if kind == "table" else d
        return Upload(name, str(path.resolve()), kind, summary, str(label) if label else None)

    def upload(self, choice: str) -> Upload:
        """The kept upload for the form's ``upload:<name>`` value; an unknown one is refused (the form
        never carries a path: a request cannot make the server read a file of its choice)."""
        up = self.get(choice.removeprefix("upload:"))
        if up is None:
            have = ", ".join(u.name for u in self.list()) or "none yet"
            raise UploadRefused(f"no upload named {choice.removeprefix('upload:')!r} in this workspace (uploads: {have}); "
                                "upload it on the Train page first")
        return up

    # -- taking one in -----------------------------------------------------------------------------
    def check_size(self, declared: Optional[str]) -> None:
        """Refuse a request whose ``Content-Length`` is over the limit before reading it."""
        if declared is None:
            return
        try:
            n = int(declared)
        except ValueError:
            raise UploadRefused("the request's Content-Length is not a number; send the file again") from None
        if n > self.max_bytes:
            raise UploadRefused(self._too_large(n), 413)

    def _too_large(self, n: Optional[int] = None) -> str:
        size = f"is {n / MB:.1f} MB" if n is not None else "is larger than that"
        return (f"the upload {size}; the limit is {self.max_bytes / MB:g} MB (start the server with "
                "aelab serve --max-upload-mb N for more, or upload fewer images)")

    async def read_body(self, request) -> bytes:
        """The request body, refused (413) as soon as it passes ``max_bytes``."""
        self.check_size(request.headers.get("content-length"))
        chunks, n = [], 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > self.max_bytes + 64 * 1024:  # the multipart framing around the file is small
                raise UploadRefused(self._too_large(), 413)
            chunks.append(chunk)
        return b"".join(chunks)

    def add(self, filename: str, data: bytes, name: str = "", label_column: str = "") -> Upload:
        """Check and keep one uploaded file (``.csv`` or ``.zip``) as ``uploads/<name>``.

        ``name``: the upload's name (default: the file's stem); ``label_column``: a CSV's column of
        labels (numbers or class names; then not a feature), as ``aelab train --label-column``.
        Raises :class:`UploadRefused` (one line) and leaves nothing behind when the file is refused."""
        from ..data import DataConfig, DataOptions, load  # deferred: NumPy and the readers

        suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
        if suffix not in (".csv", ".zip"):
            raise UploadRefused(f"{filename or 'the file'}: upload a .csv table (one sample per row, a header row) or "
                                "a .zip of images (PNG/JPEG, optionally one folder per class)")
        if len(data) > self.max_bytes:
            raise UploadRefused(self._too_large(len(data)), 413)
        if not data:
            raise UploadRefused(f"{filename}: the file is empty; choose the file again")
        label_column = (label_column or "").strip()
        if label_column and suffix != ".csv":
            raise UploadRefused(f"{filename}: a label column applies to a .csv table; a zip's labels are its folders "
                                "(one folder per class): leave the label column empty")
        name = (name or "").strip() or _stem_name(filename)
        if not _NAME.match(name):
            raise UploadRefused(f"upload name {name!r}: use letters, digits and - _ . = + only, at most 64, "
                                "starting with a letter or digit (it names a folder)")
        if (self.root / name).exists() or (self.root / name).is_symlink():
            raise UploadRefused(f"an upload named {name!r} exists already; choose another name (or use that one "
                                "from the data list)")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            staged = tmp / "data"
            staged.mkdir()
            if suffix == ".csv":
                path = staged / CSV_NAME
                path.write_bytes(data)
                kind = "table"
            else:
                self._unzip(data, staged, filename)
                _unwrap(staged)
                path, kind = staged, "images"
            try:
                ds = load(DataConfig(dataset=str(path), label_column=label_column or None), DataOptions(progress=False))
            except AelabError as exc:  # the CLI's line, with the page's words for the flag
                raise UploadRefused(_shown(str(exc), tmp, filename).replace(
                    "with --label-column", "in the Label column field")) from None
            summary = _summary(ds, kind)
            meta = {"file": filename, "kind": kind, "summary": summary,
                    **({"label_column": label_column} if label_column else {})}
            (staged / META).write_text(json.dumps(meta), encoding="utf-8")
            try:
                os.rename(staged, self.root / name)  # atomic: the upload appears whole, or not at all
            except OSError:
                raise UploadRefused(f"an upload named {name!r} exists already; choose another name") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        got = self.get(name)
        assert got is not None
        return got

    def _unzip(self, data: bytes, dest: Path, filename: str) -> None:
        """Unpack a zip into ``dest``, refusing unsafe names, links, too many members and bombs."""
        import io  # deferred: standard library, only for a zip

        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, zlib.error, ValueError, EOFError) as exc:
            raise UploadRefused(f"{filename}: not a readable zip archive ({_one_line(exc)}); zip the folder again") from None
        with zf:
            members = zf.infolist()
            if len(members) > self.max_members:
                raise UploadRefused(f"{filename}: holds {len(members):,} entries; at most {self.max_members:,} are "
                                    "accepted (upload fewer images)")
            total = 0
            for m in members:
                parts = _safe_parts(m.filename, filename)
                if parts is None:
                    continue  # a folder entry or macOS's __MACOSX/ metadata
                mode = m.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UploadRefused(f"{filename}: {m.filename} is a symbolic link; zip the images themselves, "
                                        "not links to them")
                if m.flag_bits & 0x1:
                    raise UploadRefused(f"{filename}: {m.filename} is encrypted; zip it without a password")
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(m) as src, open(target, "xb") as out:
                        while True:
                            chunk = src.read(1 << 20)
                            if not chunk:
                                break
                            total += len(chunk)  # what is inflated, whatever the header declares
                            if total > self.max_unpacked:
                                raise UploadRefused(f"{filename}: unpacks to more than {self.max_unpacked / MB:g} MB "
                                                    "(a decompression bomb, or too many images); upload fewer or "
                                                    "smaller images")
                            out.write(chunk)
                except FileExistsError:
                    raise UploadRefused(f"{filename}: {m.filename} is in the archive twice; zip the folder "
                                        "again") from None
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                    raise UploadRefused(f"{filename}: {m.filename} is damaged ({_one_line(exc)}); zip the folder "
                                        "again") from None


def _safe_parts(member: str, filename: str) -> Optional[tuple[str, ...]]:
    """A member's path parts, or None for a folder entry or metadata to skip; an unsafe name is refused."""
    if "\\" in member or member.startswith("/") or re.match(r"^[A-Za-z]:", member) or "\0" in member:
        raise UploadRefused(f"{filename}: member {member!r} has an absolute or Windows path; zip the folder with "
                            "relative names")
    parts = tuple(p for p in member.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UploadRefused(f"{filename}: member {member!r} leads out of the archive (..); zip the folder again")
    if member.endswith("/") or not parts:
        return None
    if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
        return None  # Finder's resource forks, .DS_Store: not images, and the readers skip hidden files anyway
    return parts


def _unwrap(staged: Path) -> None:
    """A zip of one folder (``digits/0/a.png``…) is read as that folder's content."""
    while True:
        entries = [p for p in staged.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            return
        inner = entries[0]
        subs = [p for p in inner.iterdir() if not p.name.startswith(".")]
        if not subs or not any(p.is_dir() for p in subs):
            return  # one folder of images: a single class; keep it (one class is no label worth having)
        for p in subs:
            os.rename(p, staged / p.name)
        shutil.rmtree(inner)


def _summary(ds, kind: str) -> str:
    n = len(ds.x_train) + len(ds.x_test)
    shape = "×".join(str(s) for s in ds.x_train.shape[1:])
    what = f"{n:,} rows × {ds.x_train.shape[1]} columns" if kind == "table" else f"{n:,} images of {shape}"
    if ds.classes:
        what += f", {len(ds.classes)} classes"
    elif ds.y_train is not None:
        what += ", labelled"
    return what


def _shown(msg: str, tmp: Path, filename: str) -> str:
    """A reader's line with the temporary folder's path replaced by the uploaded file's name."""
    for root in (str(tmp / "data"), str(tmp.resolve() / "data")):
        msg = msg.replace(root + os.sep + CSV_NAME, filename).replace(root + os.sep, filename + ": ").replace(
            root, filename)
    return msg.replace(filename + ": : ", filename + ": ")


def _stem_name(filename: str) -> str:
    stem = PurePosixPath(filename.replace("\\", "/")).stem
    cleaned = re.sub(r"[^A-Za-z0-9_.=+-]+", "-", stem).strip("-.")[:64]
    return cleaned or "upload"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


#: the largest study file the Studies page takes (a study is a few kB of TOML)
MAX_STUDY_BYTES = 256 * 1024


class StudyUploads:
    """The studies uploaded to one workspace, kept as ``root/<name>.toml`` (default ``<workspace>/studies``).
    The Studies page names one ``upload:<name>``, never by a path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def list(self) -> list[str]:
        """The names of the kept studies (regular files ``<name>.toml``; a link is not one)."""
        try:
            files = sorted(self.root.iterdir())
        except OSError:
            return []
        return [f.stem for f in files
                if f.suffix == ".toml" and _NAME.match(f.stem) and f.is_file() and not f.is_symlink()]

    def path(self, choice: str) -> Path:
        """The kept file for ``upload:<name>``; an unknown name is one line."""
        name = choice.removeprefix("upload:")
        if name not in self.list():
            have = ", ".join(self.list()) or "none yet"
            raise UploadRefused(f"no uploaded study named {name!r} in this workspace (uploaded: {have}); "
                                "upload its TOML file first")
        return self.root / f"{name}.toml"

    def add(self, filename: str, data: bytes) -> str:
        """Check and keep one study TOML; return its name. Raises :class:`UploadRefused` (one line)
        and leaves nothing behind when it is refused; the same file uploaded again is kept once."""
        from ..config import load_toml  # deferred: pydantic and the config models
        from ..study.spec import study_from_dict  # deferred: as above

        shown = PurePosixPath(filename.replace("\\", "/")).name or "the file"
        if PurePosixPath(shown).suffix.lower() != ".toml":
            raise UploadRefused(f"{shown}: upload a study file (.toml), as aelab study FILE.toml takes it")
        if len(data) > MAX_STUDY_BYTES:
            raise UploadRefused(f"{shown} is {len(data) / 1024:.0f} kB; a study file is at most "
                                f"{MAX_STUDY_BYTES // 1024} kB (a study holds settings, not data)", 413)
        if not data.strip():
            raise UploadRefused(f"{shown}: the file is empty; choose the study file again")
        name = _stem_name(shown)
        if not _NAME.match(name):
            raise UploadRefused(f"study name {name!r}: name the file with letters, digits and - _ . = + only")
        if name in catalog.studies():
            raise UploadRefused(f"{shown}: {name!r} is a shipped study's name and would share its output folder; "
                                "rename the file")
        final = self.root / f"{name}.toml"
        if final.is_symlink() or (final.exists() and not final.is_file()):
            raise UploadRefused(f"{final.name} in the studies folder is not a study file; rename yours")
        if final.is_file():
            if final.read_bytes() == data:
                return name  # the same study again: nothing to do
            raise UploadRefused(f"a different study named {name!r} was uploaded already; rename your file")
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".toml", dir=self.root)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                raw = load_toml(tmp, "study file")
                for quick in (False, True):  # both ways the page may launch it: every claim checked now
                    study_from_dict(raw, name=name, quick=quick, source=shown)
            except AelabError as exc:
                raise UploadRefused(str(exc).replace(str(tmp), shown)) from None
            try:
                os.link(tmp, final)  # atomic, and never over a file that appeared meanwhile
            except FileExistsError:
                raise UploadRefused(f"a study named {name!r} was uploaded meanwhile; rename your file") from None
        finally:
            tmp.unlink(missing_ok=True)
        return name

