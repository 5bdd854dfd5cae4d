"""Ships a trained run as the package's demo model: fp16 safetensors in the released layout + processor files.

    .venv/bin/python -m training.recipes.export_demo runs/demo                     # stage4/final -> package
    .venv/bin/python -m training.recipes.export_demo runs/demo/stage2/final --to /tmp/demo_model
    .venv/bin/python -m training.recipes.export_demo runs/reading/stage2/checkpoints/step_001400   # mid-stage

Writes into minimax_vl/assets/demo_model/ (what `minimax_vl.DEMO_MODEL` points at) through a temporary folder
and one rename, so a killed export never leaves a half-written model behind. Half precision halves the size
(the limit is 25 MB); the script checks that the fp16 copy answers a set of test questions exactly as the fp32
model does and prints how many agree.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import torch

import minimax_vl
from minimax_vl.data.samples import make_sample
from minimax_vl.demos.data import demo_generator_config
from minimax_vl.model import MiniMaxVL01
from minimax_vl.vqa import answer_records, questions_of
from text_backbone.weights_io import replace_folder, temporary_folder

SIZE_LIMIT_MB = 25


def source_folder(path: Path) -> Path:
    """A run folder (its last finished stage's final/), a model folder, or a trainer checkpoint (step_*/)."""
    if (path / "config.json").exists() or _is_trainer_checkpoint(path):
        return path
    for stage in (4, 3, 2, 1):
        final = path / f"stage{stage}" / "final"
        if (final / "config.json").exists():
            return final
    raise FileNotFoundError(f"{path} holds neither config.json nor stage*/final/config.json; train first with "
                            "`bash training/recipes/demo_model.sh`")


def _is_trainer_checkpoint(path: Path) -> bool:
    return (path / "model.safetensors").exists() and path.parent.name == "checkpoints"


def load_source(path: Path) -> MiniMaxVL01:
    """The model in fp32. A trainer checkpoint holds weights only: the architecture and processor are those of the
    model its stage started from (the stage's `init`, e.g. stage1/final), whose weights are then replaced."""
    if not _is_trainer_checkpoint(path):
        return MiniMaxVL01.from_pretrained(path, dtype=torch.float32)
    import yaml
    from safetensors.torch import load_file

    from training.stages import resolve_init

    stage_dir = path.parent.parent
    init = resolve_init(yaml.safe_load((stage_dir / "stage.yaml").read_text())["init"], stage_dir)
    model = MiniMaxVL01.from_pretrained(init, dtype=torch.float32)
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    return model


def answers(model: MiniMaxVL01, images: int) -> list[str]:
    config = demo_generator_config("val")
    records = [r for i in range(images) for r in questions_of(make_sample(config, i))]
    with torch.inference_mode():
        return [r.prediction for r in answer_records(model, records, progress=False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="run folder (uses its last stage's final/) or a model folder")
    parser.add_argument("--to", type=Path, default=Path(minimax_vl.DEMO_MODEL), help="destination folder")
    parser.add_argument("--check-images", type=int, default=20, help="val images for the fp16-vs-fp32 check")
    args = parser.parse_args(argv)

    source = source_folder(args.source)
    model = load_source(source)
    half = copy.deepcopy(model).half()
    temp = temporary_folder(args.to)
    half.save_pretrained(temp)
    size_mb = sum(f.stat().st_size for f in temp.glob("*.safetensors")) / 2**20
    if size_mb > SIZE_LIMIT_MB:
        shutil.rmtree(temp)
        print(f"weights are {size_mb:.1f} MB in fp16, over the {SIZE_LIMIT_MB} MB limit; choose a smaller preset",
              file=sys.stderr)
        return 1
    reloaded = MiniMaxVL01.from_pretrained(temp)  # fp16 on disk, fp32 on the CPU
    reference, shipped = answers(model, args.check_images), answers(reloaded, args.check_images)
    agree = sum(a == b for a, b in zip(reference, shipped))
    replace_folder(temp, args.to)
    print(f"exported {source} -> {args.to}: {size_mb:.1f} MB of fp16 weights; greedy answers equal to the fp32 "
          f"model's on {agree}/{len(reference)} val questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
