"""Shared test set-up.

- Triton kernels run on CPU through Triton's interpreter. The switch is read when kernels are defined, so it
  must be set before anything imports triton; conftest runs first.
- One intra-op thread: the test models are tiny, and on a 2-core machine running other jobs two threads made
  small matmuls many times slower (measured 2.3 s vs 0.14 s for a tiny VL forward). Set through the
  environment too, so subprocesses (accelerate launch) inherit it.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
