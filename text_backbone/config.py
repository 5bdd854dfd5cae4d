"""MiniMaxText01Config: the text backbone's hyper-parameters, validated, with named presets.

Field names follow the released remote-code `config.json` schema (`model_type = "minimax_text_01"`,
SPEC_NOTES §1.1) so `to_dict()` writes a file the released code reads. `from_dict` also reads transformers'
native `minimax` schema (`layer_types`, `*_factor`, `rope_parameters`, `partial_rotary_factor`).

    cfg = MiniMaxText01Config.from_preset("tiny")          # test-sized
    cfg = MiniMaxText01Config.from_preset("minimax-text-01")  # the released 456B model (build on meta)
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LIGHTNING = 0  # attn_type_list code for a lightning (linear) attention layer
SOFTMAX = 1  # attn_type_list code for a softmax (full) attention layer


def hybrid_attn_types(num_layers: int, softmax_every: int = 8) -> list[int]:
    """One softmax layer after every `softmax_every - 1` lightning layers: [0]*7 + [1], repeated (SPEC_NOTES §1.1)."""
    return [SOFTMAX if (i + 1) % softmax_every == 0 else LIGHTNING for i in range(num_layers)]


def deepnorm_alpha(num_layers: int) -> float:
    """The released residual multiplier alpha = (2N)^0.25 (3.5566 for N = 80; SPEC_NOTES §7.3)."""
    return (2 * num_layers) ** 0.25


@dataclass
class MiniMaxText01Config:
    vocab_size: int = 200064
    hidden_size: int = 6144
    num_hidden_layers: int = 80
    num_attention_heads: int = 64
    num_key_value_heads: int = 8
    head_dim: int = 128
    intermediate_size: int = 9216
    num_local_experts: int = 32
    num_experts_per_tok: int = 2
    hidden_act: str = "silu"
    attn_type_list: list[int] = field(default_factory=lambda: hybrid_attn_types(80))
    rope_theta: float = 10_000_000.0
    rotary_dim: int = 64
    rms_norm_eps: float = 1e-5
    # The lightning output norm spans all heads; the remote code leaves it at RMSNorm's default 1e-6 while vLLM
    # uses 1e-5 (SPEC_NOTES §2.2, UNCERTAIN). We follow the released remote code. Not in the released schema.
    lightning_norm_eps: float = 1e-6
    postnorm: bool = True
    layernorm_full_attention_alpha: float = 3.5565588200778455
    layernorm_full_attention_beta: float = 1.0
    layernorm_linear_attention_alpha: float = 3.5565588200778455
    layernorm_linear_attention_beta: float = 1.0
    layernorm_mlp_alpha: float = 3.5565588200778455
    layernorm_mlp_beta: float = 1.0
    shared_intermediate_size: int = 0
    router_aux_loss_coef: float = 0.001
    router_jitter_noise: float = 0.0
    # Token-drop capacity (SPEC_NOTES §4.3, value not reported): None = dropless, as at inference.
    expert_capacity_factor: float | None = None
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    max_position_embeddings: int = 8192
    block_size: int = 256
    attention_dropout: float = 0.0
    model_type: str = "minimax_text_01"

    # ---------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        problems = []
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                    "head_dim", "intermediate_size", "num_local_experts", "num_experts_per_tok", "block_size",
                    "max_position_embeddings")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if problems:
            raise ValueError("invalid MiniMaxText01Config: " + "; ".join(problems))
        self.attn_type_list = [int(t) for t in self.attn_type_list]
        if len(self.attn_type_list) != self.num_hidden_layers:
            problems.append(f"attn_type_list has {len(self.attn_type_list)} entries for {self.num_hidden_layers} layers")
        if any(t not in (LIGHTNING, SOFTMAX) for t in self.attn_type_list):
            problems.append(f"attn_type_list entries must be 0 (lightning) or 1 (softmax), got {sorted(set(self.attn_type_list))}")
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                            f"num_key_value_heads ({self.num_key_value_heads})")
        if not (0 < self.rotary_dim <= self.head_dim) or self.rotary_dim % 2:
            problems.append(f"rotary_dim must be even and in (0, head_dim={self.head_dim}], got {self.rotary_dim}")
        if not 1 <= self.num_experts_per_tok <= self.num_local_experts:
            problems.append(f"num_experts_per_tok ({self.num_experts_per_tok}) must be in [1, num_local_experts="
                            f"{self.num_local_experts}]")
        if self.hidden_act != "silu":
            problems.append(f"hidden_act {self.hidden_act!r} is not supported; MiniMax-Text-01 uses 'silu'")
        if not self.postnorm:
            problems.append("postnorm=False is not supported: every released MiniMax-Text-01 model uses post-norm")
        shared = self.shared_intermediate_size
        if isinstance(shared, (list, tuple)):  # VL-01's text_config stores [0]
            shared = shared[0] if len(shared) == 1 else sum(shared)
        if shared:
            problems.append(f"shared_intermediate_size={self.shared_intermediate_size} (a shared expert) is not "
                            "supported; the released checkpoints have none")
        self.shared_intermediate_size = 0
        for name in ("rms_norm_eps", "lightning_norm_eps", "rope_theta"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.expert_capacity_factor is not None and not self.expert_capacity_factor > 0:
            problems.append(f"expert_capacity_factor must be None or > 0, got {self.expert_capacity_factor}")
        if self.tie_word_embeddings:
            problems.append("tie_word_embeddings=True is not supported; MiniMax-Text-01 has a separate lm_head")
        if problems:
            raise ValueError("invalid MiniMaxText01Config: " + "; ".join(problems))

    # ---------------------------------------------------------------- derived values
    @property
    def softmax_layer_indices(self) -> list[int]:
        return [i for i, t in enumerate(self.attn_type_list) if t == SOFTMAX]

    @property
    def num_key_value_groups(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def residual_alpha_beta(self, layer_idx: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """((alpha, beta) of the attention branch, (alpha, beta) of the MoE branch) for one layer."""
        if self.attn_type_list[layer_idx] == SOFTMAX:
            attn = (self.layernorm_full_attention_alpha, self.layernorm_full_attention_beta)
        else:
            attn = (self.layernorm_linear_attention_alpha, self.layernorm_linear_attention_beta)
        return attn, (self.layernorm_mlp_alpha, self.layernorm_mlp_beta)

    # ---------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "MiniMaxText01Config":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        values = dict(PRESETS[name])
        values.update(overrides)
        return cls(**values)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """The released remote-code schema (plus our few extra fields, which the remote code ignores)."""
        out = dataclasses.asdict(self)
        out["architectures"] = ["MiniMaxText01ForCausalLM"]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "MiniMaxText01Config":
        """Reads the released schema or transformers' `minimax` schema; unknown keys are ignored."""
        raw = dict(raw)
        if "layer_types" in raw and "attn_type_list" not in raw:
            raw = _from_transformers_schema(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["model_type"] = "minimax_text_01"
        return cls(**values)

    def save(self, path: str | Path) -> None:
        from text_backbone.weights_io import write_json  # atomic write

        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "MiniMaxText01Config":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no config.json at {path}: a checkpoint folder needs one") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
        return cls.from_dict(raw)


_TRANSFORMERS_LAYER_TYPES = {"linear_attention": LIGHTNING, "full_attention": SOFTMAX}


def _from_transformers_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """transformers' native `minimax` config -> the released field names (SPEC_NOTES §6.3)."""
    out = dict(raw)
    try:
        out["attn_type_list"] = [_TRANSFORMERS_LAYER_TYPES[t] for t in raw["layer_types"]]
    except KeyError as err:
        raise ValueError(f"unknown layer type {err} in layer_types; expected 'linear_attention' or 'full_attention'") from None
    renames = {
        "full_attn_alpha_factor": "layernorm_full_attention_alpha",
        "full_attn_beta_factor": "layernorm_full_attention_beta",
        "linear_attn_alpha_factor": "layernorm_linear_attention_alpha",
        "linear_attn_beta_factor": "layernorm_linear_attention_beta",
        "mlp_alpha_factor": "layernorm_mlp_alpha",
        "mlp_beta_factor": "layernorm_mlp_beta",
    }
    for src, dst in renames.items():
        if src in raw:
            out[dst] = raw[src]
    hidden, heads = raw.get("hidden_size", 6144), raw.get("num_attention_heads", 64)
    head_dim = raw.get("head_dim") or hidden // heads
    out["head_dim"] = head_dim
    rope = raw.get("rope_parameters") or {}
    if "rope_theta" in rope:
        out["rope_theta"] = rope["rope_theta"]
    # A transformers config without a partial-rotary field rotates the whole head (FINDINGS.md).
    partial = rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0))
    out["rotary_dim"] = int(head_dim * partial)
    return out


def _small_config(vocab, hidden, layers, heads, kv_heads, head_dim, inter, experts, top_k, rotary, block, max_pos):
    alpha = deepnorm_alpha(layers)
    return dict(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, head_dim=head_dim, intermediate_size=inter, num_local_experts=experts,
        num_experts_per_tok=top_k, attn_type_list=hybrid_attn_types(layers), rotary_dim=rotary, block_size=block,
        max_position_embeddings=max_pos,
        layernorm_full_attention_alpha=alpha, layernorm_linear_attention_alpha=alpha, layernorm_mlp_alpha=alpha,
    )


PRESETS: dict[str, dict[str, Any]] = {
    # Test-sized: 8 layers so the 7:1 pattern has one softmax layer; head_dim != hidden/heads like the real model.
    "tiny": _small_config(vocab=1024, hidden=64, layers=8, heads=4, kv_heads=2, head_dim=32, inter=96, experts=4,
                          top_k=2, rotary=16, block=16, max_pos=4096),
    # A few tens of millions of parameters, still trainable on a laptop CPU.
    "small": _small_config(vocab=4096, hidden=384, layers=8, heads=6, kv_heads=2, head_dim=64, inter=768, experts=8,
                           top_k=2, rotary=32, block=64, max_pos=32768),
    # MiniMax-Text-01 as released (SPEC_NOTES §1.1).
    "minimax-text-01": dict(max_position_embeddings=10_240_000),
}
