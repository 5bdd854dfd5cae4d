"""The generated data the shipped demo model was trained on, so demos ask it the same kind of images.

`training/recipes/demo_model.sh` trains on `difficulty=easy`, 192-px images (two 96-px tiles per side) and labels
drawn 1.3x the easy style's size; the demos, `minimax-vl serve` and the model card's evaluation use these values.
Sample seeds come from the split: "test" and "heldout" never overlap the training seeds.
"""
from __future__ import annotations

from minimax_vl.data.samples import GeneratorConfig

DEMO_IMAGE_SIZE = 192
DEMO_DIFFICULTY = "easy"
DEMO_FONT_SCALE = 1.3
DEMO_START_INDEX = 50_000  # first test-split index the demos show (evaluation starts at 0)
DEMO_INDEX_SPAN = 900_000  # `make demo` starts somewhere in [DEMO_START_INDEX, + this); the test split holds 1,000,000


def demo_generator_config(split: str = "test", image_kinds: tuple[str, ...] = ("chart", "map"),
                          max_questions: int = 4) -> GeneratorConfig:
    """Short-answer question samples drawn like the demo model's training images."""
    return GeneratorConfig(split=split, image_kinds=image_kinds, sample_kinds=(("vqa", 1.0),),
                           image_size=DEMO_IMAGE_SIZE, difficulty=DEMO_DIFFICULTY, font_scale=DEMO_FONT_SCALE,
                           max_questions=max_questions)
