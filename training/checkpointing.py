"""Crash-safe training checkpoints: `accelerator.save_state` into a temporary folder, then one atomic rename.

    output/checkpoints/step_000040/      model, optimizer, scheduler, RNG states (accelerate's files)
                       step_000040/trainer_state.json   step, samples consumed, counters  (written last)
                       .tmp-step_000060/                 a save in progress, or one a crash interrupted

A folder named `step_*` is therefore always complete: a process killed mid-save leaves only a `.tmp-*` folder,
which `latest_checkpoint` ignores and `remove_stale_temporaries` deletes. After each save the oldest complete
checkpoints beyond `keep` are removed.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from text_backbone.weights_io import replace_folder, write_json

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_TEMP_PREFIX = ".tmp-"


def checkpoint_root(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))
             and (p / STATE_FILE).exists()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: Path) -> Path | None:
    found = complete_checkpoints(root)
    return found[-1] if found else None


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Deletes `.tmp-*` folders that interrupted saves left behind (call on the main process before training)."""
    removed = []
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(_TEMP_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def save_checkpoint(accelerator, root: Path, step: int, trainer_state: dict[str, Any], keep: int) -> Path:
    """Saves the accelerator's registered objects (model, optimizer, scheduler, RNG) and `trainer_state`;
    must be called on every process. Returns the final folder."""
    final = root / f"step_{step:06d}"
    temp = root / f"{_TEMP_PREFIX}{final.name}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temp))  # each process writes its own RNG state; the main one the rest
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(temp / STATE_FILE, trainer_state)  # last file written: marks the save as complete
        replace_folder(temp, final)  # fsyncs; replaces an older copy of the same step (a re-run after a resume)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint ({STATE_FILE} is missing); resume "
                                "from the folder `latest_checkpoint` returns, or pass --resume without a path")
    return json.loads(path.read_text())
