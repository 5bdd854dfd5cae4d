"""`max_minutes`: a run stops once its training steps have used the budget, saves a checkpoint there, and a resumed
run with a larger budget continues it; the minutes count across resumes. Without a budget nothing changes."""
from __future__ import annotations

import json

import pytest

from training import checkpointing
from training.loop import RunOptions, train
from training.metrics import read_metrics
from training.stages import load_stage
from training.train import main

OVERRIDES = ["global_batch_size=2", "micro_batch_size=2", "max_length=192", "data.image_size=128",
             "eval.samples=2", "checkpoint.every=0", "learning_rates.language_model=1e-3"]
MAX_STEPS = 50  # never reached below: the budgets end every run first


def _options(output, minutes, resume=None) -> RunOptions:
    return RunOptions(output_dir=output, init="preset", progress=False, max_minutes=minutes, resume=resume)


def test_a_time_budget_stops_with_a_checkpoint_and_a_larger_one_continues(tmp_path, capsys):
    run = tmp_path / "run"
    # A budget far below one step's time: the first step runs (nothing was spent before it), then the run stops.
    args = ["--stage", "2", "--init", "preset", "--max-steps", str(MAX_STEPS), "--output", str(run), "--no-progress",
            "--max-minutes", "1e-7"] + [f"--set={o}" for o in OVERRIDES]
    assert main(args) == 0
    assert "1 steps (time budget of 1e-07 minutes reached)" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["out_of_time"] and summary["train_seconds"] > 1e-7 * 60
    assert (run / "final" / "config.json").exists()
    assert "init: preset" in (run / "stage.yaml").read_text()  # --init is what the table records
    root = checkpointing.checkpoint_root(run)
    assert [p.name for p in checkpointing.complete_checkpoints(root)] == ["step_000001"]  # checkpoint.every=0
    spent = checkpointing.read_trainer_state(root / "step_000001")["train_seconds"]
    assert spent == summary["train_seconds"]

    stage = load_stage(2, OVERRIDES + [f"max_steps={MAX_STEPS}"])
    # The same budget again: the minutes carry across the resume, so it is already spent and no step runs.
    again = train(stage, _options(run, 1e-7, resume="latest"))
    assert (again.steps, again.out_of_time, again.train_seconds) == (1, True, spent)
    assert len(checkpointing.complete_checkpoints(root)) == 1
    # A budget just above what was spent: exactly one more step, continued from the checkpoint.
    more = train(stage, _options(run, (spent + 1e-6) / 60, resume="latest"))
    assert (more.steps, more.samples, more.out_of_time) == (2, 4, True)
    assert more.train_seconds > spent
    assert checkpointing.latest_checkpoint(root).name == "step_000002"
    train_records = [r for r in read_metrics(run) if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2]
    assert train_records[1]["train_seconds"] == pytest.approx(more.train_seconds)


def test_a_budget_that_is_never_reached_changes_nothing(tmp_path):
    stage = load_stage(2, OVERRIDES + ["max_steps=2"])
    result = train(stage, _options(tmp_path / "run", 60.0))
    assert (result.steps, result.out_of_time) == (2, False)
    assert not checkpointing.complete_checkpoints(checkpointing.checkpoint_root(tmp_path / "run"))
    with pytest.raises(ValueError, match="max_minutes"):
        train(stage, _options(tmp_path / "bad", -1.0))
