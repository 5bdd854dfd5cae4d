"""`make demo` draws new images on each run; --seed repeats a run."""
import re

from minimax_vl.data.splits import SPLIT_SEED_RANGES
from minimax_vl.demos.data import DEMO_INDEX_SPAN, DEMO_START_INDEX
from minimax_vl.demos.run import demo_start_index, main


def test_start_index_is_a_function_of_the_seed_inside_the_test_split():
    starts = [demo_start_index(seed) for seed in range(50)]
    assert starts == [demo_start_index(seed) for seed in range(50)]
    assert len(set(starts)) == 50
    assert all(DEMO_START_INDEX <= s < DEMO_START_INDEX + DEMO_INDEX_SPAN for s in starts)
    assert DEMO_START_INDEX + DEMO_INDEX_SPAN + 100 < len(SPLIT_SEED_RANGES["test"])


def _questions(out: str) -> list[str]:
    return re.findall(r"Q: (.*)", out)


def test_seed_repeats_a_run_and_no_seed_draws_new_images(tmp_path, capsys):
    args = ["--images", "1", "--max-new-tokens", "2", "--out", str(tmp_path)]
    assert main(args + ["--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert main(args + ["--seed", "3"]) == 0
    again = capsys.readouterr().out
    assert f"Test-split images {demo_start_index(3)} to" in first and "--seed 3" in first
    assert _questions(first) and _questions(first) == _questions(again)

    assert main(args) == 0
    fresh = capsys.readouterr().out
    seed = int(re.search(r"\(seed (\d+);", fresh).group(1))
    assert f"Test-split images {demo_start_index(seed)} to" in fresh
    assert (tmp_path / "report.html").exists()
