"""Fixtures for the multimodal model's acceptance tests (tiny preset, random weights, CPU)."""
import numpy as np
import pytest
import torch
from PIL import Image

from minimax_vl.model import MiniMaxVL01


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """Runs each test single-threaded, then restores the setting.

    The tiny model's matmuls are a few microseconds of work; on a shared 2-core machine intra-op threads only
    add synchronisation (a tiny forward measured 2.3 s with 2 threads vs 0.14 s with 1 under load). Results
    do not depend on the thread count beyond float summation order, and every comparison below is between
    two runs in the same setting.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model() -> MiniMaxVL01:
    """The tiny preset with its processor. Shared: tests must not modify it."""
    return MiniMaxVL01.from_preset("tiny", seed=0)


def _random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def make_image():
    """make_image(height, width, seed=0) -> a random RGB PIL image (the same for the same arguments)."""
    return _random_image
