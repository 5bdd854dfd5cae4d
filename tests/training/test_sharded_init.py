"""The 456B path at tiny scale: meta init -> fully_shard per decoder layer and ViT block -> each of two CPU
processes (gloo) reads only its rows of a released-layout checkpoint -> the same logits as one process.

    .venv/bin/python -m pytest -q tests/training/test_sharded_init.py
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from minimax_vl.model import MiniMaxVL01
from text_backbone.weights_io import inspect_checkpoint
from training.sharded_init import probe_inputs

REPO = Path(__file__).resolve().parents[2]


def test_two_ranks_load_their_rows_and_match_one_process(tmp_path):
    model = MiniMaxVL01.from_preset("tiny", seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # move every weight off its initial value, so a skipped or swapped load shows
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint, max_shard_size="1MB")  # several files, as the released checkpoint has
    assert len(inspect_checkpoint(checkpoint).files) > 1

    loaded = MiniMaxVL01.from_pretrained(checkpoint)
    with torch.no_grad():
        expected = loaded(**probe_inputs(loaded.processor)).logits

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "training.sharded_init", str(checkpoint), "--probe-out", str(tmp_path / "probe")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    ranks = [load_file(str(tmp_path / "probe" / f"rank{r}.safetensors")) for r in (0, 1)]

    # FSDP2 all-gathers bit-exact copies of the loaded rows and the forward runs the same fp32 operations as
    # the single process, so the logits agree to float32 rounding of a different summation order at most.
    for rank in ranks:
        torch.testing.assert_close(rank["logits"], expected, rtol=0, atol=1e-5)

    # Each rank read only its rows: together the two read every byte outside the vision tower exactly once,
    # and neither read much more than half (dim 0 splits evenly up to one row per tensor).
    info = inspect_checkpoint(checkpoint)
    text_bytes = sum(t.numel() * t.element_size() for k, t in loaded.state_dict().items()
                     if not k.startswith("vision_tower.") and k in info.tensors)
    rows = [int(r["counts"][0]) for r in ranks]
    assert sum(rows) == text_bytes
    assert max(rows) < 0.55 * text_bytes, rows
    # ... and the two shards partition the parameters.
    assert sum(int(r["counts"][2]) for r in ranks) == sum(p.numel() for p in loaded.parameters())
