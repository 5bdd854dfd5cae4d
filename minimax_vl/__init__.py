"""MiniMax-VL-01 re-implementation.

    from minimax_vl import DEMO_MODEL, MiniMaxVL01
    model = MiniMaxVL01.from_pretrained(DEMO_MODEL)     # the small CPU model shipped with the package
    print(model.generate("chart.png", "Which bar is the tallest?"))
"""
from pathlib import Path

# The demo model trained by `training/recipes/demo_model.sh` and exported by `training.recipes.export_demo`
# (fp16 safetensors + processor files; docs/MODEL_CARD.md says what it can and cannot do).
DEMO_MODEL = str(Path(__file__).parent / "assets" / "demo_model")


def __getattr__(name: str):
    # Lazy, so that `import minimax_vl` (and `minimax_vl.DEMO_MODEL`) does not import torch.
    if name == "MiniMaxVL01":
        from minimax_vl.model import MiniMaxVL01

        return MiniMaxVL01
    raise AttributeError(f"module 'minimax_vl' has no attribute {name!r}")
