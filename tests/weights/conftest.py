"""Fixtures for the checkpoint I/O tests: modules built from a key -> shape table, and byte-level equality."""
import pytest
import torch
from torch import nn


def module_with_keys(shapes, *, dtype=torch.float32):
    """An ``nn.Module`` whose state-dict keys and shapes are exactly ``shapes`` (a dict key -> shape).

    Built under whatever default device is active, so ``with torch.device("meta"):`` gives a meta module.
    Parameters are zero-initialised on real devices so tests can tell loaded values from untouched ones.
    """
    root = nn.Module()
    for key, shape in shapes.items():
        *path, name = key.split(".")
        owner = root
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
        tensor = torch.empty(shape, dtype=dtype)
        if not tensor.is_meta:
            tensor.zero_()
        owner.register_parameter(name, nn.Parameter(tensor))
    return root


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when dtype, shape and every byte agree (so NaN payloads and -0.0 count)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.detach().reshape(-1).view(torch.uint8), b.detach().reshape(-1).view(torch.uint8))


@pytest.fixture
def build_module():
    return module_with_keys


@pytest.fixture
def bits_equal():
    return same_bits
