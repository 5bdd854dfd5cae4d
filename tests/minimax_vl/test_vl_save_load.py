"""save_pretrained -> from_pretrained is exact, writes the released layout, and bad checkpoints fail clearly."""
import json
import shutil

import jinja2
import pytest
import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from minimax_vl import chat_template
from minimax_vl.model import MiniMaxVL01
from minimax_vl.weights import released_state_dict
from text_backbone.weights_io import KeyMismatchError
from vision.convert import VisionCheckpointError

# Name parts that only timm's ViT uses; a saved checkpoint must hold CLIP names instead (SPEC_NOTES §6.1).
TIMM_NAME_PARTS = {"blocks", "cls_token", "pos_embed", "patch_embed", "norm_pre", "qkv", "proj", "norm1", "norm2"}


def released_vision_names(num_layers):
    """SPEC_NOTES §6.1's vision names, from its rules: 5 globals + 16 per encoder layer."""
    prefix = "vision_tower.vision_model."
    names = {prefix + n for n in ("embeddings.class_embedding", "embeddings.patch_embedding.weight",
                                  "embeddings.position_embedding.weight", "pre_layrnorm.weight", "pre_layrnorm.bias")}
    for j in range(num_layers):
        for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                     "layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"):
            names |= {f"{prefix}encoder.layers.{j}.{part}.weight", f"{prefix}encoder.layers.{j}.{part}.bias"}
    return names


@pytest.fixture(scope="module")
def perturbed_model():
    """The tiny preset with every parameter moved off its initial value (LayerNorm weights are ones and biases
    zeros at init, so a loader that skipped or swapped them would otherwise go unnoticed)."""
    model = MiniMaxVL01.from_preset("tiny", seed=1)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model


PROMPT_MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]


def _inputs(model, make_image):
    prompt = model.processor.apply_chat_template(PROMPT_MESSAGES, add_generation_prompt=True)
    return model.processor(images=[make_image(300, 500, seed=3)], text=prompt)


@pytest.fixture(scope="module")
def inputs(perturbed_model, make_image):
    return _inputs(perturbed_model, make_image)


def _logits(model, inputs):
    with torch.no_grad():
        return model(inputs["input_ids"], inputs["pixel_values"], inputs["image_sizes"]).logits


def _saved_keys(path):
    keys = []
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            keys.extend(f.keys())
    return keys


@pytest.mark.parametrize("max_shard_size", ["5GB", "200KB"], ids=["single-file", "sharded"])
def test_save_then_load_is_bit_exact(perturbed_model, inputs, tmp_path, max_shard_size, make_image):
    perturbed_model.save_pretrained(tmp_path, max_shard_size=max_shard_size)
    shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    if max_shard_size == "5GB":
        assert shards == ["model.safetensors"]
    else:
        assert len(shards) > 2 and (tmp_path / "model.safetensors.index.json").exists()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        assert (tmp_path / name).is_file(), name

    loaded = MiniMaxVL01.from_pretrained(tmp_path)
    assert loaded.config == perturbed_model.config
    assert not loaded.training
    original_state, loaded_state = perturbed_model.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    assert all(torch.equal(original_state[k], loaded_state[k]) for k in original_state)
    # The saved processor files rebuild the same processor: same ids, same tiles.
    again = _inputs(loaded, make_image)
    assert torch.equal(again["input_ids"], inputs["input_ids"])
    assert torch.equal(again["pixel_values"][0], inputs["pixel_values"][0])
    assert torch.equal(_logits(loaded, inputs), _logits(perturbed_model, inputs))


def test_saved_names_are_the_released_layout(perturbed_model, tmp_path):
    perturbed_model.save_pretrained(tmp_path, max_shard_size="200KB")
    keys = _saved_keys(tmp_path)
    assert len(keys) == len(set(keys))
    assert set(keys) == set(released_state_dict(perturbed_model))
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(keys)
    vision = {k for k in keys if k.startswith("vision_tower.")}
    assert vision == released_vision_names(perturbed_model.config.vision_config.num_hidden_layers)
    assert not [k for k in vision if TIMM_NAME_PARTS & set(k.split("."))]
    others = [k for k in keys if not k.startswith(("vision_tower.vision_model.", "language_model.model.",
                                                   "multi_modal_projector."))]
    assert sorted(others) == ["image_newline", "language_model.lm_head.weight"]


CONVERSATIONS = [
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the chart."}]}],
    [{"role": "system", "content": chat_template.DEFAULT_SYSTEM_PROMPT},
     {"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image"},
                                  {"type": "text", "text": " with "}, {"type": "image"}]},
     {"role": "assistant", "content": "The first has more bars.\nThe second is a map."},
     {"role": "user", "content": "Which is larger?"}],
    [{"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]},
     {"role": "user", "content": "  leading spaces and a {{ brace }} and {% tag %}  "},
     {"role": "assistant", "content": ""},
     {"role": "tool", "content": '{"name": "lookup", "response": 42}'}],
]


def test_saved_chat_template_renders_like_python(perturbed_model, tmp_path):
    perturbed_model.save_pretrained(tmp_path)
    template = json.loads((tmp_path / "tokenizer_config.json").read_text())["chat_template"]
    environments = {
        "plain jinja2": jinja2.Environment(),
        # How transformers and vLLM render chat templates.
        "transformers-style": ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True),
    }
    for label, environment in environments.items():
        compiled = environment.from_string(template)
        for messages in CONVERSATIONS:
            for add_generation_prompt in (False, True):
                expected = chat_template.render(messages, add_generation_prompt=add_generation_prompt)
                got = compiled.render(messages=messages, add_generation_prompt=add_generation_prompt)
                assert got == expected, (label, messages, add_generation_prompt)
    assert chat_template.render(CONVERSATIONS[1]).count(chat_template.IMAGE) == 2


def _copy_with_edit(source, target, edit):
    shutil.copytree(source, target)
    state = load_file(str(target / "model.safetensors"))
    edit(state)
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def test_checkpoint_with_a_missing_vision_key_is_a_clear_error(perturbed_model, tmp_path):
    perturbed_model.save_pretrained(tmp_path / "good")
    key = "vision_tower.vision_model.encoder.layers.1.mlp.fc1.bias"
    bad = _copy_with_edit(tmp_path / "good", tmp_path / "bad", lambda state: state.pop(key))
    with pytest.raises(VisionCheckpointError) as error:
        MiniMaxVL01.from_pretrained(bad)
    message = str(error.value)
    assert "missing" in message and "encoder.layers.1.mlp.fc1.bias" in message and "vision_tower." in message


def test_checkpoint_with_a_wrong_shaped_projector_is_a_clear_error(perturbed_model, tmp_path):
    perturbed_model.save_pretrained(tmp_path / "good")
    key = "multi_modal_projector.linear_1.weight"
    good_shape = tuple(perturbed_model.multi_modal_projector.linear_1.weight.shape)  # (64, 32)
    wrong = (good_shape[0], good_shape[1] + 3)
    bad = _copy_with_edit(tmp_path / "good", tmp_path / "bad", lambda state: state.__setitem__(key, torch.zeros(wrong)))
    with pytest.raises(KeyMismatchError) as error:
        MiniMaxVL01.from_pretrained(bad)
    message = str(error.value)
    assert key in message and str(wrong) in message and str(good_shape) in message


def test_half_precision_checkpoint_computes_in_float32_on_cpu_unless_asked(perturbed_model, tmp_path):
    """The shipped demo model is stored in fp16; on CPU it loads as fp32 (half matmuls are slow there), with
    exactly the stored values; dtype= keeps whatever precision the caller asks for."""
    import copy

    half = copy.deepcopy(perturbed_model).half()
    half.save_pretrained(tmp_path)
    loaded = MiniMaxVL01.from_pretrained(tmp_path)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    expected = {k: v.float() for k, v in half.state_dict().items()}
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, expected[name].to(value.dtype)), name
    kept = MiniMaxVL01.from_pretrained(tmp_path, dtype=torch.float16)
    assert {p.dtype for p in kept.parameters()} == {torch.float16}
