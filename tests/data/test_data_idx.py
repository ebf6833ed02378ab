"""aelab.data.idx: IDX round trips, hand-made headers, every kind of damage, and a fuzz test
that the reader raises DataError and nothing else on garbage."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aelab.data import read_idx, write_idx
from aelab.data.idx import IDX_DTYPES, encode_idx
from aelab.errors import DataError

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


# --- reading hand-made files ------------------------------------------------------------------

def test_reads_uint8_images_as_written_by_hand():
    data = header(0x08, (2, 2, 3)) + bytes(range(12))
    arr = read_idx(data)
    assert arr.dtype == np.uint8 and arr.shape == (2, 2, 3)
    assert arr[1, 0, 2] == 8 and arr.sum() == sum(range(12))


def test_reads_big_endian_types_into_native_order():
    int16 = header(0x0B, (2,)) + b"\x01\x02\xff\xfe"  # 0x0102 = 258, 0xfffe = -2
    assert read_idx(int16).tolist() == [258, -2]
    assert read_idx(int16).dtype == np.int16 and read_idx(int16).dtype.isnative
    int32 = header(0x0C, (1,)) + b"\x00\x01\x00\x00"
    assert read_idx(int32).tolist() == [65536]
    f32 = header(0x0D, (1,)) + struct.pack(">f", 1.5)
    assert read_idx(f32).tolist() == [1.5]
    f64 = header(0x0E, (1,)) + struct.pack(">d", -0.25)
    assert read_idx(f64).tolist() == [-0.25]
    i8 = header(0x09, (2,)) + b"\x7f\x80"
    assert read_idx(i8).tolist() == [127, -128]


def test_result_is_writable_for_bytes_bytearray_and_path(tmp_path):
    data = header(0x08, (3,)) + b"\x01\x02\x03"
    path = tmp_path / "f-idx1-ubyte"
    path.write_bytes(data)
    for source in (data, bytearray(data), memoryview(data), path, str(path)):
        arr = read_idx(source)
        arr[0] = 9  # scaling in place must be possible
        assert arr.tolist() == [9, 2, 3]


# --- round trips ------------------------------------------------------------------------------

@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5),
    )
)
@settings(max_examples=100, deadline=None, database=None)
def test_encode_then_read_round_trips(arr):
    back = read_idx(encode_idx(arr))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_write_idx_round_trips_raw_and_gzip(tmp_path):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "a-idx3-ubyte", arr)
    write_idx(tmp_path / "a-idx3-ubyte.gz", arr)
    raw = (tmp_path / "a-idx3-ubyte").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03" and len(raw) == 16 + arr.size
    assert (tmp_path / "a-idx3-ubyte.gz").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)
    # Deterministic gzip (no timestamp): equal arrays give equal files.
    write_idx(tmp_path / "b-idx3-ubyte.gz", arr)
    assert (tmp_path / "a-idx3-ubyte.gz").read_bytes() == (tmp_path / "b-idx3-ubyte.gz").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-idx3-ubyte", "a-idx3-ubyte.gz", "b-idx3-ubyte.gz"]


def test_gzip_is_detected_by_content_not_name():
    arr = np.array([1, 2, 3], dtype=np.uint8)
    assert read_idx(gzip.compress(encode_idx(arr)), name="no-suffix").tolist() == [1, 2, 3]


@pytest.mark.parametrize("bad", [np.zeros(3, dtype=np.uint16), np.zeros(3, dtype=bool),
                                 np.zeros(3, dtype=np.int64), np.zeros(()), np.zeros((1,) * 5),
                                 np.zeros((2, 0), dtype=np.uint8)])
def test_encode_rejects_what_idx_cannot_hold(bad):
    with pytest.raises(ValueError):
        encode_idx(bad)


# --- damage: each failure is one DataError line naming the file ----------------------------------

def errmsg(data, name="thefile") -> str:
    with pytest.raises(DataError) as info:
        read_idx(data, name=name)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(name)
    return msg


def test_bad_magic():
    assert "magic" in errmsg(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")


def test_unknown_dtype():
    assert "dtype code 0x0A" in errmsg(header(0x0A, (1,)) + b"\x00")


@pytest.mark.parametrize("ndim", [0, 5, 255])
def test_rank_outside_1_to_4(ndim):
    assert "rank" in errmsg(bytes([0, 0, 8, ndim]) + b"\x00" * 64)


def test_too_short_for_any_header():
    assert "shorter" in errmsg(b"\x00\x00")


def test_truncated_header():
    assert "expected 16 bytes, got 10" in errmsg(header(0x08, (1, 1, 1))[:10])


def test_truncated_data_says_expected_and_actual_bytes():
    data = header(0x08, (10, 28, 28)) + b"\x00" * 100
    msg = errmsg(data)
    assert "truncated" in msg and f"expected {16 + 7840} bytes, got {16 + 100}" in msg


def test_truncated_int32_data_counts_item_size():
    assert "expected 16 bytes, got 15" in errmsg(header(0x0C, (2,)) + b"\x00" * 7)


def test_trailing_garbage():
    msg = errmsg(header(0x08, (2,)) + b"\x01\x02" + b"junk")
    assert "4 trailing bytes" in msg and "expected 10 bytes, got 14" in msg


def test_gz_name_with_raw_content():
    assert "not gzip" in errmsg(header(0x08, (1,)) + b"\x00", name="train-labels-idx1-ubyte.gz")


def test_broken_gzip():
    gz = gzip.compress(header(0x08, (4,)) + b"abcd")
    assert "gzip" in errmsg(gz[:-6])
    assert "gzip" in errmsg(b"\x1f\x8b" + b"\x00" * 20)


def test_empty_dimension():
    # numpy itself cannot even build a zero-size array of shape (2**24, 2**24, 2**24, 0).
    assert "empty dimension" in errmsg(header(0x08, (2**24, 2**24, 2**24, 0)))
    assert "empty dimension" in errmsg(header(0x08, (0,)))


def test_huge_dims_do_not_allocate():
    # 2**32-1 ** 4 elements claimed: must be a truncation error, not an overflow or MemoryError.
    assert "truncated" in errmsg(header(0x0E, (2**32 - 1,) * 4))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="directory"):
        read_idx(tmp_path)


# --- fuzz: garbage in, DataError out (never IndexError, struct.error, ValueError, ...) -----------

def only_data_error(data: bytes, name: str = "fuzz") -> None:
    try:
        read_idx(data, name=name)
    except DataError as exc:
        assert "\n" not in str(exc)


@given(st.binary(max_size=200))
@FUZZ
def test_fuzz_random_bytes(data):
    only_data_error(data)
    only_data_error(data, name="fuzz.gz")


@st.composite
def valid_files(draw):
    code = draw(st.sampled_from(sorted(IDX_DTYPES)))
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    arr = np.zeros(dims, dtype=IDX_DTYPES[code])
    return encode_idx(arr)


@given(valid_files(), st.data())
@FUZZ
def test_fuzz_mutated_valid_files(data, draw):
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        pos = draw.draw(st.integers(0, len(buf) - 1))
        buf[pos] = draw.draw(st.integers(0, 255))
    only_data_error(bytes(buf))
    cut = draw.draw(st.integers(0, len(buf)))
    only_data_error(bytes(buf[:cut]))  # truncations
    only_data_error(bytes(buf) + draw.draw(st.binary(max_size=8)))  # appended garbage


@given(valid_files(), st.data())
@FUZZ
def test_fuzz_mutated_gzip(data, draw):
    gz = bytearray(gzip.compress(data, mtime=0))
    pos = draw.draw(st.integers(2, len(gz) - 1))  # keep the magic so gzip is attempted
    gz[pos] ^= draw.draw(st.integers(1, 255))
    only_data_error(bytes(gz))
    only_data_error(bytes(gz[: draw.draw(st.integers(0, len(gz)))]))
