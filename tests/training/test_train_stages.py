"""The four stages chained on the tiny preset (each from the previous stage's export): every stage trains exactly
the parameters it names, its loss falls, and DPO widens the chosen-vs-rejected margin on held-out pairs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from minimax_vl.model import MiniMaxVL01
from training.loop import RunOptions, train
from training.metrics import read_metrics, tensorboard_available
from training.stages import COMPONENTS, component_of, load_stage, has_prefix

# Short stages at rates above the shipped fine-tuning defaults, so that 12-16 steps show an effect.
COMMON = ["global_batch_size=2", "micro_batch_size=2", "max_length=256", "data.image_size=128", "eval.samples=4",
          "checkpoint.every=0", "schedule.warmup_steps=2"]
FAST_RATES = {
    1: ["learning_rates.vision_tower=1e-3", "learning_rates.multi_modal_projector=3e-3"],
    2: [f"learning_rates.{c}=2e-3" for c in COMPONENTS],
    3: [f"learning_rates.{c}=1e-3" for c in COMPONENTS],
    4: [f"learning_rates.{c}=3e-4" for c in COMPONENTS] + ["data.num_samples=64", "eval.samples=8",
                                                           "global_batch_size=4", "micro_batch_size=4"],
}
STEPS = {1: 16, 2: 16, 3: 12, 4: 10}


def _initial_weights(stage: int, run: Path) -> dict[str, torch.Tensor]:
    if stage == 1:
        model = MiniMaxVL01.from_preset("tiny", seed=0)
    else:
        model = MiniMaxVL01.from_pretrained(run / f"stage{stage - 1}" / "final")
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def chained_runs(tmp_path_factory):
    """{stage: (stage config, result, weights before, metrics records)} for stages 1-4 run one after another."""
    run = tmp_path_factory.mktemp("tiny_run")
    runs = {}
    for number in (1, 2, 3, 4):
        stage = load_stage(number, COMMON + FAST_RATES[number] + [f"max_steps={STEPS[number]}"])
        before = _initial_weights(number, run)
        result = train(stage, RunOptions(output_dir=run / f"stage{number}", preset="tiny", progress=False))
        runs[number] = (stage, result, before, read_metrics(run / f"stage{number}"))
    return runs


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_each_stage_trains_exactly_the_modules_it_names(chained_runs, number):
    stage, result, before, _ = chained_runs[number]
    after = MiniMaxVL01.from_pretrained(result.final_dir).state_dict()
    assert after.keys() == before.keys()
    changed_components = set()
    for name, value in after.items():
        trainable = any(has_prefix(name, p) for p in stage.trainable)
        if not trainable:
            assert torch.equal(value, before[name]), f"stage {number} changed frozen {name}"
        elif not torch.equal(value, before[name]):
            changed_components.add(component_of(name))
    expected = {component_of(p) for p in stage.trainable}
    if stage.image_mode == "fixed":  # fixed-resolution images have no feature rows to end with a newline
        expected.discard("image_newline")
    assert changed_components == expected


@pytest.mark.parametrize("number", [1, 2, 3])
def test_language_modelling_loss_falls_in_every_stage(chained_runs, number):
    _, result, _, records = chained_runs[number]
    if number > 1:
        # Stage 1 trains only the tower and projector in front of the frozen, untrained tiny language model, whose
        # loss stays near ln(vocabulary) = 8.32: its training loss moves by thousandths, less than the change from
        # one batch of 2 to the next (8.3107 vs 8.3080 with the 2026-12-07 tokenizer), so only the held-out loss
        # on the same documents, below, can show the stage's effect.
        assert result.last_loss < result.first_loss  # means of the first / last 5 training steps
    assert result.eval_after["val_loss"] < result.eval_before["val_loss"]  # the same held-out documents
    assert not any(r.get("skipped") for r in records)


def test_dpo_widens_the_margin_on_held_out_pairs(chained_runs):
    stage, result, _, records = chained_runs[4]
    assert result.eval_before["val_margin"] == 0.0  # the policy starts as the reference
    assert result.eval_before["val_loss"] == pytest.approx(math.log(2))
    assert stage.data.rejected == "mixed"
    assert result.eval_after["val_margin"] > 0.0
    assert result.eval_after["val_rejected_reward"] < result.eval_after["val_chosen_reward"]
    # The DPO loss falls on the same held-out pairs. (Training losses of 10 steps are not compared: each step's
    # pairs differ, and a batch of injected-error pairs sits near log 2 whatever the step.)
    assert result.eval_after["val_loss"] < result.eval_before["val_loss"]
    train = [r for r in records if r["kind"] == "train"]
    assert {"chosen_reward", "rejected_reward", "margin", "accuracy"} <= train[0].keys()
    assert train[0]["margin"] == pytest.approx(0.0, abs=1e-6)


def test_dpo_stops_before_one_epoch(chained_runs):
    stage, result, _, _ = chained_runs[4]
    assert result.steps * stage.global_batch_size < stage.data.num_samples


def test_stage_outputs_record_the_resolved_table(chained_runs):
    _, result, _, _ = chained_runs[2]
    saved = (result.output_dir / "stage.yaml").read_text()
    assert "image_mode: anyres" in saved and "learning_rates" in saved
    assert (result.output_dir / "metrics.jsonl").exists()
    if tensorboard_available():
        assert list((result.output_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("number", [1, 2, 3])
def test_held_out_loss_with_other_images_is_reported(chained_runs, number):
    """Every lm stage also scores the held-out text against other documents' images: the signal that shows a
    model ignoring its images (both losses equal) long before answers do."""
    _, result, _, _ = chained_runs[number]
    other = result.eval_after["val_loss_other_images"]
    assert math.isfinite(other) and other != result.eval_after["val_loss"]


def test_rotating_images_keeps_token_counts_or_declines():
    from training.loop import _with_images_rotated

    a, b, c = torch.zeros(5, 3, 4, 4), torch.ones(5, 3, 4, 4), torch.full((5, 3, 4, 4), 2.0)
    rotated = _with_images_rotated({"input_ids": 1, "pixel_values": [a, b, c], "image_sizes": [[8, 8]] * 3})
    assert [t[0, 0, 0, 0].item() for t in rotated["pixel_values"]] == [1.0, 2.0, 0.0] and rotated["input_ids"] == 1
    assert _with_images_rotated({"pixel_values": [a], "image_sizes": [[8, 8]]}) is None
    assert _with_images_rotated({"pixel_values": [a, b], "image_sizes": [[8, 8], [8, 16]]}) is None
    assert _with_images_rotated({"pixel_values": None, "image_sizes": None}) is None
