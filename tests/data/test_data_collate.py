"""Padding and packing collators: layout, cu_seqlens, positions, image order, useful-token fractions."""
import random

import pytest
import torch

from minimax_vl.data.samples import STAGE_MIXES, GeneratorConfig, make_sample
from training.data.collate import (
    PackingCollator,
    PaddingCollator,
    first_fit,
    supervised_token_fraction,
    useful_token_fraction,
)
from training.data.encoding import IGNORE_INDEX, encode_conversation
from training.data.tokenizer import load_tokenizer

PAD = 2


def doc(length, tag, images=0):
    ids = torch.full((length,), 10 + tag, dtype=torch.long)
    labels = ids.clone()
    labels[: length // 2] = IGNORE_INDEX
    example = {"input_ids": ids, "labels": labels}
    if images:
        example["pixel_values"] = [torch.full((1,), float(100 * tag + k)) for k in range(images)]
    return example


def test_padding_collator_right_pads_and_masks():
    batch = PaddingCollator(PAD)([doc(3, 1), doc(5, 2, images=1), doc(1, 3)])
    assert batch["input_ids"].shape == (3, 5)
    assert batch["input_ids"][0].tolist() == [11, 11, 11, PAD, PAD]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5, [1, 0, 0, 0, 0]]
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert [float(p) for p in batch["pixel_values"]] == [200.0]
    fixed = PaddingCollator(PAD, pad_to="max_length", max_length=8)([doc(3, 1)])
    assert fixed["input_ids"].shape == (1, 8)
    with pytest.raises(ValueError, match="more than max_length=4"):
        PaddingCollator(PAD, pad_to="max_length", max_length=4)([doc(6, 1)])


def test_first_fit_places_each_document_in_the_first_row_with_room():
    assert first_fit([6, 5, 4, 3, 2], 10) == [[0, 2], [1, 3, 4]]
    with pytest.raises(ValueError, match="document 1 has 11 tokens"):
        first_fit([3, 11], 10)


def test_packing_layout_cu_seqlens_positions_and_images():
    docs = [doc(6, 1, images=1), doc(5, 2, images=2), doc(4, 3), doc(3, 4, images=1), doc(2, 5)]
    batch = PackingCollator(max_length=10, pad_token_id=PAD)(docs)
    # Rows: [doc0 (6) + doc2 (4)] and [doc1 (5) + doc3 (3) + doc4 (2)].
    assert batch["input_ids"].shape == (2, 10)
    assert batch["document_order"] == [0, 2, 1, 3, 4]
    assert batch["cu_seqlens"].dtype == torch.int32
    assert batch["cu_seqlens"].tolist() == [0, 6, 10, 15, 18, 20]
    assert batch["max_seqlen"] == 6
    flat = batch["input_ids"].view(-1)
    positions = batch["position_ids"].view(-1)
    bounds = batch["cu_seqlens"].tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        assert (flat[start:end] == flat[start]).all()  # a segment holds one document
        assert positions[start:end].tolist() == list(range(end - start))
    # Images follow their documents' token order, not the input order.
    assert [float(p) for p in batch["pixel_values"]] == [100.0, 200.0, 201.0, 400.0]
    assert useful_token_fraction(batch) == 1.0


def test_packing_pads_row_tails_as_their_own_segment():
    batch = PackingCollator(max_length=8, pad_token_id=PAD)([doc(5, 1), doc(6, 2)])
    assert batch["cu_seqlens"].tolist() == [0, 5, 8, 14, 16]
    assert batch["input_ids"][0, 5:].tolist() == [PAD] * 3
    assert batch["attention_mask"].sum() == 11
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert int(batch["cu_seqlens"][-1]) == batch["input_ids"].numel()


def generated_documents(count, image_tokens, max_length):
    """Encoded stage-II documents (20:1 image questions to text-only) with their real text lengths."""
    tokenizer = load_tokenizer()
    config = GeneratorConfig(sample_kinds=STAGE_MIXES[2], max_questions=4)
    docs = []
    for index in range(count):
        sample = make_sample(config, index, draw=False)
        ids, labels = encode_conversation(sample.messages, tokenizer, [image_tokens] * len(sample.images),
                                          max_length=max_length)
        docs.append({"input_ids": ids, "labels": labels})
    return docs


def test_packing_beats_padding_on_the_generated_mix():
    max_length, batch_size = 2048, 8
    docs = generated_documents(192, image_tokens=576, max_length=max_length)
    random.Random(0).shuffle(docs)
    batches = [docs[i:i + batch_size] for i in range(0, len(docs), batch_size)]

    def mean_fraction(collator, groups):
        fractions = [useful_token_fraction(collator(g)) for g in groups]
        return sum(fractions) / len(fractions)

    padded_fixed = mean_fraction(PaddingCollator(PAD, pad_to="max_length", max_length=max_length), batches)
    padded_longest = mean_fraction(PaddingCollator(PAD), batches)
    # The packer sees a buffer of documents (64 here) and fills rows of the same max_length.
    packed = mean_fraction(PackingCollator(max_length, PAD), [docs[i:i + 64] for i in range(0, len(docs), 64)])
    # Like for like (rows of one static length): packing wastes under a tenth, padding two thirds.
    assert packed >= 2 * padded_fixed, (packed, padded_fixed)
    assert packed > 0.9
    # Against dynamic padding the gain is small here, because 576 image tokens dominate every document.
    assert packed > padded_longest, (packed, padded_longest)
    batch = PackingCollator(max_length, PAD)(docs[:64])
    assert 0 < supervised_token_fraction(batch) < useful_token_fraction(batch)
