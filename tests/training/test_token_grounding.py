"""Token grounding ("stage 0b"): patch targets name the token a patch shows, the loss is minimal exactly where
image tokens equal the embeddings, and a short run moves only the tower and projector."""
import json

import pytest
import torch

from minimax_vl.model import MiniMaxVL01
from training.token_grounding import (IGNORE, Grounding, main, make_batch, patch_token_targets, text_under,
                                      token_spans)


@pytest.fixture(scope="module")
def demo_model():
    return MiniMaxVL01.from_preset("demo")


def test_token_spans_cover_the_text_as_a_transcription_tokenises_it(demo_model):
    tokenizer = demo_model.processor.tokenizer
    for text in ("Oak St", "150 m", "25", "Votes", "Zyx"):
        spans = token_spans(tokenizer, text)
        assert spans[0][1] == 0 and spans[-1][2] == len(text)
        assert all(a[2] == b[1] for a, b in zip(spans, spans[1:]))  # contiguous, no gaps
        # The tokens are those of " " + text, minus a leading token that is only the space.
        ids = tokenizer.encode(" " + text)
        assert [t for t, _, _ in spans] == (ids[1:] if tokenizer.decode([ids[0]]) == " " else ids)


def test_a_label_between_patch_centres_still_gets_targets(demo_model):
    # y 9..18 holds no patch centre (centres at y = 8, 24): the centre rule of stage 0 would miss it entirely.
    # It overlaps patch row 0 by 7 px (78% of its height) and row 1 by 2 px: row 0 shows it.
    tokenizer = demo_model.processor.tokenizer
    spans = token_spans(tokenizer, "Oak St")
    targets = patch_token_targets([("Oak St", (44, 9, 83, 18))], 192, 192, tile=96, patch=16, grid=(2, 2),
                                  spans_of=lambda text: spans)
    top_left = targets[1].view(6, 6)
    shown = {(i, j): int(top_left[i, j]) for i in range(6) for j in range(6) if top_left[i, j] != IGNORE}
    assert {i for i, _ in shown} == {0}
    # x 44..83 overlaps patch columns 2 (32..48, 4 px: under 40% of a 16-px patch), 3, 4 and 5 (80..96, 3 px).
    assert sorted(j for _, j in shown) == [3, 4]
    # Column 3's centre (x 56) is over "Oak" (characters 0-2 of 6 span x 44..63.5); column 4's (x 72) over " St".
    assert shown[(0, 3)] == spans[0][0] and shown[(0, 4)] == spans[1][0]
    for tile in (2, 3, 4):
        assert (targets[tile] == IGNORE).all()


def test_the_box_overlapped_most_wins():
    patch = (0.0, 0.0, 16.0, 16.0)
    small = ("A", (0, 10, 16, 16))  # 6 of its 6 px height inside, 96 px^2
    large = ("B", (0, 4, 16, 20))   # 12 of 16 px inside, 192 px^2
    assert text_under(patch, [small, large])[0] == "B"
    assert text_under(patch, [("C", (0, 14, 16, 30))]) is None  # 2 of 16 px: too little shows


def test_loss_is_least_when_image_tokens_are_the_embeddings(demo_model):
    embeddings = demo_model.language_model.model.embed_tokens.weight.detach()
    grounding = Grounding(embeddings, scale=100.0)
    targets = torch.tensor([[5, 17, IGNORE], [300, IGNORE, 9]])
    exact = embeddings[targets.clamp(min=0)]  # [2, 3, D]; IGNORE slots hold anything
    loss, metrics = grounding(exact, targets)
    assert metrics["token_acc"] == 1.0 and metrics["text_patches"] == 4
    assert metrics["norm_loss"] < 1e-10
    wrong, _ = grounding(embeddings[(targets.clamp(min=0) + 1)], targets)
    assert wrong > loss + 10
    doubled, metrics = grounding(2 * exact, targets)  # same direction, wrong norm: only the norm term grows
    assert metrics["norm_loss"] == pytest.approx(torch.log(torch.tensor(2.0)).item() ** 2, rel=1e-5)


def test_batches_mark_text_where_stage_zero_does_and_more(demo_model):
    from training.vision_pretrain import make_batch as centre_batch
    pixels, targets = make_batch(demo_model, range(3), "train", 192, 1.3, "easy")
    _, words, _ = centre_batch(demo_model, range(3), "train", 192, 1.3, "easy")
    assert pixels.shape == (15, 3, 96, 96) and targets.shape == (15, 36)
    shown = targets != IGNORE
    assert shown.sum() > (words > 0).sum()  # labels between patch centres count too
    assert (targets[shown] < demo_model.config.text_config.vocab_size).all()


def test_short_run_moves_tower_and_projector_only(tmp_path, demo_model):
    base = tmp_path / "base"
    demo_model.save_pretrained(base)
    out = tmp_path / "run"
    assert main(["--init", str(base), "--output", str(out), "--steps", "2", "--batch-size", "2",
                 "--eval-every", "2", "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and "val_token_acc" in records[-1]
    trained = MiniMaxVL01.from_pretrained(out / "final")
    before = dict(demo_model.named_parameters())
    changed = {name.split(".")[0] for name, p in trained.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"vision_tower", "multi_modal_projector"}
