"""Shared fixtures: small synthetic data on the CPU, and a helper to build configs."""

from __future__ import annotations

import pytest
import torch

from aelab.config import RunConfig


@pytest.fixture(autouse=True)
def _torch_threads():
    # Small tensors: one thread keeps the tests fast and their timings steady on 2 cores.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_cfg(**kw) -> RunConfig:
    """A RunConfig on synthetic data; keyword args are dotted overrides with '__' for '.'."""
    base = {"data.dataset": "synthetic", "data.limit": 512, "data.test_limit": 128, "train.epochs": 2,
            "train.batch_size": 64}
    base.update({k.replace("__", "."): v for k, v in kw.items()})
    return RunConfig().with_overrides(base)


@pytest.fixture
def cfg_factory():
    return make_cfg
