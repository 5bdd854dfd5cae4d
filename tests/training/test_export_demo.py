"""training/recipes/export_demo.py: what it can ship from (a run, a model folder, a trainer checkpoint)."""
from __future__ import annotations

import torch
import yaml
from safetensors.torch import save_file

from minimax_vl.model import MiniMaxVL01
from training.recipes.export_demo import load_source, source_folder


def test_a_trainer_checkpoint_ships_with_its_stage_inits_architecture_and_processor(tmp_path):
    start = MiniMaxVL01.from_preset("tiny", seed=0)
    start.save_pretrained(tmp_path / "stage1" / "final")
    stage = tmp_path / "stage2"
    checkpoint = stage / "checkpoints" / "step_000010"
    checkpoint.mkdir(parents=True)
    (stage / "stage.yaml").write_text(yaml.safe_dump({"stage": 2, "init": "stage1/final"}))
    trained = {k: v + 0.5 for k, v in MiniMaxVL01.from_preset("tiny", seed=0).state_dict().items()}
    save_file({k: v.contiguous() for k, v in trained.items()}, str(checkpoint / "model.safetensors"))

    assert source_folder(checkpoint) == checkpoint
    model = load_source(checkpoint)
    assert model.processor is not None
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0)
    assert source_folder(tmp_path) == tmp_path / "stage1" / "final"  # a run: its last finished stage


def test_stage_table_records_the_init_a_run_was_given(tmp_path):
    """`--init DIR` overrides the stage YAML's init; stage.yaml must say so, or a checkpoint cannot be exported."""
    from training.loop import RunOptions, train
    from training.stages import load_stage

    start = tmp_path / "start"
    MiniMaxVL01.from_preset("tiny", seed=0).save_pretrained(start)
    stage = load_stage(2, ["max_steps=1", "global_batch_size=2", "micro_batch_size=2", "max_length=192",
                           "data.image_size=128", "eval.samples=2", "checkpoint.every=1"])
    train(stage, RunOptions(output_dir=tmp_path / "stage2", init=str(start), progress=False))
    recorded = yaml.safe_load((tmp_path / "stage2" / "stage.yaml").read_text())["init"]
    assert recorded == str(start.resolve())
    checkpoint = tmp_path / "stage2" / "checkpoints" / "step_000001"
    assert load_source(checkpoint).processor is not None
