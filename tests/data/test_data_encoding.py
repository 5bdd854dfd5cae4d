"""Conversations → (input_ids, labels): supervision mask, image expansion, truncation rule."""
import pytest
import torch

from minimax_vl.chat_template import BOS, EOS, IMAGE, render, render_segments
from minimax_vl.data.samples import GeneratorConfig, make_sample
from training.data.encoding import IGNORE_INDEX, encode_conversation, image_token_id, images_kept
from training.data.tokenizer import load_tokenizer

TOKENIZER = load_tokenizer()
IMAGE_ID = image_token_id(TOKENIZER)
EOS_ID = TOKENIZER.token_to_id(EOS)

MESSAGES = [
    {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "\nWhich bar is tallest?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Pear"}]},
    {"role": "user", "content": [{"type": "text", "text": "And its value?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "45"}]},
]


def decode(ids):
    return TOKENIZER.decode([int(i) for i in ids], skip_special_tokens=False)


def test_only_assistant_text_and_its_end_token_are_supervised():
    input_ids, labels = encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[7])
    assert input_ids.dtype == labels.dtype == torch.long and input_ids.shape == labels.shape
    supervised = labels != IGNORE_INDEX
    assert torch.equal(labels[supervised], input_ids[supervised])
    assert decode(input_ids[supervised]) == f"Pear{EOS}45{EOS}"
    # Every supervised run is one answer followed by exactly one end token.
    runs = torch.nonzero(supervised).flatten().tolist()
    ends = [i for i in runs if input_ids[i] == EOS_ID]
    assert len(ends) == 2 and all(input_ids[i + 1] != EOS_ID for i in ends if i + 1 < len(input_ids))


def test_image_placeholder_expands_to_exactly_n_tokens():
    for count in (1, 5, 576):
        input_ids, labels = encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[count])
        positions = torch.nonzero(input_ids == IMAGE_ID).flatten()
        assert len(positions) == count
        assert torch.equal(positions, torch.arange(positions[0], positions[0] + count))  # one contiguous run
        assert (labels[positions] == IGNORE_INDEX).all()


def test_text_matches_the_template_once_images_are_collapsed():
    input_ids, _ = encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[9])
    assert decode(input_ids).replace(IMAGE * 9, IMAGE) == render(MESSAGES)


def test_segment_wise_encoding_equals_whole_text_encoding():
    """Tokenising segment by segment (needed for the labels) gives the same ids as the whole prompt."""
    config = GeneratorConfig(sample_kinds=(("conversation", 1.0), ("text_only", 1.0), ("vqa", 1.0)))
    for index in range(30):
        sample = make_sample(config, index, draw=False)
        input_ids, _ = encode_conversation(sample.messages, TOKENIZER, image_token_counts=[1] * len(sample.images))
        whole = TOKENIZER.encode(render(sample.messages), add_special_tokens=False).ids
        assert input_ids.tolist() == whole


def test_several_images_get_their_own_counts():
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " vs "}, {"type": "image"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "left"}]}]
    input_ids, _ = encode_conversation(messages, TOKENIZER, image_token_counts=[3, 5])
    runs = decode(input_ids).split(" vs ")
    assert runs[0].count(IMAGE) == 3 and runs[1].count(IMAGE) == 5


def test_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="1 <image> placeholder\\(s\\) but 2 image token counts"):
        encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[4, 4])
    with pytest.raises(ValueError, match="more <image> placeholders"):
        encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[])


def test_truncation_never_cuts_through_an_image():
    full, _ = encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[50])
    start = int(torch.nonzero(full == IMAGE_ID)[0])
    # A cut inside the image drops it whole.
    for max_length in (start + 1, start + 25, start + 49):
        ids, labels = encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[50], max_length=max_length)
        assert len(ids) == start and not (ids == IMAGE_ID).any() and len(labels) == start
        assert images_kept(ids, [50], IMAGE_ID) == 0
    # A cut after the image keeps it whole and truncates the text.
    ids, labels = encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[50], max_length=start + 52)
    assert len(ids) == start + 52 and int((ids == IMAGE_ID).sum()) == 50
    assert images_kept(ids, [50], IMAGE_ID) == 1
    assert torch.equal(ids, full[: start + 52])
    # No cut when the sequence fits.
    ids, _ = encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[50], max_length=len(full))
    assert torch.equal(ids, full)


def test_generation_prompt_is_not_part_of_training_encoding():
    ids, _ = encode_conversation(MESSAGES[:2], TOKENIZER, image_token_counts=[2])
    assert not decode(ids).endswith(f"{BOS}ai name=assistant\n")
    assert render_segments(MESSAGES[:2])[-1][1] is False


def test_wrapped_tokenizers_are_accepted():
    class Wrapper:  # the shape of minimax_vl.tokenizer.MiniMaxTokenizer: the tokenizer under `.backend`
        backend = TOKENIZER

    direct = encode_conversation(MESSAGES, TOKENIZER, image_token_counts=[3])
    wrapped = encode_conversation(MESSAGES, Wrapper(), image_token_counts=[3])
    assert all(torch.equal(a, b) for a, b in zip(direct, wrapped))
    with pytest.raises(TypeError, match="expected a tokenizers.Tokenizer"):
        encode_conversation(MESSAGES, object(), image_token_counts=[3])
