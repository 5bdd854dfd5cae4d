"""One model folder from two: the vision side (tower, projector, image newline) of one model and the language model
of another, e.g. a tower grounded and trained to read plus a decoder trained for hours on text-only reasoning.

    .venv/bin/python -m training.recipes.swap_language_model --vision runs/read3/grounding/final \\
        --language runs/reason_fresh/checkpoints/step_001200 --output runs/read4_init

Either source may be a model folder or a trainer checkpoint (`.../checkpoints/step_*`). Both must share the
architecture and the tokenizer (a language model's embedding rows are token ids); the script refuses otherwise.
The output (config and processor files of the vision source) is written atomically. Token grounding
(training/token_grounding.py) must run after the swap: it aligns image tokens with *this* language model's
input embeddings.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from training.recipes.export_demo import load_source, source_folder
from training.stages import resolve_init
from text_backbone.weights_io import replace_folder, temporary_folder

LANGUAGE_PREFIX = "language_model."


def processor_folder(path: Path) -> Path:
    """Where a model folder's or a trainer checkpoint's tokenizer lives (a checkpoint's stage `init`)."""
    if (path / "config.json").exists():
        return path
    import yaml

    stage_dir = path.parent.parent
    return Path(resolve_init(yaml.safe_load((stage_dir / "stage.yaml").read_text())["init"], stage_dir))


def swap_language_model(vision: Path, language: Path, output: Path) -> None:
    vision, language = source_folder(vision), source_folder(language)
    tokenizers = [(processor_folder(p) / "tokenizer.json").read_bytes() for p in (vision, language)]
    if tokenizers[0] != tokenizers[1]:
        raise SystemExit(f"{vision} and {language} use different tokenizers; a language model only fits the "
                         "tokenizer it was trained with")
    model = load_source(vision)
    donor = load_source(language)
    if model.config.text_config.to_dict() != donor.config.text_config.to_dict():
        raise SystemExit(f"the language models of {vision} and {language} differ in architecture")
    donated = {k: v for k, v in donor.state_dict().items() if k.startswith(LANGUAGE_PREFIX)}
    with torch.no_grad():
        missing = [k for k in donated if k not in model.state_dict()]
        if missing:
            raise SystemExit(f"{vision} has no parameters {missing[:3]}...")
        model.load_state_dict(donated, strict=False)
    processor = processor_folder(vision)
    temp = temporary_folder(output)
    model.save_pretrained(temp)
    for name in ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (processor / name).exists() and not (temp / name).exists():
            (temp / name).write_bytes((processor / name).read_bytes())
    replace_folder(temp, output)
    print(f"wrote {output}: vision from {vision}, {len(donated)} language-model tensors from {language}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vision", type=Path, required=True, help="model folder or checkpoint: tower and projector")
    parser.add_argument("--language", type=Path, required=True, help="model folder or checkpoint: language model")
    parser.add_argument("--output", type=Path, required=True, help="the model folder to write")
    args = parser.parse_args(argv)
    swap_language_model(args.vision, args.language, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
