"""aelab.data.arrays: arrays in memory as a data source, registered only while in use."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest

from aelab.data import SOURCES, DataConfig, load
from aelab.data.arrays import PREFIX, array_source, samples, sha256_of
from aelab.errors import DataError


def test_the_name_carries_the_content_and_the_source_lives_only_in_its_block():
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    with array_source(x) as name:
        f32 = x.astype(np.float32)
        h = hashlib.sha256(f"{f32.dtype.str}{f32.shape}".encode() + f32.tobytes()).hexdigest()
        assert name == PREFIX + h == PREFIX + sha256_of(f32)
        ds = load(DataConfig(dataset=name))
        assert ds.x_train.dtype == np.float32 and ds.sample_shape == (3,) and ds.value_range is None
        np.testing.assert_array_equal(ds.x_test, ds.x_train)  # no test split given: the same arrays
        with array_source(x) as again:  # a second user of the same arrays shares the source
            assert again == name
        assert name in SOURCES  # the outer block still uses it
        pickle.loads(pickle.dumps(SOURCES[name]))  # travels to a spawned worker with its arrays
        with array_source(x + 1) as other:
            assert other != name  # other content, other name (so another config hash)
    assert name not in SOURCES and other not in SOURCES


def test_images_get_a_channel_axis():
    with array_source(np.zeros((5, 8, 8), np.uint8)) as name:
        assert load(DataConfig(dataset=name)).sample_shape == (1, 8, 8)


@pytest.mark.parametrize("x, msg", [
    (np.array([[1.0, np.nan]]), "NaN or infinite value at sample 0, feature 1"),
    (np.array([["a", "b"]]), "holds <U1 values, not numbers"),
    (np.zeros(4), "has shape \\[4\\]; give \\(samples, features\\)"),
    (np.zeros((0, 3)), "is empty"),
])
def test_what_cannot_be_trained_on_is_one_line(x, msg):
    with pytest.raises(DataError, match=msg) as e:
        samples(x)
    assert "\n" not in str(e.value)
