"""`minimax-vl serve`: the web demo's handlers on a random tiny model, then the real page in headless Chromium.

    .venv/bin/python -m pytest -q tests/cli/test_serve.py

The browser tests need Chromium and its driver (Debian: apt-get install chromium chromium-driver) and the
`test` extra (selenium, gradio); without them they skip and say so. Selenium is given the driver's path, so its
Selenium Manager never downloads anything. Answers are greedy, so the page must show exactly model.generate's text.
"""
import os
import shutil
import socket
import sys
import time

import numpy as np
import pytest
from PIL import Image

from minimax_vl.cli import build_parser, main
from minimax_vl.demos.data import DEMO_START_INDEX
from minimax_vl.model import MiniMaxVL01
from minimax_vl.vqa import questions_of

INSTALL = ('install the browser test tools: apt-get install chromium chromium-driver (Debian; root) and '
           'pip install -e ".[test,demo]"')
MAX_NEW_TOKENS = 8

# Gradio's queue calls pandas APIs that pandas 3 deprecates; not this project's code, and not actionable here.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")


# ---------------------------------------------------------------------------------------------------------- CLI
def test_serve_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--model", "--host", "--port", "--max-upload-mb", "--share", "--max-new-tokens"):
        assert option in out
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.max_upload_mb, args.share) == ("127.0.0.1", 7860, 10, False)


def test_serve_without_gradio_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` fail as if it were not installed
    monkeypatch.delitem(sys.modules, "minimax_vl.demos.web", raising=False)
    assert main(["serve"]) == 2
    assert 'pip install -e ".[demo]"' in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------- handlers
@pytest.fixture(scope="module")
def web():
    pytest.importorskip("gradio", reason=f'the web demo needs Gradio: pip install -e ".[demo]"')
    from minimax_vl.demos import web

    return web


@pytest.fixture(scope="module")
def model():
    return MiniMaxVL01.from_preset("tiny").eval()


@pytest.fixture(scope="module")
def chart(web):
    return web.generated_sample("chart", DEMO_START_INDEX)


@pytest.fixture
def chart_path(chart, tmp_path):
    path = tmp_path / "chart.png"
    chart.images[0].save(path)
    return str(path)


def _noise_png(path, size=(300, 300)) -> str:
    pixels = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype("uint8")
    Image.fromarray(pixels).save(path)
    return str(path)


def test_streamed_answer_grows_to_what_generate_returns(web, model, chart, chart_path):
    question = questions_of(chart)[0].question
    pieces = list(web.WebDemo(model, max_new_tokens=MAX_NEW_TOKENS).answer(chart_path, question))
    expected = model.generate(chart.images[0], question, max_new_tokens=MAX_NEW_TOKENS)
    assert expected and pieces[-1] == expected
    assert pieces[0] == ""  # the old answer is cleared before the first token
    assert len(pieces) > 2 and all(b.startswith(a) for a, b in zip(pieces, pieces[1:]))


def test_gradio_file_payload_works_like_a_path(web, model, chart, chart_path):
    demo = web.WebDemo(model, max_new_tokens=MAX_NEW_TOKENS)
    question = "What is the title of the chart?"
    from_payload = list(demo.answer({"path": chart_path, "orig_name": "chart.png"}, question))[-1]
    assert from_payload == list(demo.answer(chart_path, question))[-1]


def test_each_image_is_encoded_once(web, model, chart_path, tmp_path, monkeypatch):
    calls = []
    prefill = model.prefill

    def counting_prefill(image, **kwargs):
        calls.append(image)
        return prefill(image, **kwargs)

    monkeypatch.setattr(model, "prefill", counting_prefill)
    demo = web.WebDemo(model, max_new_tokens=2)
    copy = shutil.copy(chart_path, tmp_path / "same-bytes-other-name.png")
    for path, question in [(chart_path, "What is the title?"), (chart_path, "What is on the x-axis?"), (copy, "Why?")]:
        list(demo.answer(path, question))
    assert len(calls) == 1  # same bytes: one encoding
    list(demo.answer(_noise_png(tmp_path / "other.png"), "What is shown?"))
    assert len(calls) == 2


def test_new_chart_and_new_map_show_the_test_sample_with_its_answers(web, model):
    demo = web.WebDemo(model)
    image, examples, question, answers, answer, next_index = demo.new_sample("chart", DEMO_START_INDEX)
    records = questions_of(web.generated_sample("chart", DEMO_START_INDEX))
    assert np.array_equal(np.asarray(image), np.asarray(records[0].image))
    assert [choice[0] for choice in examples.choices] == [r.question for r in records]
    assert question == records[0].question and answer == "" and next_index == DEMO_START_INDEX + 1
    for r in records:
        assert f"| {r.question} | {r.answer} |" in answers
    assert web.generated_sample("map", DEMO_START_INDEX).meta["kind"] == "map"
    assert demo.new_sample("map", next_index)[-1] == DEMO_START_INDEX + 2


def test_missing_image_or_question_gets_a_clear_message(web, model, chart_path):
    import gradio as gr

    demo = web.WebDemo(model, max_new_tokens=2)
    with pytest.raises(gr.Error, match="Upload an image"):
        next(demo.answer(None, "What is shown?"))
    with pytest.raises(gr.Error, match="Type a question"):
        next(demo.answer(chart_path, "   "))


def test_bad_upload_gets_load_images_message(web, model, tmp_path):
    import gradio as gr

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(gr.Error, match="Could not read this image: the 12-byte input is not a readable image") as err:
        next(web.WebDemo(model).answer(str(bad), "What is shown?"))
    assert str(tmp_path) not in str(err.value)  # no server paths in what the visitor sees


def test_oversize_upload_is_refused_by_bytes_and_by_pixels(web, model, tmp_path):
    import gradio as gr

    big = _noise_png(tmp_path / "big.png")  # about 270 kB, 90,000 pixels
    with pytest.raises(gr.Error, match=r"is 0\.3 MB; this demo accepts files up to 0\.1 MB"):
        next(web.WebDemo(model, max_upload_mb=0.1).answer(big, "What is shown?"))
    with pytest.raises(gr.Error, match="300x300 = 90,000 pixels; this demo accepts at most 10,000"):
        next(web.WebDemo(model, max_pixels=10_000).answer(big, "What is shown?"))


def test_page_has_every_control_and_names_the_model(web, model):
    app = web.build_app(model, description="the test model", max_new_tokens=2)
    ids = {getattr(block, "elem_id", None) for block in app.blocks.values()}
    assert {"image", "new-chart", "new-map", "examples", "question", "ask", "answer", "correct-answers"} <= ids
    title = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "title")
    assert "the test model" in title.value


# ---------------------------------------------------------------------------------------------------------- browser
def _browser_paths() -> tuple[str, str]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    if not browser or not driver:
        pytest.skip(f"no Chromium or chromedriver found; {INSTALL}")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(web, model):
    """The demo on a free local port, answering with the tiny model; uploads limited to 0.1 MB."""
    app = web.serve(model, port=_free_port(), max_upload_mb=0.1, description="a random tiny test model",
                    block=False, quiet=True, max_new_tokens=MAX_NEW_TOKENS)
    yield app.local_url
    app.close()


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason=f"the browser tests need selenium; {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def _wait(driver, condition, what, timeout: float = 30):
    """Polls condition(driver) until it returns something truthy; fails saying what never appeared (`what`: a
    string, or a function giving one, evaluated at the failure)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # Gradio re-renders components on updates, so an element may vanish or go stale between two polls.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored).until(condition)
    except TimeoutException:
        pytest.fail(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")


def _by_id(driver, elem_id: str, inner: str = ""):
    """The element with this elem_id, or the first inside it matching any of the comma-separated `inner` selectors
    (a Gradio Textbox renders an input or a textarea, depending on its line count)."""
    from selenium.webdriver.common.by import By

    selector = ", ".join(f"#{elem_id} {part.strip()}" for part in inner.split(",")) if inner else f"#{elem_id}"
    return driver.find_element(By.CSS_SELECTOR, selector)


def _toasts(driver) -> str:
    from selenium.webdriver.common.by import By

    return "\n".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']"))


def _open(driver, url: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: _by_id(d, "new-chart").is_displayed(), "the page to load")


def _finished_answer(driver, expected: str, previous: str = "", timeout: float = 30) -> str:
    """The answer box's text once it equals `expected`, or once a new answer (not `previous`, what the box showed
    before asking) has stopped changing for 2 s: then it is wrong, and the caller's assert says how."""
    seen = {"value": None, "since": time.monotonic()}

    def settled(d):
        value = _by_id(d, "answer", "textarea, input").get_attribute("value")
        if value != seen["value"]:
            seen.update(value=value, since=time.monotonic())
        return value == expected or (value and value != previous and time.monotonic() - seen["since"] > 2)

    _wait(driver, settled, lambda: f"the streamed answer {expected!r} (last seen {seen['value']!r})", timeout)
    return seen["value"]


def _ask(driver, question: str, submit_with_enter: bool = False) -> None:
    box = _by_id(driver, "question", "textarea, input")
    box.clear()
    box.send_keys(question + ("\n" if submit_with_enter else ""))
    if not submit_with_enter:
        _by_id(driver, "ask").click()


def test_page_answers_a_generated_chart_like_generate(web, model, browser, server):
    records = questions_of(web.generated_sample("chart", DEMO_START_INDEX))  # what a fresh page's first click shows
    _open(browser, server)
    _by_id(browser, "new-chart").click()
    first = records[0]
    _wait(browser, lambda d: f"{first.question} {first.answer}" in _by_id(d, "correct-answers").text,
          "the chart's questions with their correct answers")
    _wait(browser, lambda d: _by_id(d, "question", "textarea, input").get_attribute("value") == first.question,
          "the first example question in the question box")

    question = records[-1].question
    expected = model.generate(records[0].image, question, max_new_tokens=MAX_NEW_TOKENS)
    _ask(browser, question)
    answer = _finished_answer(browser, expected)
    assert answer and answer == expected

    # Enter submits too: a second question about the same (already encoded) image. The random tiny model gives most
    # questions the same noise; ask one that gets a different answer, so the test sees the page change.
    candidates = ("Describe the image.", "What is the title?", "Why?", "Name every label.", "What colour is it?")
    others = {q: model.generate(records[0].image, q, max_new_tokens=MAX_NEW_TOKENS) for q in candidates}
    other = next((q for q, a in others.items() if a != answer), None)
    assert other is not None, "no candidate question gets a different answer, so the page would not visibly change"
    expected = others[other]
    _ask(browser, other, submit_with_enter=True)
    assert _finished_answer(browser, expected, previous=answer) == expected


def test_page_explains_errors_instead_of_failing(web, browser, server, tmp_path):
    _open(browser, server)
    _by_id(browser, "ask").click()  # no image yet
    _wait(browser, lambda d: web.NO_IMAGE in _toasts(d), "the no-image message")

    upload = 'input[type="file"]'  # found afresh each time: Gradio replaces it after an upload
    big = _noise_png(tmp_path / "big.png")  # about 270 kB, over the server's 0.1 MB: Gradio refuses the upload
    _by_id(browser, "image", upload).send_keys(big)
    _wait(browser, lambda d: "exceed the maximum allowed size" in _toasts(d), "Gradio's upload size message")

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    _by_id(browser, "image", upload).send_keys(str(bad))
    _wait(browser, lambda d: web.OWN_IMAGE in _by_id(d, "correct-answers").text, "the upload to arrive")
    _ask(browser, "What is shown?")
    _wait(browser, lambda d: "Could not read this image" in _toasts(d), "the unreadable-image message")
    assert "Traceback" not in browser.page_source
