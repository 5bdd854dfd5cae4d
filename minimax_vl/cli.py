"""The `minimax-vl` command.

    minimax-vl ask IMAGE "question" [--model DIR]    stream an answer about an image
    minimax-vl chat IMAGE [--model DIR]              multi-turn chat; the image is encoded once
    minimax-vl eval --model DIR --data DIR           relaxed accuracy on a VQA test set (table, JSON, chart)
    minimax-vl eval --model DIR --generate 200       ... on freshly generated test-split charts and maps
    minimax-vl info [--model DIR | --preset NAME]    configuration and parameter counts
    minimax-vl serve [--model DIR] [--port 7860]     web demo (Gradio) on http://127.0.0.1:7860

Without --model, commands use the shipped demo model when there is one, else a random `tiny` model.
A bad image, file, model folder, data file or flag ends the command with one line on stderr and exit code 1
(2 for flags); --debug shows the full traceback instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class CLIError(Exception):
    """A problem the user can fix (a path, a flag, a file); printed as one line without a traceback."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """The project's own errors, which already say what is wrong and how to fix it; plus missing or unreadable
    files. Anything else is a bug and keeps its traceback."""
    from minimax_vl.data.formats import DataFormatError
    from text_backbone.weights_io import CheckpointError
    from vision.image_io import ImageLoadError

    return CLIError, CheckpointError, ImageLoadError, DataFormatError, OSError


def _load(args):
    from minimax_vl.demos.run import load_demo_model

    try:
        model, what = load_demo_model(args.model)
    except (OSError, ValueError, TypeError, KeyError) as error:
        # A folder without config.json, a config with unknown or invalid fields, weights that do not fit:
        # the error names the problem; say which folder it was about.
        raise CLIError(f"cannot load the model from {args.model}: {error}") from error
    print(f"[minimax-vl] using {what}", file=sys.stderr)
    return model, what


def _settings(args) -> dict:
    settings = {"max_new_tokens": args.max_new_tokens, "show_reading": getattr(args, "show_reading", False)}
    if args.temperature > 0:
        settings.update(do_sample=True, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    return settings


def cmd_ask(args) -> int:
    model, _ = _load(args)
    for piece in model.stream(args.image, args.question, **_settings(args)):
        print(piece, end="", flush=True)
    print()
    return 0


def cmd_chat(args) -> int:
    from minimax_vl.engine import VLChat

    model, _ = _load(args)
    chat = VLChat(model, args.image, **_settings(args))
    print("Ask about the image; an empty line or Ctrl-D ends the chat.")
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            break
        if not question:
            break
        print("model> ", end="")
        for piece in chat.ask(question, stream=True):
            print(piece, end="", flush=True)
        print()
    return 0


def cmd_eval(args) -> int:
    from minimax_vl.data.scoring import write_report
    from minimax_vl.vqa import questions_of

    if args.data:
        from minimax_vl.data.formats import read_dataset

        if not Path(args.data).exists():
            raise CLIError(f"no such data file or folder: {args.data!r}; check the path")
        samples = read_dataset(args.data)
    else:
        from minimax_vl.data.samples import GeneratorConfig, make_sample

        config = GeneratorConfig(split=args.split, sample_kinds=(("vqa", 1.0),), difficulty=args.difficulty,
                                 image_size=args.image_size, font_scale=args.font_scale)
        samples = [make_sample(config, i) for i in range(args.start, args.start + args.generate)]
    if args.reasoning_only and not any(s.meta.get("reading_fields") for s in samples):
        raise CLIError("--reasoning-only needs generated images (they know their true transcription); drop --data")
    records = [r for s in samples for r in questions_of(s)]
    if not records:
        raise CLIError("no single-image question/answer turns found in the data")
    model, _ = _load(args)
    if args.reasoning_only:  # the language model alone: no image is seen
        report = {**_reasoning_scores(model, samples), "reasoning_only": True}
    else:
        report = _image_report(args, model, records, samples)
    paths = write_report(report, args.out)
    if args.reasoning_only:
        print("(reasoning only: every answer above was given from the true transcription, without the image)")
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def _reasoning_scores(model, samples) -> dict:
    """Each generated question answered from its image's true transcription instead of the image."""
    from minimax_vl.data.scoring import score_predictions
    from minimax_vl.vqa import reason_from_true_readings

    return score_predictions([r.as_score_record() for r in reason_from_true_readings(model, samples)])


def _image_report(args, model, records, samples) -> dict:
    """Accuracy from the images, the reading probe and (unless --no-reasoning) the reasoning check beside it."""
    from minimax_vl.data.scoring import score_predictions
    from minimax_vl.vqa import answer_records, read_images, reading_records, reading_report

    answered = list(answer_records(model, records, max_new_tokens=args.max_new_tokens))
    report = score_predictions([r.as_score_record() for r in answered])
    to_read = reading_records(samples)[: args.probe_images] if args.probe else []
    if to_read:  # generated images know their transcription; LLaVA files do not
        read = read_images(model, to_read, max_new_tokens=args.max_new_tokens)
        report["reading"] = {**reading_report(read), "records": [
            {"id": r.sample_id, "kind": r.kind, "prediction": r.prediction, "correct": r.correct,
             "fields": len(r.fields)} for r in read]}
    if args.reasoning and any(s.meta.get("reading_fields") for s in samples):
        given = _reasoning_scores(model, samples)
        report["reasoning"] = {k: given[k] for k in ("overall", "per_kind", "per_type")}
    return report


def cmd_info(args) -> int:
    import torch

    from minimax_vl.config import MiniMaxVL01Config
    from minimax_vl.model import MiniMaxVL01, parameter_counts

    try:
        config = MiniMaxVL01Config.load(args.model) if args.model else MiniMaxVL01Config.from_preset(args.preset)
    except (OSError, ValueError, TypeError) as error:
        raise CLIError(f"cannot read the configuration of {args.model or args.preset!r}: {error}") from error
    with torch.device("meta"):
        model = MiniMaxVL01(config)
    counts = parameter_counts(model)
    for name, count in counts.items():
        print(f"{name:24s} {count:>18,d}")
    text = config.text_config
    print(f"text: {text.num_hidden_layers} layers (softmax at {text.softmax_layer_indices}), hidden {text.hidden_size}, "
          f"{text.num_local_experts} experts top-{text.num_experts_per_tok}")
    vision = config.vision_config
    print(f"vision: {vision.image_size}px tiles, patch {vision.patch_size}, width {vision.hidden_size}, "
          f"depth {vision.num_hidden_layers}")
    return 0


def cmd_serve(args) -> int:
    try:
        from minimax_vl.demos.web import serve
    except ImportError as error:
        if (error.name or "").split(".")[0] != "gradio":
            raise
        print('minimax-vl serve needs Gradio: pip install -e ".[demo]"', file=sys.stderr)
        return 2
    model, what = _load(args)
    serve(model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, share=args.share,
          description=what, **_settings(args))
    return 0


def _number(kind, low, high=None, *, low_open: bool = False):
    """An argparse type: a number in [low, high] ((low, high] with low_open), else a usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value < low or (low_open and value == low) or (high is not None and value > high):
            bounds = f"{'(' if low_open else '['}{low}, {'inf)' if high is None else f'{high}]'}"
            raise argparse.ArgumentTypeError(f"{text} is outside {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def build_parser() -> argparse.ArgumentParser:
    from minimax_vl.answers import MAX_REPLY_TOKENS
    from minimax_vl.config import PRESETS
    from minimax_vl.data.splits import SPLITS
    from minimax_vl.demos.data import DEMO_DIFFICULTY, DEMO_FONT_SCALE, DEMO_IMAGE_SIZE

    parser = argparse.ArgumentParser(prog="minimax-vl", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback when a command fails")
    sub = parser.add_subparsers(dest="command", required=True)
    positive = _number(int, 1)

    def add_parser(name, **kwargs):
        p = sub.add_parser(name, **kwargs)
        # SUPPRESS: without the flag here, the top-level --debug keeps its value.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback when the command fails")
        return p

    def with_model(p):
        p.add_argument("--model", help="checkpoint folder (default: shipped demo model, else random tiny)")
        p.add_argument("--max-new-tokens", type=positive, default=MAX_REPLY_TOKENS,
                       help=f"reply length cap (default {MAX_REPLY_TOKENS}: room for the transcription a "
                            "read-first model writes before its answer)")
        p.add_argument("--show-reading", action="store_true",
                       help="also print what the model read in the image before its answer")
        p.add_argument("--temperature", type=_number(float, 0.0), default=0.0, help="0 = greedy (default)")
        p.add_argument("--top-p", type=_number(float, 0.0, 1.0, low_open=True), default=1.0)
        p.add_argument("--seed", type=int, default=None)
        return p

    ask = with_model(add_parser("ask", help="answer one question about an image (streamed)"))
    ask.add_argument("image", help="image file (PNG, JPEG, GIF, ...)")
    ask.add_argument("question")
    ask.set_defaults(func=cmd_ask)

    chat = with_model(add_parser("chat", help="multi-turn chat about one image"))
    chat.add_argument("image")
    chat.set_defaults(func=cmd_chat)

    ev = with_model(add_parser("eval", help="relaxed accuracy on a VQA test set"))
    ev.add_argument("--data", help="dataset folder or JSON file in LLaVA / messages format")
    ev.add_argument("--generate", type=positive, default=100, help="without --data: generate this many test images")
    ev.add_argument("--split", default="test", choices=SPLITS, help="generator split for --generate (default test)")
    ev.add_argument("--start", type=_number(int, 0), default=0)
    ev.add_argument("--difficulty", default=DEMO_DIFFICULTY, choices=["easy", "normal"],
                    help=f"generator style for --generate (default {DEMO_DIFFICULTY!r}, the demo model's)")
    ev.add_argument("--image-size", type=positive, default=DEMO_IMAGE_SIZE,
                    help=f"long side of generated images (default {DEMO_IMAGE_SIZE}, the demo model's)")
    ev.add_argument("--font-scale", type=_number(float, 0.0, low_open=True), default=DEMO_FONT_SCALE,
                    help=f"label size relative to the style's (default {DEMO_FONT_SCALE}, the demo model's)")
    ev.add_argument("--out", default="outputs/eval", help="folder for report.json and accuracy.png")
    ev.add_argument("--no-probe", dest="probe", action="store_false",
                    help="skip the reading probe (generated images transcribed once each, fields scored exactly)")
    ev.add_argument("--probe-images", type=int, default=100,
                    help="how many of the generated images the reading probe reads (default 100)")
    ev.add_argument("--no-reasoning", dest="reasoning", action="store_false",
                    help="skip the text-only reasoning check (each question answered from the true transcription "
                         "instead of the image; separates reading errors from reasoning errors)")
    ev.add_argument("--reasoning-only", action="store_true",
                    help="only the reasoning check: no image questions, no probe (minutes faster; judges a "
                         "language model trained on text alone, e.g. training/recipes/reasoning_text.sh)")
    ev.set_defaults(func=cmd_eval)

    info = add_parser("info", help="configuration and parameter counts")
    info.add_argument("--model")
    info.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    info.set_defaults(func=cmd_info)

    serve = with_model(add_parser("serve", help="web demo: generated charts and maps or uploads, streamed answers"))
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=_number(int, 1, 65535), default=7860)
    serve.add_argument("--max-upload-mb", type=_number(float, 0.0, low_open=True), default=10, help="largest image file accepted (default 10)")
    serve.add_argument("--share", action="store_true", help="also ask Gradio for a temporary public link")
    serve.set_defaults(func=cmd_serve)
    return parser


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines() or [type(error).__name__]
    more = f" ({len(lines) - 1} more lines with --debug)" if len(lines) > 1 else ""
    return lines[0] + more


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand. Flag errors exit with argparse's usage message and code 2; the project's own errors
    print one line on stderr and return 1 (with --debug they propagate with their traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as error:
        if args.debug:
            raise
        print(f"minimax-vl {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
