"""benchmarks/reading_sweep.py end to end at toy size: two geometries on the tiny preset, two minute marks of a
fraction of a second, two probe images; the table and sweep.json hold what the sweep measured."""
from __future__ import annotations

import json

import pytest

from minimax_vl.config import MiniMaxVL01Config


@pytest.fixture(scope="module")
def sweep_module(load_benchmark):
    return load_benchmark("reading_sweep")


def _expected_tokens(tile: int, patch: int, side: int) -> int:
    """Square image filling a side x side grid: thumbnail g^2, then 2-D grid rows each with a newline token."""
    g = tile // patch
    return g * g + (side * g) * (side * g + 1)


@pytest.fixture(scope="module")
def toy_sweep(sweep_module, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    geometries = [sweep_module.Geometry("coarse", 128, 56, 14, 2, 1.3),
                  sweep_module.Geometry("fine", 128, 56, 8, 2, 1.3)]
    settings = sweep_module.SweepSettings(preset="tiny", minutes=0.004, marks=2, images=2, batch_size=2,
                                          eval_samples=2, max_new_tokens=12)
    lines: list[str] = []
    results = sweep_module.sweep(geometries, settings, out, log=lines.append)
    return results, out, lines, settings


def test_every_candidate_has_its_probe_entries_at_every_mark(toy_sweep):
    results, out, lines, settings = toy_sweep
    assert json.loads((out / "sweep.json").read_text()) == results  # what was returned is what was written
    assert [c["name"] for c in results["candidates"]] == ["coarse", "fine"]
    assert results["settings"]["mark_minutes"] == pytest.approx([0.002, 0.004])
    assert len(lines) == 4  # one progress line per candidate and mark
    for candidate in results["candidates"]:
        marks = candidate["marks"]
        assert [m["minutes"] for m in marks] == pytest.approx([0.002, 0.004])
        for mark in marks:
            assert mark["train_minutes"] >= mark["minutes"]  # each segment ran until its budget was spent
            assert mark["steps"] >= 1 and mark["samples"] == mark["steps"] * settings.batch_size
            assert mark["s_per_step"] > 0 and mark["val_loss"] > 0
            accuracy = mark["probe"]["accuracy"]
            assert 0.0 <= accuracy["overall"] <= 1.0 and set(accuracy) - {"overall"} <= {"chart", "map"}
            assert mark["probe"]["fields"] > 0
        assert marks[1]["steps"] >= marks[0]["steps"]  # the second mark continued the first run
        readings = candidate["last_readings"]
        assert len(readings) == 2 and all(isinstance(r["prediction"], str) for r in readings)
        run = out / candidate["name"] / "train"
        assert json.loads((run / "summary.json").read_text())["steps"] == marks[-1]["steps"]


def test_token_counts_follow_the_geometry(toy_sweep):
    results = toy_sweep[0]
    coarse, fine = results["candidates"]
    assert coarse["image_tokens"] == _expected_tokens(56, 14, 2) == 88
    assert fine["image_tokens"] == _expected_tokens(56, 8, 2) == 259
    assert (coarse["tiles"], fine["tiles"]) == (5, 5)
    # The 128-px image is shrunk onto the 112-px canvas; finer patches make its labels more patches tall.
    assert coarse["canvas"] == fine["canvas"] == [112, 112]
    assert fine["label_patches"] > coarse["label_patches"] > 0
    # Only the patch embedding (3 p^2 per channel, no bias) and the position table (CLS + g^2 rows) differ.
    width = MiniMaxVL01Config.from_preset("tiny").vision_config.hidden_size
    tower = {p: width * (3 * p * p + 1 + (56 // p) ** 2) for p in (14, 8)}
    assert coarse["parameters"] - fine["parameters"] == tower[14] - tower[8]


def test_the_table_puts_candidates_side_by_side(sweep_module, toy_sweep):
    results = toy_sweep[0]
    table = sweep_module.format_table(results)
    head, _, coarse, fine, *_ = table.splitlines()
    assert "@0.002m" in head and "@0.004m" in head and "tokens" in head and "s/step" in head
    assert coarse.split()[:2] == ["coarse", "128"] and " 88 " in coarse
    assert fine.split()[0] == "fine" and " 259 " in fine
    for row, candidate in ((coarse, results["candidates"][0]), (fine, results["candidates"][1])):
        probes = [f"{m['probe']['accuracy']['overall'] * 100:.1f}%" for m in candidate["marks"]]
        assert all(p in row for p in probes)
        assert str(candidate["marks"][-1]["samples"]) in row.split()


def test_the_demo_candidate_is_the_shipped_geometry(sweep_module):
    demo = sweep_module.CANDIDATES["demo"]
    assert (demo.image_size, demo.tile_size, demo.patch_size, demo.max_tiles_per_side, demo.font_scale) == \
        (192, 96, 16, 2, 1.3)
    assert demo.model_config("demo").to_dict() == MiniMaxVL01Config.from_preset("demo").to_dict()
    assert len({g.model_config("demo").vision_config for g in sweep_module.CANDIDATES.values()}) >= 5


def test_candidates_whose_labels_do_not_fit_are_refused_before_training(sweep_module, tmp_path):
    too_big = sweep_module.Geometry("font-1.6", 192, 96, 16, 2, 1.6)  # map layouts do not fit at this scale
    with pytest.raises(ValueError, match="font-1.6.*no layout that fits"):
        sweep_module.sweep([too_big], sweep_module.SweepSettings(preset="tiny", images=2), tmp_path)
    assert not (tmp_path / "font-1.6").exists()
    with pytest.raises(SystemExit, match="unknown candidate"):
        sweep_module.parse_candidates("demo,patch-13")
