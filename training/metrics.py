"""Where training metrics go: always `metrics.jsonl` in the output folder, TensorBoard when it is installed.

    log = MetricsLog(output_dir, enabled=accelerator.is_main_process, resume_step=0)
    log.write({"step": 1, "loss": 8.3, ...})            # one JSON object per line
    read_metrics(output_dir / "metrics.jsonl")        # -> list of dicts (train and eval records)

Records carry "kind": "train" or "eval". When a run resumes from step s, records after s (written by the
interrupted run, which will recompute them) are dropped first, so the file is one history, step after step.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from text_backbone.weights_io import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill: everything before it is intact
                break
    return records


class MetricsLog:
    def __init__(self, output_dir: Path, enabled: bool, resume_step: int | None = None):
        self.path = output_dir / METRICS_FILE
        self.enabled = enabled
        if enabled and resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        elif enabled and resume_step is None and self.path.exists():
            self.path.unlink()  # a fresh run (the caller refused to overwrite checkpoints already)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()


def scalars(record: dict[str, Any], prefix: str) -> dict[str, float]:
    """Flattens a metrics record into TensorBoard scalars ("train/loss", "train/lr/vision_tower", ...)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in ("step", "kind"):
            continue
        if isinstance(value, dict):
            out.update(scalars(value, f"{prefix}/{key}"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}/{key}"] = float(value)
    return out
