"""`accelerate launch ... -m training.train` killed with SIGKILL after a checkpoint, then resumed, reproduces the
uninterrupted run step for step, and the kill leaves only complete checkpoints."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minimax_vl.model import MiniMaxVL01
from training import checkpointing
from training.metrics import read_metrics
from training.train import main

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).with_name("accelerate")
STEPS = 8
# Stage II from the random preset: every component trains, images (anyres) and text-only documents are mixed.
ARGS = ["--stage", "2", "--init", "preset", "--max-steps", str(STEPS), "--global-batch-size", "2",
        "--micro-batch-size", "1", "--max-length", "256", "--checkpoint-every", "2", "--keep-checkpoints", "2",
        "--num-threads", "1", "--no-progress", "--set", "data.image_size=128", "--set", "eval.samples=2",
        "--set", "learning_rates.language_model=1e-3"]


def _train_losses(output: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(output) if r["kind"] == "train"}


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [str(ACCELERATE), "launch", "--config_file", "training/configs/accelerate/cpu.yaml",
               "-m", "training.train", *ARGS, "--output", str(killed)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True, text=True)
    root = checkpointing.checkpoint_root(killed)
    deadline = time.monotonic() + 300
    while checkpointing.latest_checkpoint(root) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint appeared; the run printed:\n{process.stdout.read()}")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and the training process, mid-run
    output = process.communicate()[0]
    assert process.returncode == -signal.SIGKILL
    assert "language_model" in output and "trainable" in output  # the start-up component table
    assert not (killed / "final").exists(), "the run finished before the kill; the test needs more steps"

    # Only complete checkpoints carry a step_ name, and the newest one loads.
    complete = checkpointing.complete_checkpoints(root)
    assert complete and all((c / "model.safetensors").exists() and (c / "optimizer.bin").exists() for c in complete)
    saved_step = checkpointing.read_trainer_state(complete[-1])["step"]
    assert 2 <= saved_step < STEPS
    losses_before_kill = _train_losses(killed)
    assert max(losses_before_kill) >= saved_step

    resumed = subprocess.run([sys.executable, "-m", "training.train", *ARGS, "--output", str(killed), "--resume"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {complete[-1]} at step {saved_step}" in resumed.stdout
    assert not list(root.glob(".tmp-*"))

    reference = tmp_path / "reference"
    assert main([*ARGS, "--output", str(reference)]) == 0
    expected, got = _train_losses(reference), _train_losses(killed)
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    for step in expected:
        assert abs(got[step] - expected[step]) <= 1e-6, (step, got[step], expected[step])
    assert expected[STEPS] < expected[1]

    # The resumed run's export is the uninterrupted run's, bit for bit, and loads with from_pretrained.
    a, b = MiniMaxVL01.from_pretrained(killed / "final"), MiniMaxVL01.from_pretrained(reference / "final")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=name)


def test_a_fresh_run_refuses_to_overwrite_checkpoints(tmp_path):
    root = checkpointing.checkpoint_root(tmp_path)
    (root / "step_000002").mkdir(parents=True)
    (root / "step_000002" / checkpointing.STATE_FILE).write_text("{}")
    assert main([*ARGS, "--output", str(tmp_path), "--max-steps", "1"]) == 2
