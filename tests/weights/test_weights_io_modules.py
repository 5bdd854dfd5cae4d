"""Loading into modules: meta-device materialisation, dtypes, ties, derived buffers, and key-map rules."""
import math

import pytest
import torch
from torch import nn

from text_backbone.weights_io import (
    CheckpointError,
    Drop,
    Fuse,
    KeyMap,
    KeyMismatchError,
    Rename,
    Unfuse,
    convert_state_dict,
    load_into_module,
    load_state_dict,
    save_safetensors,
)


class Decay(nn.Module):
    """A layer with a learned weight, a persistent integer counter and a derived (non-persistent) table."""

    def __init__(self, heads=4):
        super().__init__()
        self.heads = heads
        self.weight = nn.Parameter(torch.zeros(heads, 3))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("slopes", self._slopes(None), persistent=False)

    def _slopes(self, device):
        return 2.0 ** (-8.0 * torch.arange(1, self.heads + 1, device=device, dtype=torch.float32) / self.heads)

    def reset_derived_buffers(self):
        self.slopes = self._slopes(self.weight.device)


class TiedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.decay = Decay()
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied


def saved_tied_net(directory):
    torch.manual_seed(0)
    net = TiedNet()
    with torch.no_grad():
        net.decay.weight.normal_()
        net.decay.steps.fill_(41)
    save_safetensors(net, directory, max_shard_size=64)
    return net


def test_meta_module_is_materialised_with_the_requested_dtype(tmp_path):
    source = saved_tied_net(tmp_path)
    with torch.device("meta"):
        net = TiedNet()
    assert net.decay.slopes.is_meta

    report = load_into_module(net, tmp_path, dtype=torch.bfloat16)

    assert sorted(report.loaded) == ["decay.steps", "decay.weight", "embed.weight", "head.weight"]
    for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
        assert tensor.device.type == "cpu", name
    assert net.embed.weight.dtype == torch.bfloat16 and net.decay.weight.dtype == torch.bfloat16
    assert torch.equal(net.embed.weight, source.embed.weight.to(torch.bfloat16))
    assert torch.equal(net.decay.weight, source.decay.weight.to(torch.bfloat16))
    assert net.decay.steps.dtype == torch.int64 and net.decay.steps.item() == 41  # integers keep their dtype
    assert isinstance(net.embed.weight, nn.Parameter) and net.embed.weight.requires_grad
    assert net.head.weight is net.embed.weight  # still tied
    # The derived table came from the module's hook, on the right device, in its own precision.
    assert net.decay.slopes.dtype == torch.float32 and torch.equal(net.decay.slopes, Decay()._slopes(None))


def test_meta_module_keeps_its_dtype_when_none_is_given(tmp_path):
    saved_tied_net(tmp_path)
    with torch.device("meta"):
        net = TiedNet().to(torch.float16)
    load_into_module(net, tmp_path)
    assert net.embed.weight.dtype == torch.float16 and not net.embed.weight.is_meta


def test_missing_derived_buffer_hook_is_an_error_naming_the_class(tmp_path):
    class NoHook(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(2))
            self.register_buffer("table", torch.ones(2), persistent=False)

    save_safetensors({"weight": torch.ones(2)}, tmp_path)
    with torch.device("meta"):
        module = NoHook()
    with pytest.raises(CheckpointError, match=r"table[\s\S]*reset_derived_buffers\(self\)` on NoHook"):
        load_into_module(module, tmp_path)


def test_real_module_is_overwritten_in_place(tmp_path):
    source = saved_tied_net(tmp_path)
    net = TiedNet()
    weight_before = net.embed.weight

    load_into_module(net, tmp_path)

    assert net.embed.weight is weight_before  # identity kept: optimizers and ties still point at it
    assert torch.equal(net.embed.weight, source.embed.weight)
    assert torch.equal(net.decay.slopes, source.decay.slopes)


def test_real_module_converted_to_dtype(tmp_path):
    source = saved_tied_net(tmp_path)
    net = TiedNet()
    load_into_module(net, tmp_path, dtype=torch.float64)
    assert net.embed.weight.dtype == torch.float64 and net.head.weight is net.embed.weight
    assert torch.equal(net.embed.weight, source.embed.weight.double())
    assert net.decay.slopes.dtype == torch.float32  # derived buffers keep their precision
    assert net.decay.steps.dtype == torch.int64


def test_allowed_missing_parameter_of_a_meta_module_stays_on_meta(tmp_path):
    save_safetensors({"embed.weight": torch.ones(10, 4), "decay.weight": torch.ones(4, 3),
                      "decay.steps": torch.tensor(1)}, tmp_path)
    with torch.device("meta"):
        net = TiedNet()
    net.head.weight = nn.Parameter(torch.empty(10, 4, device="meta"))  # untie: a separate head

    report = load_into_module(net, tmp_path, allow_missing=["head.*"])

    assert report.missing == ("head.weight",)
    assert net.head.weight.is_meta and not net.embed.weight.is_meta


# ------------------------------------------------------------------------------------------------------
# Key maps
# ------------------------------------------------------------------------------------------------------

def fused_checkpoint_state():
    torch.manual_seed(3)
    return {
        "model.layers.0.mlp.experts.gate_up_proj": torch.randn(3, 8, 5),  # 3 experts, 2 x 4 rows each
        "model.layers.0.mlp.experts.down_proj": torch.randn(3, 5, 4),
        "model.layers.0.mlp.gate.weight": torch.randn(3, 5),
        "model.layers.0.self_attn.slope_rate": torch.randn(2, 1, 1),
        "model.norm.weight": torch.randn(5),
    }


UNFUSE = KeyMap([
    Drop("model.layers.{layer}.self_attn.slope_rate"),
    Rename("model.layers.{layer}.mlp.gate.weight", "model.layers.{layer}.moe.gate.weight"),
    Unfuse("model.layers.{layer}.mlp.experts.gate_up_proj",
           ("model.layers.{layer}.moe.experts.{e}.w1.weight", "model.layers.{layer}.moe.experts.{e}.w3.weight"),
           index="e"),
    Unfuse("model.layers.{layer}.mlp.experts.down_proj", ("model.layers.{layer}.moe.experts.{e}.w2.weight",),
           index="e"),
])


def test_unfuse_splits_per_index_and_chunk_and_fuse_inverts_it():
    state = fused_checkpoint_state()
    unfused = convert_state_dict(state, UNFUSE)

    gate_up = state["model.layers.0.mlp.experts.gate_up_proj"]
    for e in range(3):
        assert torch.equal(unfused[f"model.layers.0.moe.experts.{e}.w1.weight"], gate_up[e, :4])
        assert torch.equal(unfused[f"model.layers.0.moe.experts.{e}.w3.weight"], gate_up[e, 4:])
        assert torch.equal(unfused[f"model.layers.0.moe.experts.{e}.w2.weight"],
                           state["model.layers.0.mlp.experts.down_proj"][e])
    assert "model.layers.0.self_attn.slope_rate" not in unfused
    assert torch.equal(unfused["model.norm.weight"], state["model.norm.weight"])  # unclaimed keys pass through
    assert len(unfused) == 3 * 3 + 2

    back = convert_state_dict(unfused, UNFUSE.inverse())
    assert set(back) == set(state) - {"model.layers.0.self_attn.slope_rate"}
    for key, tensor in back.items():
        assert torch.equal(tensor, state[key]), key


def test_key_map_from_disk_reads_slices_and_matches_the_in_memory_conversion(tmp_path, build_module):
    state = fused_checkpoint_state()
    save_safetensors(state, tmp_path, max_shard_size=100)
    expected = convert_state_dict(state, UNFUSE)
    with torch.device("meta"):
        module = build_module({k: tuple(v.shape) for k, v in expected.items()})

    report = load_into_module(module, tmp_path, key_map=UNFUSE)

    assert report.dropped == ("model.layers.0.self_attn.slope_rate",)
    for key, tensor in module.state_dict().items():
        assert torch.equal(tensor, expected[key]), key
    assert load_state_dict(tmp_path, key_map=UNFUSE).keys() == expected.keys()


def test_fuse_from_disk_across_shards(tmp_path, build_module):
    unfused = convert_state_dict(fused_checkpoint_state(), UNFUSE)
    save_safetensors(unfused, tmp_path, max_shard_size=64)  # experts land in different shards
    fused = convert_state_dict(unfused, UNFUSE.inverse())
    module = build_module({k: tuple(v.shape) for k, v in fused.items()})

    load_into_module(module, tmp_path, key_map=UNFUSE.inverse())

    for key, tensor in module.state_dict().items():
        assert torch.equal(tensor, fused[key]), key


def test_fuse_reports_a_missing_index():
    unfused = convert_state_dict(fused_checkpoint_state(), UNFUSE)
    del unfused["model.layers.0.moe.experts.1.w3.weight"]
    with pytest.raises(KeyMismatchError, match=r"missing model\.layers\.0\.moe\.experts\.1\.w3\.weight"):
        convert_state_dict(unfused, UNFUSE.inverse())


def test_two_sources_for_one_target_is_a_problem():
    rules = [Rename("a.{x}", "out.{x}"), Rename("b.{x}", "out.{x}")]
    with pytest.raises(KeyMismatchError, match="out.w would be produced from several checkpoint keys: a.w, b.w"):
        convert_state_dict({"a.w": torch.zeros(1), "b.w": torch.zeros(1)}, rules)


def test_first_matching_rule_wins_and_placeholders_span_dots():
    rules = KeyMap([Rename("lm.layers.{i}.special", "special.{i}"), Rename("lm.{rest}", "model.{rest}")])
    out = convert_state_dict({"lm.layers.2.special": torch.zeros(1), "lm.layers.2.mlp.w": torch.ones(1),
                              "other": torch.ones(2)}, rules)
    assert sorted(out) == ["model.layers.2.mlp.w", "other", "special.2"]


@pytest.mark.parametrize("make", [
    lambda: Rename("a.{x}", "b.{y}"),
    lambda: Unfuse("a.{x}", ("b.{x}",), index="e"),  # target lacks the index
    lambda: Unfuse("a.{e}", ("b.{e}",), index="e"),  # index also in the source
    lambda: Fuse(("a.{x}.{e}", "c.{e}"), "b.{x}", index="e"),  # sources disagree on placeholders
])
def test_malformed_rules_are_rejected_when_built(make):
    with pytest.raises(ValueError, match="placeholder"):
        make()


def test_gradients_flow_after_meta_load(tmp_path):
    """Materialised parameters are real leaves: a step of training works on them."""
    saved_tied_net(tmp_path)
    with torch.device("meta"):
        net = TiedNet()
    load_into_module(net, tmp_path)
    loss = net.head(net.embed(torch.tensor([1, 2]))).square().mean() + net.decay.weight.sum() * 0
    loss.backward()
    assert net.embed.weight.grad is not None and math.isfinite(net.embed.weight.grad.sum().item())
