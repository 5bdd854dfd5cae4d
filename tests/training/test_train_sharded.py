"""Sharded training over two CPU processes (gloo) trains stage II and stage IV like one process: FSDP2
(`cpu_fsdp2.yaml`) always, DeepSpeed ZeRO-3 (`cpu_deepspeed_zero3.yaml`) when the optional `deepspeed` extra is
installed (`pip install -e ".[deepspeed]"`; skipped otherwise, with that message).

    .venv/bin/python -m pytest -q tests/training/test_train_sharded.py

Stage II is killed with SIGKILL after its first (sharded) checkpoint and resumed with `--resume`; the losses of
steps 1-4, before and after the kill, are compared with one uninterrupted process. Its final export (the full
state dict gathered from the shards, `save_pretrained`) is loaded by one process, which scores the held-out set
as the sharded run did at its last step. Stage IV (DPO) starts from a checkpoint, which FSDP2 loads straight into
each process's shards (policy and frozen reference, `training.sharded_init`), and runs with activation
checkpointing (the one-process run without).

Tolerances. One process with four accumulation micro-batches and two processes with two each compute the same
cross-entropy / DPO objective up to the order of floating-point additions (the reduce-scatter vs. local
accumulation): measured <= 6.5e-8 relative (FSDP2 and ZeRO-3), tested at 1e-5 relative. The MoE load-balancing loss
is computed per micro-batch; were the groupings different ([0, 1] + [2, 3] vs. [0, 2] + [1, 3]), that would move the
loss by ~1e-6 at router_aux_loss_coef 1e-3: micro-batches of one document (one pair) make the groupings equal, so
the total loss is tested at 1e-5 absolute as well (measured <= 3.6e-7). (With micro-batches of two, the aux-loss
difference reached the router gates, whose tiny gradients AdamW turns into full-size steps: gates 7e-4 apart after 4
steps.) The held-out DPO margin is beta times a difference of float32 sums of ~100 token log-probabilities each,
which round at ~1e-5 of their size: tested at 1e-5 absolute (measured <= 1.7e-6).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors import safe_open

from minimax_vl.model import MiniMaxVL01
from training import checkpointing
from training.loop import RunOptions, Trainer
from training.metrics import read_metrics
from training.stages import load_stage
from training.train import main

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).with_name("accelerate")
COMMON = ["--init", "preset", "--global-batch-size", "4", "--micro-batch-size", "1", "--max-length", "256",
          "--num-threads", "1", "--no-progress", "--set", "data.image_size=128", "--set", "eval.samples=4"]
STAGE2 = ["--stage", "2", *COMMON, "--max-steps", "4", "--checkpoint-every", "2",
          "--set", "learning_rates.language_model=1e-3"]
STAGE4 = ["--stage", "4", *COMMON, "--max-steps", "3", "--checkpoint-every", "0", "--set", "data.num_samples=64",
          *[arg for c in ("vision_tower", "multi_modal_projector", "image_newline", "language_model")
            for arg in ("--set", f"learning_rates.{c}=1e-3")]]
OBJECTIVE_RTOL, LOSS_ATOL, MARGIN_ATOL = 1e-5, 1e-5, 1e-5  # see the module docstring
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}




@dataclass(frozen=True)
class Sharding:
    config: str  # under training/configs/accelerate/
    announced: str  # what the start-up line says
    shard_files: dict[str, list[str]]  # checkpoint sub-folder -> the files the two processes write there


FSDP2 = Sharding("cpu_fsdp2.yaml", "distributed FSDP",
                 {"pytorch_model_fsdp_0": [".metadata", "__0_0.distcp", "__1_0.distcp"],  # torch.distributed.checkpoint
                  "optimizer_0": [".metadata", "__0_0.distcp", "__1_0.distcp"]})
ZERO3 = Sharding("cpu_deepspeed_zero3.yaml", "distributed DEEPSPEED",
                 {"pytorch_model": [f"zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt"
                                    for r in (0, 1) for kind in ("model", "optim")]})


def _needs(sharding: Sharding):
    if sharding is ZERO3:
        pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra: pip install -e '.[deepspeed]'")


SHARDINGS = [pytest.param(FSDP2, id="fsdp2"), pytest.param(ZERO3, id="deepspeed_zero3")]


def _command(sharding: Sharding, args: list[str], output: Path) -> list[str]:
    return [str(ACCELERATE), "launch", "--config_file", f"training/configs/accelerate/{sharding.config}",
            "-m", "training.train", *args, "--output", str(output)]


def _launch(sharding: Sharding, args: list[str], output: Path) -> str:
    done = subprocess.run(_command(sharding, args, output), cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout


def _records(output: Path) -> dict[tuple[str, int], dict]:
    return {(r["kind"], r["step"]): r for r in read_metrics(output)}


def _assert_same_run(one: dict, sharded: dict, eval_key: str) -> None:
    assert one.keys() == sharded.keys()
    for key, a in one.items():
        b = sharded[key]
        if key[0] == "train":
            assert a["tokens"] == b["tokens"] and a["target_tokens"] == b["target_tokens"], key  # the same data
            assert b["objective"] == pytest.approx(a["objective"], rel=OBJECTIVE_RTOL), key
            assert b["loss"] == pytest.approx(a["loss"], abs=LOSS_ATOL), key
        elif eval_key == "val_margin":
            assert b[eval_key] == pytest.approx(a[eval_key], abs=MARGIN_ATOL), key
        else:
            assert b[eval_key] == pytest.approx(a[eval_key], rel=OBJECTIVE_RTOL), key


def _children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(command name)": state, ppid, ...
        except (OSError, IndexError):
            continue  # a process that ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill_after_first_checkpoint(sharding: Sharding, args: list[str], output: Path) -> str:
    process = subprocess.Popen(_command(sharding, args, output), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True, text=True)
    root = checkpointing.checkpoint_root(output)
    deadline = time.monotonic() + 300
    while checkpointing.latest_checkpoint(root) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint appeared; the run printed:\n{process.stdout.read()[-5000:]}")
        time.sleep(0.05)
    # torchrun starts each training process in a session of its own: kill them, then the launcher's group.
    workers = _children(process.pid)
    assert len(workers) == 2, workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    os.killpg(process.pid, signal.SIGKILL)
    printed = process.communicate()[0]
    assert process.returncode == -signal.SIGKILL
    assert not (output / "final").exists(), "the run finished before the kill; the test needs more steps"
    return printed


@pytest.mark.parametrize("sharding", SHARDINGS)
def test_stage2_matches_one_process_through_a_kill_and_resume(tmp_path, sharding):
    _needs(sharding)
    assert main([*STAGE2, "--output", str(tmp_path / "one")]) == 0
    sharded = tmp_path / "sharded"
    printed = _kill_after_first_checkpoint(sharding, STAGE2, sharded)
    assert "2 process(es) x micro-batch 1 x 2 accumulation step(s)" in printed
    assert sharding.announced in printed  # not DDP: accelerate alone would fall back to it on the CPU

    # The checkpoint holds one shard per process, for the model and AdamW.
    [checkpoint] = checkpointing.complete_checkpoints(checkpointing.checkpoint_root(sharded))
    for part, files in sharding.shard_files.items():
        assert sorted(p.name for p in (checkpoint / part).iterdir() if p.is_file()) == sorted(files)
    assert checkpointing.read_trainer_state(checkpoint)["step"] == 2

    resumed = _launch(sharding, [*STAGE2, "--resume"], sharded)
    assert f"resuming from {checkpoint} at step 2" in resumed
    _assert_same_run(_records(tmp_path / "one"), _records(sharded), "val_loss")
    losses = [_records(sharded)[("train", s)]["loss"] for s in range(1, 5)]
    assert losses[-1] < losses[0]

    # The export is a full checkpoint in the released layout (the one process's keys and shapes) that one
    # process loads and that scores the held-out set as the sharded model did at its last step.
    final = sharded / "final"
    with safe_open(final / "model.safetensors", "pt") as got, \
            safe_open(tmp_path / "one" / "final" / "model.safetensors", "pt") as want:
        assert set(got.keys()) == set(want.keys())
        assert any(k.startswith("vision_tower.vision_model.encoder.layers.") for k in got.keys())
        for key in want.keys():
            assert got.get_slice(key).get_shape() == want.get_slice(key).get_shape(), key
    MiniMaxVL01.from_pretrained(final)  # strict: every key present, none unexpected
    stage = load_stage(2, ["global_batch_size=4", "micro_batch_size=1", "max_length=256", "data.image_size=128",
                           "eval.samples=4", "max_steps=4", "checkpoint.every=0"])
    check = Trainer(stage, RunOptions(output_dir=tmp_path / "check", init=str(final), progress=False))
    assert check.world == 1
    logged = json.loads((sharded / "summary.json").read_text())["eval_after"]["val_loss"]
    assert check.evaluate()["val_loss"] == pytest.approx(logged, rel=OBJECTIVE_RTOL)


@pytest.mark.parametrize("sharding", SHARDINGS)
def test_dpo_with_a_sharded_reference_matches_one_process(tmp_path, sharding):
    _needs(sharding)
    # Stage IV starts from a checkpoint: under FSDP2 the policy and the reference are loaded straight into shards.
    MiniMaxVL01.from_preset("tiny", seed=0).save_pretrained(tmp_path / "init")
    args = [*STAGE4, "--init", str(tmp_path / "init")]  # the last --init wins
    assert main([*args, "--output", str(tmp_path / "one")]) == 0
    # The sharded run also recomputes its layers in backward (activation checkpointing): the same numbers.
    printed = _launch(sharding, [*args, "--activation-checkpointing"], tmp_path / "sharded")
    assert sharding.announced in printed
    assert ("weights loaded straight into shards" in printed) == (sharding is FSDP2)
    one, sharded = _records(tmp_path / "one"), _records(tmp_path / "sharded")
    _assert_same_run(one, sharded, "val_margin")
    assert sharded[("eval", 3)]["val_margin"] > sharded[("eval", 0)]["val_margin"] == 0.0  # the policy moved
    MiniMaxVL01.from_pretrained(tmp_path / "sharded" / "final")
