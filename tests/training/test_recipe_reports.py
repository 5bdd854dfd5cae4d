"""Reports over a staged run folder: the Markdown training table and the learning curve's time axis."""
import json

import yaml

from training.recipes.learning_curve import points
from training.recipes.run_table import table


def _stage(run, number, steps, seconds, **summary):
    folder = run / f"stage{number}"
    (folder / "checkpoints" / f"step_{steps // 2:06d}").mkdir(parents=True)
    (folder / "checkpoints" / f"step_{steps // 2:06d}" / "model.safetensors").write_bytes(b"")
    (folder / "final").mkdir()
    (folder / "final" / "config.json").write_text("{}")
    (folder / "stage.yaml").write_text(yaml.safe_dump({
        "name": f"s{number}", "global_batch_size": 16, "data": {"mix": [["vqa", 20], ["text_only", 1]]},
        "learning_rates": {"vision_tower": 1e-4, "multi_modal_projector": 3e-4, "language_model": 1e-3}}))
    records = [{"kind": "train", "step": s, "train_seconds": seconds * s / steps} for s in range(1, steps + 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "summary.json").write_text(json.dumps({"steps": steps, "first_loss": 3.0, "last_loss": 1.0, **summary}))


def test_table_and_curve_points_add_up_the_stages(tmp_path):
    (tmp_path / "stage0").mkdir()
    (tmp_path / "stage0" / "summary.json").write_text(json.dumps(
        {"steps": 10, "train_seconds": 60.0, "val_text_word_acc": 0.5, "val_text_char_acc": 0.75}))
    _stage(tmp_path, 1, 10, 120.0, eval_before={"val_loss": 8.0}, eval_after={"val_loss": 2.0, "val_loss_other_images": 3.0})
    _stage(tmp_path, 2, 20, 240.0, eval_before={"val_loss": 2.5}, eval_after={"val_loss": 1.5})
    (tmp_path / "stage2" / "checkpoints" / "step_000020").mkdir()  # the last checkpoint holds final/'s weights
    (tmp_path / "stage2" / "checkpoints" / "step_000020" / "model.safetensors").write_bytes(b"")
    text = table(tmp_path)
    assert "| 1 s1 | 10 × 16 | 2.0 | vqa 20 : text_only 1 | 0.0001 / 0.0003 / 0.001 | 3.000 → 1.000 | 8.00 → 2.00 (3.00) |" in text
    assert "word 50%, character 75%" in text and "| total | | 7.0 |" in text
    found = points(tmp_path)
    assert [(p["stage"], p["step"], p["kind"]) for p in found] == [(1, 5, "checkpoint"), (1, 10, "final"),
                                                                     (2, 10, "checkpoint"), (2, 20, "final")]
    # minutes: stage 0 (1) + stage 1's seconds at the step; stage 2 starts after stage 1's 2 minutes
    assert [round(p["minutes"], 6) for p in found] == [2.0, 3.0, 5.0, 7.0]


def test_a_run_from_a_base_model_counts_on_from_the_base_minutes(tmp_path):
    """reading_model.sh continues from an earlier model: it comes first, and every later point adds its minutes."""
    _stage(tmp_path, 1, 10, 120.0, eval_before={"val_loss": 8.0}, eval_after={"val_loss": 2.0})
    base = tmp_path / "base"
    found = points(tmp_path, base, base_minutes=70.0)
    assert [(p["stage"], p["kind"], p["path"]) for p in found][0] == (0, "final", str(base))
    assert [round(p["minutes"], 6) for p in found] == [70.0, 71.0, 72.0]


def test_token_grounding_is_a_point_and_a_row_of_its_own(tmp_path):
    """reading_model.sh grounds image tokens (grounding/) before stage I: its minutes count, and it is evaluated."""
    (tmp_path / "grounding").mkdir()
    (tmp_path / "grounding" / "summary.json").write_text(json.dumps(
        {"steps": 800, "train_seconds": 300.0, "val_token_acc": 0.7}))
    _stage(tmp_path, 1, 10, 120.0, eval_before={"val_loss": 8.0}, eval_after={"val_loss": 2.0})
    found = points(tmp_path, tmp_path / "base", base_minutes=70.0)
    assert [(p["stage"], p["step"], p["kind"]) for p in found][:2] == [(0, 0, "final"), (0, 800, "final")]
    assert found[1]["path"] == str(tmp_path / "grounding" / "final")
    assert [round(p["minutes"], 6) for p in found] == [70.0, 75.0, 76.0, 77.0]
    text = table(tmp_path)
    assert "| 0b token grounding | 800 × 16 images | 5.0 |" in text and "nearest their token: 70% |" in text
    assert "| total | | 7.0 |" in text
