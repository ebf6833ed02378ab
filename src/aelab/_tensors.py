"""Small checks on tensors read from files, shared by the model loader and the run artifacts."""

from __future__ import annotations


def non_float(tensors: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """Names (with dtypes) of the tensors that are not floating point."""
    return [f"{k} ({str(v.dtype).replace('torch.', '')})" for k, v in tensors.items()
            if k not in skip and not v.is_floating_point()]
