"""End to end on the tiny preset: an image and a question in, text out, quickly."""
import time

import torch


def test_generate_returns_text_for_an_image_within_seconds(tiny_model, make_image):
    image = make_image(700, 1000, seed=5)  # (height, width): a 1000x700 photo, 2x3 tiles + thumbnail
    start = time.perf_counter()
    answer = tiny_model.generate(image, "What is in this picture?", max_new_tokens=8)
    elapsed = time.perf_counter() - start
    assert isinstance(answer, str)
    # Measured ~1 s on one shared CPU core; 15 s only catches pathologies (re-encoding the image per token,
    # an O(T^2) decode, a fallback to the token-by-token reference op) while tolerating a loaded machine.
    assert elapsed < 15.0, f"generate took {elapsed:.1f} s"
    # Greedy decoding is deterministic: the same call gives the same answer.
    assert tiny_model.generate(image, "What is in this picture?", max_new_tokens=8) == answer


def test_generate_from_processor_outputs_matches_a_manual_greedy_loop(tiny_model, make_image):
    """The low-level form returns token ids; each is the greedy choice of a full forward (no cache) over the
    prompt and the tokens before it (teacher forced, so one near-tie cannot derail the comparison)."""
    processor = tiny_model.processor
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}],
        add_generation_prompt=True)
    inputs = processor(images=[make_image(700, 1000, seed=5)], text=prompt)
    out = tiny_model.generate(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"],
                              image_sizes=inputs["image_sizes"], max_new_tokens=8, eos_token_id=[])
    [tokens] = out.tokens
    assert len(tokens) == 8
    ids = torch.cat([inputs["input_ids"], torch.tensor([tokens])], dim=1)
    with torch.no_grad():
        logits = tiny_model(ids, inputs["pixel_values"], inputs["image_sizes"]).logits[0]
    prompt_length = inputs["input_ids"].shape[1]
    for step, token in enumerate(tokens):
        row = logits[prompt_length - 1 + step]  # the position that predicts this token
        # Cached decode and one full forward differ by fp32 summation order only (~1e-6 on O(1) logits).
        assert row[token] >= row.max() - 1e-4, (step, token, int(row.argmax()))


def test_a_question_after_an_image_starts_on_a_new_line_as_in_the_training_data(tiny_model, make_image):
    """Training documents read "<image>\\n{question}" (LLaVA format); generate adds the newline when the caller
    leaves it out, so both spellings give the same prompt, and a text-only question gets none."""
    from minimax_vl.engine import _continuation_text

    image = make_image(300, 400, seed=3)
    settings = dict(max_new_tokens=6)
    assert tiny_model.generate(image, "How many bars?", **settings) == tiny_model.generate(image, "\nHow many bars?", **settings)
    assert _continuation_text("Q?", after_image=True).startswith("\nQ?")
    assert _continuation_text("\nQ?", after_image=True).startswith("\nQ?") and not _continuation_text(
        "\nQ?", after_image=True).startswith("\n\n")
    assert _continuation_text("Q?", after_image=False).startswith("Q?")
    state = tiny_model.prefill(image)
    from minimax_vl.engine import vl_answer_many
    assert vl_answer_many(tiny_model, state, ["How many bars?"], max_new_tokens=6) == [
        tiny_model.generate(image, "How many bars?", max_new_tokens=6)]
