"""Reading warm-up samples: every word is inside the image, rows do not overlap, the answer is in reading order,
and each split reads only its own vocabulary."""
import random

import pytest

from minimax_vl.data.samples import GeneratorConfig, make_sample
from minimax_vl.data.vocab import vocabulary
from minimax_vl.data.words import generate_words, word_pool


@pytest.mark.parametrize("seed", range(60))
def test_words_are_inside_in_reading_order_and_apart(seed):
    size = random.Random(seed).choice((128, 192, 336))
    scene, image = generate_words(random.Random(seed), split="train", image_size=size, font_scale=1.3)
    assert image.size == (size, size)
    assert 1 <= len(scene.words) <= 4
    for left, top, right, bottom in scene.boxes:
        assert 0 <= left < right <= size and 0 <= top < bottom <= size
    tops = [box[1] for box in scene.boxes]
    assert tops == sorted(tops)
    for upper, lower in zip(scene.boxes, scene.boxes[1:]):
        assert upper[3] <= lower[1]  # row bands: no two words share a line
    assert scene.answer() == ", ".join(scene.words)


def test_heldout_reads_only_heldout_words():
    train_words = set(word_pool("train", easy=True))
    for seed in range(200):
        scene, _ = generate_words(random.Random(seed), split="heldout", draw=False)
        for word in scene.words:
            if not word.rstrip("%").isdigit():
                assert word not in train_words and word in set(word_pool("heldout", easy=True))
    assert not set(word_pool("heldout", easy=True)) & train_words
    assert set(vocabulary("train").easy_landmarks) <= train_words


def test_words_sample_is_a_pure_function_of_its_index():
    config = GeneratorConfig(split="train", sample_kinds=(("words", 1.0),), difficulty="easy", image_size=192)
    a, b = make_sample(config, 7), make_sample(config, 7)
    assert a.messages == b.messages and a.meta["kind"] == "words"
    assert a.images[0].tobytes() == b.images[0].tobytes()
    assert a.messages[0]["content"][0] == {"type": "image"}
    answer = a.messages[1]["content"][0]["text"]
    assert answer and answer == ", ".join(answer.split(", "))
