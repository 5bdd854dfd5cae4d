"""`minimax-vl serve`: a web page (Gradio) to ask the model about generated charts and maps, or your own images.

    minimax-vl serve                                  # http://127.0.0.1:7860 with the shipped demo model
    minimax-vl serve --model DIR --port 8080 --max-upload-mb 5
    .venv/bin/python -c "from minimax_vl.demos.web import serve; from minimax_vl.model import MiniMaxVL01; \
serve(MiniMaxVL01.from_preset('tiny'), max_new_tokens=8)"

Needs the `demo` extra: pip install -e ".[demo]".

"New chart" / "New map" draw a fresh test-split image (seeds never used in training, starting at
DEMO_START_INDEX, one further per click) and list its questions with the correct answers, so a visitor can judge
the model. The answer streams into the page as it is generated. Each image is encoded once: its prefill state is
cached by the file's content hash, so further questions about it only run the question and the answer.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections import OrderedDict

# Gradio otherwise reports usage to its servers on launch; a local demo has no business phoning home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from minimax_vl.data.samples import Sample, make_sample  # noqa: E402
from minimax_vl.demos.data import DEMO_START_INDEX, demo_generator_config  # noqa: E402
from minimax_vl.vqa import questions_of  # noqa: E402
from vision.image_io import ImageLoadError, load_image  # noqa: E402

MB = 1024 * 1024
MAX_PIXELS = 25_000_000  # 5000 x 5000; the processor downsizes to a few tiles anyway, bigger only costs memory
PREFILL_CACHE_SIZE = 4  # encoded images kept: the current one and a few the visitor may go back to
IMAGE_KINDS = ("chart", "map")

NO_IMAGE = "Upload an image, or click “New chart” / “New map”, then ask."
NO_QUESTION = "Type a question about the image, then press Enter or click Ask."
OWN_IMAGE = "Your own image: ask anything about it (there are no correct answers to compare with)."


class UserError(gr.Error):
    """A problem with what the visitor sent: shown in the page as a message, not logged with a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)


def generated_sample(kind: str, index: int) -> Sample:
    """Test-split sample `index` drawn like the demo model's training data, with one image of `kind`."""
    if kind not in IMAGE_KINDS:
        raise ValueError(f"kind must be one of {IMAGE_KINDS}, got {kind!r}")
    return make_sample(demo_generator_config("test", image_kinds=(kind,)), index)


def answers_markdown(records) -> str:
    """The generated image's questions and correct answers as a Markdown table."""
    if not records:
        return "This image came with no questions; ask your own."
    cell = lambda text: text.replace("|", "\\|").replace("\n", " ")  # noqa: E731 (a cell must stay one line)
    rows = "".join(f"| {cell(r.question)} | {cell(r.answer)} |\n" for r in records)
    return "**Questions about this image, with the correct answers:**\n\n| question | correct answer |\n|---|---|\n" + rows


def upload_path(value) -> str | None:
    """The file path in an Image input: a path string, or the file payload Gradio sends when the event does not
    preprocess (a dict with "path"); None when the input is empty."""
    if not value:
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, dict) and value.get("path"):
        return value["path"]
    raise UserError("The image did not arrive as a file; upload it again.")


class WebDemo:
    """The page's behaviour, without the page: each method is one event handler (tested directly)."""

    def __init__(self, model, *, max_upload_mb: float = 10, max_pixels: int = MAX_PIXELS, **settings) -> None:
        self.model = model
        self.max_upload_mb = max_upload_mb
        self.max_pixels = max_pixels
        self.settings = settings  # generation settings: max_new_tokens, temperature, ...
        self._prefills: OrderedDict[str, object] = OrderedDict()

    # ---------------------------------------------------------------------------------------------- events
    def new_sample(self, kind: str, index: int):
        """"New chart" / "New map": image, example-question choices, first question, correct answers,
        an emptied answer box, and the next index."""
        sample = generated_sample(kind, index)
        records = questions_of(sample)
        questions = [r.question for r in records]
        return (sample.images[0], gr.Dropdown(choices=questions, value=None), questions[0] if questions else "",
                answers_markdown(records), "", index + 1)

    def own_image(self):
        """The visitor uploaded (or cleared) an image: the generated image's questions no longer apply."""
        return gr.Dropdown(choices=[], value=None), OWN_IMAGE, ""

    def answer(self, image, question: str | None):
        """Streams the answer to `question` about `image` (a path or Gradio file payload): yields the growing text."""
        path = upload_path(image)
        if path is None:
            raise UserError(NO_IMAGE)
        question = (question or "").strip()
        if not question:
            raise UserError(NO_QUESTION)
        state = self.encoded(path)
        yield ""  # empties the previous answer at once, before the first token arrives
        text = ""
        for piece in self.model.stream(state, question, **self.settings):
            text += piece
            yield text

    # ---------------------------------------------------------------------------------------------- images
    def encoded(self, path: str):
        """The model's prefill state for the image file at `path`, from the cache when the same bytes were seen."""
        data = self._read_checked(path)
        key = hashlib.sha256(data).hexdigest()
        if key in self._prefills:
            self._prefills.move_to_end(key)
            return self._prefills[key]
        self._check_pixels(data)
        try:
            # From the bytes, not the path: the message then names "the N-byte input", not the server's temp path.
            image = load_image(data, max_pixels=self.max_pixels)
        except ImageLoadError as error:
            raise UserError(f"Could not read this image: {error}") from None
        state = self.model.prefill(image)
        self._prefills[key] = state
        while len(self._prefills) > PREFILL_CACHE_SIZE:
            self._prefills.popitem(last=False)
        return state

    def _read_checked(self, path: str) -> bytes:
        try:
            size = os.path.getsize(path)
        except OSError:
            raise UserError("The uploaded image is no longer on the server; upload it again.") from None
        if size > self.max_upload_mb * MB:
            raise UserError(f"The image file is {size / MB:.1f} MB; this demo accepts files up to "
                            f"{self.max_upload_mb:g} MB. Downscale or compress it and upload again.")
        with open(path, "rb") as file:
            return file.read()

    def _check_pixels(self, data: bytes) -> None:
        """Refuses huge images from the header alone, in words that suit a web page (load_image checks again)."""
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Exception:  # not readable: load_image says why
            return
        if width * height > self.max_pixels:
            raise UserError(f"The image is {width}x{height} = {width * height:,} pixels; this demo accepts at most "
                            f"{self.max_pixels:,}. Downscale it and upload again.")


def build_app(model, *, max_upload_mb: float = 10, description: str = "a MiniMax-VL-01 model",
              max_pixels: int = MAX_PIXELS, **settings) -> gr.Blocks:
    """The page. `description` says which model answers (as load_demo_model describes it); `settings` are
    generation settings (max_new_tokens, temperature, ...). Every control has an elem_id for browser tests."""
    demo = WebDemo(model, max_upload_mb=max_upload_mb, max_pixels=max_pixels, **settings)
    with gr.Blocks(title="MiniMax-VL-01 demo", analytics_enabled=False) as app:
        gr.Markdown(f"# MiniMax-VL-01: ask about a chart or a map\n\nAnswering: **{description}**.", elem_id="title")
        next_index = gr.State(DEMO_START_INDEX)
        with gr.Row():
            with gr.Column():
                # format="png": generated images must reach the model pixel for pixel (the default, webp, is lossy).
                image = gr.Image(type="filepath", format="png", sources=["upload", "clipboard"], elem_id="image",
                                 label=f"Image (upload, up to {max_upload_mb:g} MB, or generate one)")
                with gr.Row():
                    new_chart = gr.Button("New chart", elem_id="new-chart")
                    new_map = gr.Button("New map", elem_id="new-map")
            with gr.Column():
                examples = gr.Dropdown(choices=[], label="Example questions", elem_id="examples", interactive=True)
                question = gr.Textbox(label="Question", placeholder="e.g. What is the title of the chart?",
                                      elem_id="question", max_lines=1)
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
                answer = gr.Textbox(label="Answer", elem_id="answer", interactive=False)
                correct = gr.Markdown(NO_IMAGE, elem_id="correct-answers")

        sample_outputs = [image, examples, question, correct, answer, next_index]
        new_chart.click(lambda i: demo.new_sample("chart", i), next_index, sample_outputs, api_name="new_chart")
        new_map.click(lambda i: demo.new_sample("map", i), next_index, sample_outputs, api_name="new_map")
        gr.on([image.upload, image.clear], demo.own_image, None, [examples, correct, answer], api_name=False)
        examples.input(lambda q: q or gr.update(), examples, question, api_name=False)
        # preprocess=False: the handler gets the uploaded file's payload and reads the file itself, so a corrupt or
        # oversized upload gets load_image's clear message instead of Gradio's bare "Error" from its own decoding.
        # One concurrency slot for both triggers: one model answers one question at a time (and owns the cache).
        gr.on([ask.click, question.submit], demo.answer, [image, question], answer, preprocess=False,
              concurrency_limit=1, concurrency_id="model", show_progress="minimal", api_name="answer")
    return app


def serve(model, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = 10, share: bool = False, *,
          description: str = "a MiniMax-VL-01 model", block: bool = True, quiet: bool = False, **settings) -> gr.Blocks:
    """Builds the page and serves it on http://host:port (local only by default; share=True asks Gradio for a
    public link). block=False returns the running app at once (close it with app.close())."""
    app = build_app(model, max_upload_mb=max_upload_mb, description=description, **settings)
    # Gradio refuses bigger uploads before they reach a handler; the handler checks again (size and pixels).
    app.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=share, max_file_size=int(max_upload_mb * MB),
        prevent_thread_lock=not block, quiet=quiet, show_error=False,
    )
    return app
