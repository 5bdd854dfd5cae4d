"""Text out of the engine: incremental decoding, stop strings, streaming (iterator and streamer objects),
and GenerationConfig validation and files."""
import json
import threading

import pytest
import torch

from text_backbone.generation import GenerationConfig, Generator
from text_backbone.streamers import TextIteratorStreamer, TextStreamer
from text_backbone.config import MiniMaxText01Config
from text_backbone.generation import IncrementalDetokenizer
from text_backbone.model import MiniMaxText01ForCausalLM


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()  # shared machine: tiny matmuls are much faster on one thread
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def two_letters(ids):
    """A toy tokenizer: token i is two letters, so a stop string can start in the middle of a token."""
    return "".join(chr(97 + i % 26) + chr(97 + (i // 26) % 26) for i in ids)


def tiny_engine(decode=two_letters):
    torch.manual_seed(0)
    model = MiniMaxText01ForCausalLM(MiniMaxText01Config.from_preset("tiny")).eval()
    return model, Generator(model, decode=decode)


PROMPT = torch.randint(0, 1024, (1, 12), generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- incremental decoding
def utf8_bytes(ids):
    return bytes(ids).decode("utf-8", errors="replace")


def test_detokenizer_never_splits_a_multibyte_character():
    text = "héllo wörld ✓ 漢字!"
    detok = IncrementalDetokenizer(utf8_bytes)
    pieces = [detok.push([b]) for b in text.encode("utf-8")]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + detok.flush() == text


def test_detokenizer_keeps_spaces_that_a_decoder_drops_at_the_start():
    """Sentencepiece-like decode: a leading space is removed from whatever is decoded."""
    words = ["▁the", "▁cat", "▁sat", "!"]

    def decode(ids):
        return "".join(words[i] for i in ids).replace("▁", " ").lstrip(" ")

    detok = IncrementalDetokenizer(decode)
    assert "".join(detok.push([i]) for i in range(4)) + detok.flush() == "the cat sat!"


# ---------------------------------------------------------------- stop strings
def test_stop_string_ends_generation_and_is_cut_from_the_text():
    _, engine = tiny_engine()
    free = engine.generate(PROMPT, max_new_tokens=20)
    text = free.texts[0]
    assert text == two_letters(free.tokens[0])
    stop = text[9:12]  # starts in the middle of token 4, ends inside token 5
    first = text.find(stop)
    out = engine.generate(PROMPT, max_new_tokens=20, stop_strings=[stop, "never-seen"])
    assert out.finish_reasons == ["stop_string"]
    assert out.texts[0] == text[:first]
    completing_token = (first + len(stop) - 1) // 2  # the token whose letters finish the stop string
    assert out.tokens[0] == free.tokens[0][: completing_token + 1]


def test_stop_strings_need_a_decode_function():
    model, _ = tiny_engine()
    with pytest.raises(ValueError, match="decode function"):
        Generator(model).generate(PROMPT, stop_strings=["x"])


# ---------------------------------------------------------------- streaming
def test_stream_pieces_join_to_the_generated_text():
    _, engine = tiny_engine()
    out = engine.generate(PROMPT, max_new_tokens=15)
    pieces = list(engine.stream(PROMPT, max_new_tokens=15))
    assert len(pieces) == 15 and "".join(pieces) == out.texts[0]


def test_stream_holds_back_a_possible_stop_string():
    _, engine = tiny_engine()
    text = engine.generate(PROMPT, max_new_tokens=20).texts[0]
    stop = text[9:14]
    pieces = list(engine.stream(PROMPT, max_new_tokens=20, stop_strings=[stop]))
    assert "".join(pieces) == text[: text.find(stop)]  # no part of the stop string was ever shown


def test_stream_refuses_batches():
    _, engine = tiny_engine()
    with pytest.raises(ValueError, match="follows one row"):
        list(engine.stream(PROMPT.repeat(2, 1), max_new_tokens=3))


class Recorder(TextStreamer):
    def __init__(self, decode):
        super().__init__(decode)
        self.pieces, self.ended = [], 0

    def on_finalized_text(self, text, stream_end=False):
        self.pieces.append(text)
        self.ended += stream_end


def test_text_streamer_receives_every_token_once():
    _, engine = tiny_engine()
    recorder = Recorder(two_letters)
    out = engine.generate(PROMPT, max_new_tokens=9, streamer=recorder)
    assert "".join(recorder.pieces) == out.texts[0] and recorder.ended == 1


def test_text_streamer_prints(capsys):
    _, engine = tiny_engine()
    out = engine.generate(PROMPT, max_new_tokens=5, streamer=TextStreamer(two_letters))
    assert capsys.readouterr().out == out.texts[0] + "\n"


def test_iterator_streamer_from_a_worker_thread():
    _, engine = tiny_engine()
    expected = engine.generate(PROMPT, max_new_tokens=12).texts[0]
    streamer = TextIteratorStreamer(two_letters, timeout=60)
    worker = threading.Thread(target=engine.generate, args=(PROMPT,),
                              kwargs=dict(max_new_tokens=12, streamer=streamer))
    worker.start()
    pieces = list(streamer)
    worker.join()
    assert "".join(pieces) == expected and len(pieces) > 1


def test_streamer_ends_when_generation_fails():
    """A consumer waiting on the iterator must not hang if the model raises mid-generation."""
    model, engine = tiny_engine()
    calls = []

    def failing_forward(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return type(model).forward(model, *args, **kwargs)

    model.forward = failing_forward
    streamer = TextIteratorStreamer(two_letters, timeout=60)
    with pytest.raises(RuntimeError, match="boom"):
        engine.generate(PROMPT, max_new_tokens=10, streamer=streamer)
    assert len(list(streamer)) >= 1  # the two finished tokens arrived, then the stream ended


def test_streamers_refuse_batches():
    with pytest.raises(ValueError, match="batch of 2"):
        TextStreamer(two_letters).put(torch.tensor([[1], [2]]))
    _, engine = tiny_engine()
    with pytest.raises(ValueError, match="one sequence"):
        engine.generate(PROMPT.repeat(2, 1), max_new_tokens=2, streamer=Recorder(two_letters))


# ---------------------------------------------------------------- GenerationConfig
def test_config_normalises_and_validates():
    config = GenerationConfig(eos_token_id=200020, stop_strings="<end_of_sentence>")
    assert config.eos_token_id == [200020] and config.stop_strings == ["<end_of_sentence>"]
    bad = dict(max_new_tokens=-1, temperature=0.0, top_p=1.5, top_k=2.5, repetition_penalty=0,
               prefill_chunk_size=0, eos_token_id=[-3], stop_strings=[""], seed="x")
    with pytest.raises(ValueError) as err:
        GenerationConfig(**bad)
    for name in bad:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="min_new_tokens .5. exceeds max_new_tokens .4."):
        GenerationConfig(min_new_tokens=5, max_new_tokens=4)
    with pytest.raises(TypeError, match="unknown generation setting.*top_q"):
        GenerationConfig().replace(top_q=0.5)
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig().replace(top_p=0.0)


def test_config_save_load_roundtrip(tmp_path):
    config = GenerationConfig(max_new_tokens=33, do_sample=True, temperature=0.7, top_k=40, top_p=0.9,
                              repetition_penalty=1.1, eos_token_id=[5, 6], stop_strings=["\n\n"], pad_token_id=0,
                              prefill_chunk_size=512, seed=7, min_new_tokens=2)
    path = config.save(tmp_path / "ckpt")
    assert path.name == "generation_config.json"
    assert [p.name for p in path.parent.iterdir()] == ["generation_config.json"]  # no temporary file left
    assert GenerationConfig.load(tmp_path / "ckpt") == config
    assert GenerationConfig.load(path) == config


def test_config_load_reads_a_transformers_file_and_names_what_it_ignores(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": 200020, "max_new_tokens": 64, "bos_token_id": 1, "transformers_version": "4.45.0"}))
    with pytest.warns(UserWarning, match=r"\['bos_token_id', 'transformers_version'\]"):
        config = GenerationConfig.load(tmp_path)
    assert config.eos_token_id == [200020] and config.max_new_tokens == 64
    with pytest.raises(FileNotFoundError, match="generation_config.json"):
        GenerationConfig.load(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "generation_config.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        GenerationConfig.load(tmp_path / "bad")


def test_engine_uses_its_default_config_with_call_overrides():
    model, _ = tiny_engine()
    engine = Generator(model, config=GenerationConfig(max_new_tokens=4))
    assert len(engine.generate(PROMPT).tokens[0]) == 4
    assert len(engine.generate(PROMPT, max_new_tokens=2).tokens[0]) == 2
