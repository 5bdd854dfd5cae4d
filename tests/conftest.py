"""Shared test set-up.

Triton kernels run on CPU through Triton's interpreter. The switch is read when kernels are
defined, so it must be set before anything imports triton; conftest runs first.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
