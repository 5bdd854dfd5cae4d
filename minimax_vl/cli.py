"""The `minimax-vl` command.

    minimax-vl ask IMAGE "question" [--model DIR]    stream an answer about an image
    minimax-vl chat IMAGE [--model DIR]              multi-turn chat; the image is encoded once
    minimax-vl eval --model DIR --data DIR           relaxed accuracy on a VQA test set (table, JSON, chart)
    minimax-vl eval --model DIR --generate 200       ... on freshly generated test-split charts and maps
    minimax-vl info [--model DIR | --preset NAME]    configuration and parameter counts
    minimax-vl serve [--model DIR] [--port 7860]     web demo (Gradio) on http://127.0.0.1:7860

Without --model, commands use the shipped demo model when there is one, else a random `tiny` model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load(args):
    from minimax_vl.demos.run import load_demo_model

    model, what = load_demo_model(args.model)
    print(f"[minimax-vl] using {what}", file=sys.stderr)
    return model


def _settings(args) -> dict:
    settings = {"max_new_tokens": args.max_new_tokens, "show_reading": getattr(args, "show_reading", False)}
    if args.temperature > 0:
        settings.update(do_sample=True, temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    return settings


def cmd_ask(args) -> int:
    model = _load(args)
    for piece in model.stream(args.image, args.question, **_settings(args)):
        print(piece, end="", flush=True)
    print()
    return 0


def cmd_chat(args) -> int:
    from minimax_vl.engine import VLChat

    model = _load(args)
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
    from minimax_vl.evaluation import score_predictions, write_report
    from minimax_vl.vqa import answer_records, questions_of, read_images, reading_records, reading_report

    model = _load(args)
    if args.data:
        from training.data.formats import read_dataset

        samples = read_dataset(args.data)
    else:
        from training.data.samples import GeneratorConfig, make_sample

        config = GeneratorConfig(split=args.split, sample_kinds=(("vqa", 1.0),), difficulty=args.difficulty,
                                 image_size=args.image_size, font_scale=args.font_scale)
        samples = [make_sample(config, i) for i in range(args.start, args.start + args.generate)]
    records = [r for s in samples for r in questions_of(s)]
    if not records:
        print("no single-image question/answer turns found in the data", file=sys.stderr)
        return 2
    answered = list(answer_records(model, records, max_new_tokens=args.max_new_tokens))
    report = score_predictions([r.as_score_record() for r in answered])
    to_read = reading_records(samples)[: args.probe_images] if args.probe else []
    if to_read:  # generated images know their transcription; LLaVA files do not
        read = read_images(model, to_read, max_new_tokens=args.max_new_tokens)
        report["reading"] = {**reading_report(read), "records": [
            {"id": r.sample_id, "kind": r.kind, "prediction": r.prediction, "correct": r.correct,
             "fields": len(r.fields)} for r in read]}
    paths = write_report(report, args.out)
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def cmd_info(args) -> int:
    import torch

    from minimax_vl.config import MiniMaxVL01Config
    from minimax_vl.model import MiniMaxVL01, parameter_counts

    if args.model:
        config = MiniMaxVL01Config.load(args.model)
    else:
        config = MiniMaxVL01Config.from_preset(args.preset)
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
    from minimax_vl.demos.run import load_demo_model

    model, what = load_demo_model(args.model)
    print(f"[minimax-vl] using {what}", file=sys.stderr)
    serve(model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, share=args.share,
          description=what, **_settings(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from minimax_vl.answers import MAX_REPLY_TOKENS
    from minimax_vl.demos.data import DEMO_DIFFICULTY, DEMO_FONT_SCALE, DEMO_IMAGE_SIZE

    parser = argparse.ArgumentParser(prog="minimax-vl", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_model(p):
        p.add_argument("--model", help="checkpoint folder (default: shipped demo model, else random tiny)")
        p.add_argument("--max-new-tokens", type=int, default=MAX_REPLY_TOKENS,
                       help=f"reply length cap (default {MAX_REPLY_TOKENS}: room for the transcription a "
                            "read-first model writes before its answer)")
        p.add_argument("--show-reading", action="store_true",
                       help="also print what the model read in the image before its answer")
        p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
        p.add_argument("--top-p", type=float, default=1.0)
        p.add_argument("--seed", type=int, default=None)
        return p

    ask = with_model(sub.add_parser("ask", help="answer one question about an image (streamed)"))
    ask.add_argument("image", help="image file (PNG, JPEG, GIF, ...)")
    ask.add_argument("question")
    ask.set_defaults(func=cmd_ask)

    chat = with_model(sub.add_parser("chat", help="multi-turn chat about one image"))
    chat.add_argument("image")
    chat.set_defaults(func=cmd_chat)

    ev = with_model(sub.add_parser("eval", help="relaxed accuracy on a VQA test set"))
    ev.add_argument("--data", help="dataset folder or JSON file in LLaVA / messages format")
    ev.add_argument("--generate", type=int, default=100, help="without --data: generate this many test images")
    ev.add_argument("--split", default="test", help="generator split for --generate (test, val, heldout)")
    ev.add_argument("--start", type=int, default=0)
    ev.add_argument("--difficulty", default=DEMO_DIFFICULTY, choices=["easy", "normal"],
                    help=f"generator style for --generate (default {DEMO_DIFFICULTY!r}, the demo model's)")
    ev.add_argument("--image-size", type=int, default=DEMO_IMAGE_SIZE,
                    help=f"long side of generated images (default {DEMO_IMAGE_SIZE}, the demo model's)")
    ev.add_argument("--font-scale", type=float, default=DEMO_FONT_SCALE,
                    help=f"label size relative to the style's (default {DEMO_FONT_SCALE}, the demo model's)")
    ev.add_argument("--out", default="outputs/eval", help="folder for report.json and accuracy.png")
    ev.add_argument("--no-probe", dest="probe", action="store_false",
                    help="skip the reading probe (generated images transcribed once each, fields scored exactly)")
    ev.add_argument("--probe-images", type=int, default=100,
                    help="how many of the generated images the reading probe reads (default 100)")
    ev.set_defaults(func=cmd_eval)

    info = sub.add_parser("info", help="configuration and parameter counts")
    info.add_argument("--model")
    info.add_argument("--preset", default="tiny")
    info.set_defaults(func=cmd_info)

    serve = with_model(sub.add_parser("serve", help="web demo: generated charts and maps or uploads, streamed answers"))
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--max-upload-mb", type=float, default=10, help="largest image file accepted (default 10)")
    serve.add_argument("--share", action="store_true", help="also ask Gradio for a temporary public link")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
