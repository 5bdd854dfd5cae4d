"""One model folder from two: the vision side (tower, projector, image newline) of one model and the language model
of another, e.g. a tower grounded and trained to read plus a decoder trained for hours on text-only reasoning.

    .venv/bin/python -m training.recipes.swap_language_model --vision runs/read3/grounding/final \\
        --language runs/reason_fresh/checkpoints/step_001200 --output runs/read4_init

Either source may be a model folder or a trainer checkpoint (`.../checkpoints/step_*`). Both must share the
architecture and the tokenizer (a language model's embedding rows are token ids); the script refuses otherwise,
unless `--new-tokenizer` says the output is to speak the language model's tokenizer (e.g. one whose numbers keep
their first digit with the space before it: training.data.tokenizer --digits attached). The vision side then
feeds a decoder whose token ids it never saw, so its reading must be retrained after the grounding, and the
special tokens (`<image>` above all) must keep their ids.
The output (config and processor files of the vision source) is written atomically. Token grounding
(training/token_grounding.py) must run after the swap: it aligns image tokens with *this* language model's
input embeddings.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minimax_vl.processor import MiniMaxVL01Processor
from text_backbone.weights_io import replace_folder, temporary_folder
from training.recipes.export_demo import load_source, source_folder

LANGUAGE_PREFIX = "language_model."
# Text-config fields that only say how fresh weights were drawn: they change no computation, so two language models
# that differ in them still fit the same vision side (e.g. a decoder started at initializer_range 0.06, which learned
# in-context look-up far faster: benchmarks/in_context_recall.py). The output keeps the donor's values.
INITIALISATION_ONLY = frozenset({"initializer_range"})


def _architecture(text_config) -> dict:
    return {k: v for k, v in text_config.to_dict().items() if k not in INITIALISATION_ONLY}


def swap_language_model(vision: Path, language: Path, output: Path, new_tokenizer: bool = False) -> None:
    vision, language = source_folder(vision), source_folder(language)
    model, donor = load_source(vision), load_source(language)  # a checkpoint comes with its stage init's processor
    if model.processor.tokenizer.backend.to_str() != donor.processor.tokenizer.backend.to_str():
        if not new_tokenizer:
            raise SystemExit(f"{vision} and {language} use different tokenizers; a language model only fits the "
                             "tokenizer it was trained with (--new-tokenizer: the output takes the language "
                             "model's, and its reading must be retrained)")
        if donor.processor.tokenizer.image_token_id != model.config.image_token_index:
            raise SystemExit(f"{language}'s tokenizer gives <image> the id {donor.processor.tokenizer.image_token_id}"
                             f", {vision}'s config {model.config.image_token_index}; the special tokens must keep "
                             "their ids")
        # The donor's tokenizer with the vision source's image settings.
        model.processor = MiniMaxVL01Processor(model.processor.image_processor, donor.processor.tokenizer)
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
    parser.add_argument("--new-tokenizer", action="store_true",
                        help="accept a language model trained with another tokenizer; the output uses that one")
    args = parser.parse_args(argv)
    swap_language_model(args.vision, args.language, args.output, args.new_tokenizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
