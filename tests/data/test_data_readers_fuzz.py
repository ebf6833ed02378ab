"""Fuzzing the table and image readers, as the IDX reader is fuzzed: whatever bytes a .csv, .npy,
.npz or image file holds, reading it either gives a Dataset or raises one DataError/ConfigError
line — never another exception, never a traceback for the CLI to print."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aelab.config import DataConfig
from aelab.data import load
from aelab.errors import AelabError

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _read(path, **kw):
    try:
        ds = load(DataConfig(dataset=str(path), **kw))
    except AelabError as err:
        assert "\n" not in str(err) and str(err)
        return None
    assert len(ds.x_train) >= 1 and len(ds.x_test) >= 1
    assert ds.x_train.shape[1:] == ds.x_test.shape[1:]
    assert np.isfinite(ds.x_train.astype(np.float64)).all()
    return ds


CSV_CELLS = st.sampled_from(["1", "0.5", "-3e2", "", "nan", "inf", "x", "1,2", '"4"', " 7 ", "\u00e9", "0x10"])


@FUZZ
@given(st.lists(st.lists(CSV_CELLS, min_size=1, max_size=4), min_size=0, max_size=8),
       st.sampled_from([None, "a", "b", "zz"]))
def test_csv_reader_never_crashes_on_odd_tables(tmp_path_factory, rows, label):
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    header = "a,b,c,d"[: 2 * max(1, len(rows[0]) if rows else 1) - 1]
    path.write_text("\n".join([header] + [",".join(r) for r in rows]) + "\n", encoding="utf-8")
    _read(path, label_column=label)


@FUZZ
@given(st.binary(max_size=300))
def test_csv_reader_never_crashes_on_random_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("csvb") / "t.csv"
    path.write_bytes(blob)
    _read(path)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@FUZZ
@given(st.data())
def test_npz_and_npy_readers_never_crash_on_damaged_files(tmp_path_factory, data):
    rng = np.random.default_rng(0)
    good = _npz_bytes(x=rng.uniform(0, 1, (10, 3)).astype(np.float32), y=np.arange(10) % 2)
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(0, 6))):  # flip, cut or extend a few bytes
        op = data.draw(st.sampled_from(["flip", "cut", "add"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut" and raw:
            del raw[data.draw(st.integers(0, len(raw) - 1)):]
        else:
            raw += data.draw(st.binary(min_size=1, max_size=20))
    d = tmp_path_factory.mktemp("npz")
    (d / "t.npz").write_bytes(bytes(raw))
    (d / "t.npy").write_bytes(bytes(raw))
    _read(d / "t.npz")
    _read(d / "t.npy")


@FUZZ
@given(st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_, "U3", np.complex64]),
       st.lists(st.integers(0, 4), min_size=0, max_size=5), st.booleans())
def test_npz_reader_takes_or_refuses_any_array_it_is_given(tmp_path_factory, dtype, shape, with_nan):
    x = np.zeros(shape, dtype=dtype) if shape else np.zeros((), dtype=dtype)
    if with_nan and np.issubdtype(x.dtype, np.floating) and x.size:
        x.flat[0] = np.nan
    path = tmp_path_factory.mktemp("npzs") / "t.npz"
    path.write_bytes(_npz_bytes(x=x))
    _read(path)


def _png(seed: int, size=(6, 6), mode="L") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (*size, 3) if mode == "RGB" else size, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


@FUZZ
@given(st.data())
def test_image_folder_reader_never_crashes_on_damaged_images(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("imgs")
    (root / "a").mkdir()
    (root / "b").mkdir()
    for i in range(3):
        (root / "a" / f"{i}.png").write_bytes(_png(i))
        (root / "b" / f"{i}.png").write_bytes(_png(10 + i, mode=data.draw(st.sampled_from(["L", "RGB"]))))
    victim = root / data.draw(st.sampled_from(["a", "b"])) / f"{data.draw(st.integers(0, 2))}.png"
    raw = bytearray(victim.read_bytes())
    op = data.draw(st.sampled_from(["flip", "cut", "replace", "keep"]))
    if op == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    elif op == "cut":
        del raw[data.draw(st.integers(0, len(raw) - 1)):]
    elif op == "replace":
        raw = bytearray(data.draw(st.binary(max_size=100)))
    victim.write_bytes(bytes(raw))
    size = data.draw(st.sampled_from([None, (6, 6), (4, 9)]))
    _read(root, image_size=size, test_fraction=0.34)
