"""benchmarks/worked_steps_probe.py: the marks it counts in intersection scans, on replies written by hand, and a
run of the script on the shipped model (two scenes)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "worked_steps_probe.py"
QUESTION = "What is at the corner of Elm St and Ruby Ave?"


@pytest.fixture(scope="module")
def probe(load_benchmark):
    return load_benchmark("worked_steps_probe")


@pytest.mark.parametrize("facts, marks", [
    # the form since the ninth session, right
    ("Elm St on Ruby Ave is. Cafe at Fir St and Ruby Ave; Gym at Elm St on Opal Ave; Mall at Elm St on Ruby Ave is Mall",
     {"on right": True, "is right": True, "first only": False}),
    # "on" on a street that is not asked, and the corner marked on the first entry
    ("Elm St on Ruby Ave is. Cafe at Fir St on Ruby Ave is Cafe; Gym at Elm St on Opal Ave; Mall at Elm St on Ruby Ave",
     {"on right": False, "is right": False, "first only": True}),
    # read13's form (marks after the corner), right
    ("Elm St and Ruby Ave. Cafe at Fir St and Ruby Ave; Gym at Elm St and Opal Ave on; Mall at Elm St and Ruby Ave on "
     "is Mall", {"on right": True, "is right": True, "first only": False}),
    ("", {"on right": False, "is right": False, "first only": False}),  # no scan at all
])
def test_intersection_marks(probe, facts, marks):
    assert probe.intersection_marks(QUESTION, f"Facts: {facts}\nAnswer: Mall") == marks


@pytest.mark.slow  # loads the shipped model and answers a few questions: ~20 s
def test_the_probe_runs_on_the_shipped_model():
    done = subprocess.run([sys.executable, str(SCRIPT), "minimax_vl/assets/demo_model", "--images", "2", "--show", "1",
                           "--threads", "1"], cwd=SCRIPT.parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "intersection from the true transcription" in done.stdout and "on right:" in done.stdout
