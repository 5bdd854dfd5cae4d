"""The shipped tokenizer: special tokens are single tokens, digits split (a number's first digit with the space or
"(" before it), decoding round-trips, training is deterministic."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimax_vl.chat_template import IMAGE, SPECIAL_TOKENS, render
from minimax_vl.data.samples import GeneratorConfig, make_sample
from training.data.tokenizer import DEFAULT_PATH, load_tokenizer, pre_tokenizer, tokenizer_corpus, train_tokenizer

TOKENIZER = load_tokenizer()


def test_shipped_file_is_small_with_a_2k_to_4k_vocabulary():
    assert DEFAULT_PATH.stat().st_size < 200_000
    assert 2000 <= TOKENIZER.get_vocab_size() <= 4096


@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_special_tokens_are_single_tokens(token):
    encoding = TOKENIZER.encode(f"a{token}b", add_special_tokens=False)
    assert TOKENIZER.token_to_id(token) in encoding.ids
    assert token in encoding.tokens


def test_image_placeholders_stay_separate_tokens():
    image_id = TOKENIZER.token_to_id(IMAGE)
    ids = TOKENIZER.encode(IMAGE * 5 + "\nWhat?", add_special_tokens=False).ids
    assert ids[:5] == [image_id] * 5 and image_id not in ids[5:]


def test_digits_are_one_per_token_and_a_numbers_first_token_carries_its_space():
    tokens = TOKENIZER.encode("In 2014 it was 1,250.5", add_special_tokens=False).tokens
    digits = [t for t in tokens if any(c.isdigit() for c in t)]
    assert digits == ["Ġ2", "0", "1", "4", "Ġ1", "2", "5", "0", "5"]


def test_generated_text_is_compact():
    """Label words of both splits are whole tokens, so labels read as one unit."""
    for word in ("Pear", "Lighthouse", "Observatory", "northeast", "Spinach"):
        assert len(TOKENIZER.encode(" " + word, add_special_tokens=False).ids) == 1, word


@pytest.fixture(scope="module")
def attached():
    """An `attached` tokenizer from a small corpus (its digit line gives every digit merge the budget allows)."""
    return train_tokenizer(tokenizer_corpus(samples_per_setting=5))  # the full budget: every pair merges


def test_attached_mode_joins_a_numbers_space_or_parenthesis_to_its_first_digit(attached):
    """Nothing stands between a label and its number's first digit (docs: training/data/tokenizer.py)."""
    def digit_tokens(text):  # the tokens that hold digits, and the one before each number's first
        tokens = attached.encode(text, add_special_tokens=False).tokens
        return [(tokens[i - 1][-1:], t) for i, t in enumerate(tokens) if any(c.isdigit() for c in t)]

    assert digit_tokens("Yak 15; Owl 7.5%") == [("k", "Ġ1"), ("1", "5"), ("l", "Ġ7"), (".", "5")]
    assert digit_tokens("Shop (3, 2); Inn (10, 4)") == [("p", "Ġ(3"), (",", "Ġ2"), ("n", "Ġ(1"), ("1", "0"),
                                                        (",", "Ġ4")]
    assert [t for _, t in digit_tokens("(9 x  8")] == ["(9", "Ġ8"]
    for prefix in ("Ġ", "Ġ(", "("):
        assert all(attached.token_to_id(prefix + digit) is not None for digit in "0123456789"), prefix


def test_the_shipped_tokenizer_attaches_and_isolated_mode_keeps_the_space_apart():
    text = "Yak 15; Shop (3, 2)\n\n 7"
    shipped = [piece for piece, _ in TOKENIZER.pre_tokenizer.pre_tokenize_str(text)]
    assert [piece for piece, _ in pre_tokenizer("attached").pre_tokenize_str(text)] == shipped
    assert [piece for piece, _ in pre_tokenizer("isolated").pre_tokenize_str(text)] == [
        "Yak", "Ġ", "1", "5", ";", "ĠShop", "Ġ(", "3", ",", "Ġ", "2", ")", "ĊĊĠ", "7"]
    with pytest.raises(ValueError, match="digits must be one of"):
        pre_tokenizer("grouped")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_attached_mode_round_trips_any_text(attached, text):
    assert attached.decode(attached.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_decoding_round_trips_any_text(text):
    ids = TOKENIZER.encode(text, add_special_tokens=False).ids
    assert TOKENIZER.decode(ids, skip_special_tokens=False) == text


def test_decoding_round_trips_a_rendered_conversation():
    sample = make_sample(GeneratorConfig(sample_kinds=(("conversation", 1.0),)), 1, draw=False)
    text = render(sample.messages)
    assert TOKENIZER.decode(TOKENIZER.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text


def test_training_is_deterministic():
    corpus = list(tokenizer_corpus(samples_per_setting=15))
    first = train_tokenizer(iter(corpus), vocab_size=600).to_str()
    second = train_tokenizer(iter(corpus), vocab_size=600).to_str()
    assert first == second


@pytest.mark.slow
def test_rebuilding_reproduces_the_shipped_file(tmp_path):
    from training.data.tokenizer import main
    out = tmp_path / "tokenizer.json"
    main(["--out", str(out)])
    assert out.read_bytes() == DEFAULT_PATH.read_bytes()
