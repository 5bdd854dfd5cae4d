"""MiniMax-VL-01 re-implementation: the model, its config and its processor.

    from minimax_vl import DEMO_MODEL, MiniMaxVL01
    model = MiniMaxVL01.from_pretrained(DEMO_MODEL)     # the small CPU model shipped with the package
    print(model.generate("chart.png", "Which bar is the tallest?"))

The classes are imported on first use, so `import minimax_vl` (and `minimax_vl.DEMO_MODEL`) does not import
torch. docs/ARCHITECTURE.md says what each package is for and how an image and a question become an answer.
"""
from __future__ import annotations

import importlib
from pathlib import Path

# The demo model trained by `training/recipes/demo_model.sh` and exported by `training.recipes.export_demo`
# (fp16 safetensors + processor files; docs/MODEL_CARD.md says what it can and cannot do).
DEMO_MODEL = str(Path(__file__).parent / "assets" / "demo_model")

# public name -> module that defines it
_LAZY = {
    "MiniMaxVL01": "minimax_vl.model",
    "MiniMaxVL01Config": "minimax_vl.config",
    "MiniMaxVL01Processor": "minimax_vl.processor",
}

__all__ = ["DEMO_MODEL", "MiniMaxVL01", "MiniMaxVL01Config", "MiniMaxVL01Processor"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'minimax_vl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
