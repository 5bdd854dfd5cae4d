"""Shared test set-up.

- Triton kernels run on CPU through Triton's interpreter. The switch is read when kernels are defined, so it
  must be set before anything imports triton; conftest runs first.
- One intra-op thread: the test models are tiny, and on a 2-core machine running other jobs two threads made
  small matmuls many times slower (measured 2.3 s vs 0.14 s for a tiny VL forward). Set through the
  environment too, so subprocesses (accelerate launch) inherit it.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture(scope="session")
def load_benchmark():
    """load_benchmark("memory_plan") -> benchmarks/memory_plan.py as a module (benchmarks/ is not a package). It
    stays registered in sys.modules under its name, as the dataclasses some scripts define need."""
    import importlib.util
    import sys

    def load(name: str):
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]

    return load
