"""A NaN or Inf loss skips the optimizer step and is counted; too many in a row abort with the weights untouched."""
from __future__ import annotations

import pytest
import torch

from minimax_vl.model import MiniMaxVL01
from training.loop import NonFiniteLossError, RunOptions, Trainer
from training.metrics import read_metrics
from training.stages import load_stage
from training.train import INJECT_ENV, main

OVERRIDES = ["global_batch_size=2", "micro_batch_size=2", "max_length=192", "data.image_size=128",
             "eval.samples=2", "checkpoint.every=0", "learning_rates.language_model=1e-3", "max_nonfinite_steps=3"]


def _trainer(tmp_path, name, steps, hook=None) -> Trainer:
    stage = load_stage(2, OVERRIDES + [f"max_steps={steps}"])
    return Trainer(stage, RunOptions(output_dir=tmp_path / name, init="preset", progress=False, loss_hook=hook))


def test_a_nonfinite_step_is_skipped_and_counted(tmp_path, monkeypatch):
    monkeypatch.setenv(INJECT_ENV, "2:nan")
    args = ["--stage", "2", "--init", "preset", "--max-steps", "3", "--output", str(tmp_path / "run"), "--no-progress"]
    assert main(args + [f"--set={o}" for o in OVERRIDES]) == 0
    records = {r["step"]: r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"}
    assert [records[s]["skipped"] for s in (1, 2, 3)] == [False, True, False]
    assert records[2]["nonfinite_steps"] == 1 and records[3]["nonfinite_steps"] == 1
    assert torch.isfinite(torch.tensor([records[1]["loss"], records[3]["loss"]])).all()
    # The skipped step did not advance the schedule: step 3 uses the learning rate step 2 would have used.
    lr = [records[s]["lr"]["language_model"] for s in (1, 2, 3)]
    assert lr[0] < lr[1] == lr[2]  # still warming up, yet step 3 repeats step 2's rate
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"skipped_steps": 1' in summary and '"updates": 2' in summary


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_too_many_nonfinite_steps_in_a_row_abort_with_weights_untouched(tmp_path, poison):
    snapshots = {}

    def poison_from_step_2(step, loss):
        if step < 2:
            return loss
        if not snapshots:  # called before step 2's backward: the weights of step 1
            model = trainer.accelerator.unwrap_model(trainer.model)
            snapshots.update({k: v.clone() for k, v in model.state_dict().items()})
        return loss * poison

    trainer = _trainer(tmp_path, "poisoned", steps=10, hook=poison_from_step_2)
    with pytest.raises(NonFiniteLossError, match=r"3 steps in a row .* weights, which are those of step 1"):
        trainer.fit()
    assert trainer.state["step"] == 4 and trainer.state["updates"] == 1 and trainer.state["nonfinite_total"] == 3
    assert not (tmp_path / "poisoned" / "final").exists()
    records = [r for r in read_metrics(tmp_path / "poisoned") if r["kind"] == "train"]
    assert [r["skipped"] for r in records] == [False, True, True, True]
    initial = MiniMaxVL01.from_preset("tiny", seed=0).state_dict()
    after = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    assert after.keys() == snapshots.keys()
    for name, value in after.items():
        assert torch.equal(value, snapshots[name]), name
    assert any(not torch.equal(after[n], initial[n]) for n in after)  # step 1 did update
