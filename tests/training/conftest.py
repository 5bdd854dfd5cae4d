"""One torch thread for the training tests.

The tests share two CPU cores with other jobs. With two OpenMP threads per process, a thread that loses its
core leaves the other spinning at every parallel region: the tiny-model runs here took ~10x longer that way
than with one thread (measured: the four-stage chain 275 s vs 25 s). Subprocesses get OMP_NUM_THREADS=1.
"""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")  # module scope: set before module fixtures (the stage chain) run
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
