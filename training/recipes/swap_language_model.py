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

from text_backbone.weights_io import replace_folder, temporary_folder
from training.recipes.export_demo import load_source, source_folder

LANGUAGE_PREFIX = "language_model."
# Text-config fields that only say how fresh weights were drawn: they change no computation, so two language models
# that differ in them still fit the same vision side (e.g. a decoder started at initializer_range 0.06, which learned
# in-context look-up far faster: benchmarks/in_context_recall.py). The output keeps the donor's values.
INITIALISATION_ONLY = frozenset({"initializer_range"})


def _architecture(text_config) -> dict:
    return {k: v for k, v in text_config.to_dict().items() if k not in INITIALISATION_ONLY}


def swap_language_model(vision: Path, language: Path, output: Path) -> None:
    vision, language = source_folder(vision), source_folder(language)
    model, donor = load_source(vision), load_source(language)  # a checkpoint comes with its stage init's processor
    if model.processor.tokenizer.backend.to_str() != donor.processor.tokenizer.backend.to_str():
        raise SystemExit(f"{vision} and {language} use different tokenizers; a language model only fits the "
                         "tokenizer it was trained with")
    if _architecture(model.config.text_config) != _architecture(donor.config.text_config):
        raise SystemExit(f"the language models of {vision} and {language} differ in architecture")
    model.config.text_config = donor.config.text_config  # the config describes the language model it now holds
    donated = {k: v for k, v in donor.state_dict().items() if k.startswith(LANGUAGE_PREFIX)}
    model.load_state_dict(donated, strict=False)  # same text config, so every donated key exists here
    temp = temporary_folder(output)
    model.save_pretrained(temp)  # weights, config and the vision source's processor files
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
