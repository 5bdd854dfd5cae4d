"""training/recipes/tiny_cpu.sh: all four stages on the tiny preset; the loss falls in every stage."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # the whole recipe: several minutes on two shared cores
def test_tiny_cpu_recipe_runs_all_four_stages_and_every_loss_falls(tmp_path):
    env = {**os.environ, "RUN": str(tmp_path / "run"), "THREADS": "1"}
    done = subprocess.run(["bash", "training/recipes/tiny_cpu.sh"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for stage in (1, 2, 3, 4):
        summary = json.loads((tmp_path / "run" / f"stage{stage}" / "summary.json").read_text())
        assert summary["last_loss"] < summary["first_loss"], (stage, summary)
        assert (tmp_path / "run" / f"stage{stage}" / "final" / "config.json").exists()
        assert summary["eval_after"]["val_loss"] < summary["eval_before"]["val_loss"], (stage, summary)
        if stage == 4:
            assert summary["eval_after"]["val_margin"] > summary["eval_before"]["val_margin"] == 0.0
    assert "first loss" in done.stdout and "last loss" in done.stdout


@pytest.mark.slow  # four stages of the demo preset from the shipped model: ~4 minutes on two shared cores
def test_reading_recipe_continues_the_shipped_model_through_four_stages_and_resumes(tmp_path):
    """training/recipes/reading_model.sh at 2 steps a stage (2 DDP processes): token grounding and every stage
    write their final model; stage I trains the language model alone on the grounded image tokens; a second call
    with RESUME=1 keeps the finished stages instead of training them again."""
    env = {**os.environ, "RUN": str(tmp_path / "run"), "GROUNDING_STEPS": "2", "S1_STEPS": "2", "S2_STEPS": "2",
           "S3_STEPS": "2", "S4_STEPS": "2"}
    done = subprocess.run(["bash", "training/recipes/reading_model.sh"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "run" / "grounding" / "final" / "config.json").exists()
    for stage in (1, 2, 3, 4):
        assert (tmp_path / "run" / f"stage{stage}" / "final" / "config.json").exists()
    stage1 = yaml.safe_load((tmp_path / "run" / "stage1" / "stage.yaml").read_text())
    assert stage1["trainable"] == ["language_model"] and stage1["init"].endswith("grounding/final")
    stage2 = (tmp_path / "run" / "stage2" / "stage.yaml").read_text()
    assert "read_first: true" in stage2 and "reasoning" in stage2
    again = subprocess.run(["bash", "training/recipes/reading_model.sh"], cwd=REPO, env={**env, "RESUME": "1"},
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("already finished") == 5, again.stdout[-2000:]


@pytest.mark.slow  # stages II-IV at 2 steps each with 2 DDP processes: ~3 minutes on two shared cores
def test_reading_recipe_continues_a_finished_model_on_new_samples(tmp_path):
    """CONTINUE=MODEL takes stages 0b and I as done (MODEL is their final model) and trains II-IV from it, on the
    samples from FIRST_SAMPLE on, with DRILL's question types drilled in stage II; a CONTINUE that is not a model
    folder is refused before anything trains."""
    env = {**os.environ, "RUN": str(tmp_path / "run"), "CONTINUE": "minimax_vl/assets/demo_model",
           "FIRST_SAMPLE": "30000", "S2_STEPS": "2", "S3_STEPS": "2", "S4_STEPS": "2", "FACTS": "true",
           "WORKED_STEPS": "true", "DRILL": "intersection largest_slice", "DRILL_WEIGHT": "2"}
    done = subprocess.run(["bash", "training/recipes/reading_model.sh"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("already finished") == 2  # 0b and I
    shipped = (REPO / "minimax_vl/assets/demo_model/model.safetensors").read_bytes()
    assert (tmp_path / "run" / "stage1" / "final" / "model.safetensors").read_bytes() == shipped
    stage2 = yaml.safe_load((tmp_path / "run" / "stage2" / "stage.yaml").read_text())
    assert stage2["init"].endswith("stage1/final") and stage2["data"]["first_sample"] == 30000
    assert stage2["data"]["question_types"] == ["intersection", "largest_slice"]
    assert ["drill", 2] in stage2["data"]["mix"] and stage2["data"]["worked_steps"] is True
    assert (tmp_path / "run" / "stage4" / "final" / "config.json").exists()
    refused = subprocess.run(["bash", "training/recipes/reading_model.sh"], cwd=REPO,
                             env={**env, "RUN": str(tmp_path / "other"), "CONTINUE": str(tmp_path)},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "not a model folder" in refused.stderr
    assert not (tmp_path / "other" / "stage2").exists()
