"""save_pretrained / from_pretrained of the text model in the released layout."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from text_backbone.config import MiniMaxText01Config
from text_backbone.model import MiniMaxText01ForCausalLM
from text_backbone.weights_io import CheckpointError, KeyMismatchError, NotSafetensorsError, TruncatedFileError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MiniMaxText01ForCausalLM(MiniMaxText01Config.from_preset("tiny")).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 1024, (2, 23))


def test_save_load_is_exact_single_and_sharded(tmp_path, model, ids):
    expected = model(ids).logits
    model.save_pretrained(tmp_path / "single")
    model.save_pretrained(tmp_path / "sharded", max_shard_size=200_000)
    assert (tmp_path / "single" / "model.safetensors").exists()
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    for folder in ("single", "sharded"):
        loaded = MiniMaxText01ForCausalLM.from_pretrained(tmp_path / folder)
        assert loaded.config == model.config
        assert torch.equal(loaded(ids).logits, expected)
    keys = set(load_file(tmp_path / "single" / "model.safetensors"))
    assert "model.layers.0.self_attn.qkv_proj.weight" in keys and "lm_head.weight" in keys
    assert "model.layers.0.block_sparse_moe.experts.3.w2.weight" in keys
    assert not any("slope" in k for k in keys)  # derived buffers are never saved


def test_dtype_on_load(tmp_path, model):
    model.save_pretrained(tmp_path)
    loaded = MiniMaxText01ForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.lm_head.weight.dtype == torch.bfloat16
    assert loaded.model.layers[0].self_attn.slope.dtype == torch.float32


def _edit(tmp_path, model, change):
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    change(tensors)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})


def test_missing_and_misshaped_keys_are_listed_together(tmp_path, model):
    def change(t):
        del t["model.layers.2.block_sparse_moe.gate.weight"]
        t["model.norm.weight"] = torch.ones(3)
        t["model.layers.0.extra.weight"] = torch.ones(1)

    _edit(tmp_path, model, change)
    with pytest.raises(KeyMismatchError) as err:
        MiniMaxText01ForCausalLM.from_pretrained(tmp_path)
    text = str(err.value)
    assert "model.layers.2.block_sparse_moe.gate.weight" in text and "model.norm.weight" in text
    assert "model.layers.0.extra.weight" in text


def test_truncated_and_foreign_files(tmp_path, model):
    model.save_pretrained(tmp_path / "cut")
    path = tmp_path / "cut" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(TruncatedFileError, match="model.safetensors"):
        MiniMaxText01ForCausalLM.from_pretrained(tmp_path / "cut")
    model.save_pretrained(tmp_path / "foreign")
    (tmp_path / "foreign" / "model.safetensors").write_text("this is not a tensor file\n")
    with pytest.raises(NotSafetensorsError):
        MiniMaxText01ForCausalLM.from_pretrained(tmp_path / "foreign")
    with pytest.raises((CheckpointError, FileNotFoundError)):
        MiniMaxText01ForCausalLM.from_pretrained(tmp_path / "nowhere")
