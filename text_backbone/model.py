"""MiniMax-Text-01: the hybrid lightning/softmax attention MoE decoder (SPEC_NOTES §1–4), readable top to bottom.

    embed -> 80 x DecoderLayer -> RMSNorm -> lm_head
    DecoderLayer (post-norm, DeepNorm-style; SPEC_NOTES §1.3):
        a = input_layernorm(x);          x1 = alpha_attn * a + beta_attn * attention(a)
        b = post_attention_layernorm(x1); y = alpha_mlp * b + beta_mlp * moe(b)

Layer i is lightning attention when attn_type_list[i] == 0 and softmax attention when it is 1.
Module names equal the released checkpoint's (SPEC_NOTES §6.2), so `state_dict()` is the released layout.

Shapes: B batch, T new tokens, C hidden, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from text_backbone.cache import HybridCache
from text_backbone.config import LIGHTNING, MiniMaxText01Config
from text_backbone.layers.lightning_attention import LightningAttention
from text_backbone.layers.moe import SparseMoE, load_balancing_loss
from text_backbone.layers.norm import RMSNorm
from text_backbone.layers.rope import rotary_cos_sin
from text_backbone.layers.softmax_attention import SoftmaxAttention
from text_backbone.ops.linear_cross_entropy import (IGNORE_INDEX, labelled_log_likelihoods, log_likelihoods_from_logits,
                                                   upcast_logits)


@dataclass
class CausalLMOutput:
    logits: torch.Tensor | None  # [B, T, V] fp32 (float64 for a float64 model); None when forward(..., return_logits=False)
    loss: torch.Tensor | None = None  # cross-entropy (+ router_aux_loss_coef * aux_loss when labels are given)
    aux_loss: torch.Tensor | None = None  # load-balancing loss, unscaled
    cache: HybridCache | None = None
    hidden_states: torch.Tensor | None = None  # final normed hidden states [B, T, C]
    # With labels: log p(next-token target) per predicting position [B, T-1] fp32, 0 where nothing is predicted.
    target_log_probs: torch.Tensor | None = None


class DecoderLayer(nn.Module):
    def __init__(self, config: MiniMaxText01Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.is_lightning = config.attn_type_list[layer_idx] == LIGHTNING
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        if self.is_lightning:
            self.self_attn = LightningAttention(config, layer_idx)
        else:
            self.self_attn = SoftmaxAttention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.block_sparse_moe = SparseMoE(config)
        (self.attn_alpha, self.attn_beta), (self.mlp_alpha, self.mlp_beta) = config.residual_alpha_beta(layer_idx)

    def forward(self, x, *, cos, sin, cache, padding_mask, step_mask, cu_seqlens, backend):
        """x [B, T, C] -> (y [B, T, C], router logits [B*T, E], expert ids [B*T, k])."""
        a = self.input_layernorm(x)
        if self.is_lightning:
            state = cache.lightning_state(self.layer_idx) if cache is not None else None
            h, new_state = self.self_attn(
                a, state=state, output_state=cache is not None, attention_mask=step_mask,
                cu_seqlens=cu_seqlens, backend=backend,
            )
            if cache is not None:
                cache.set_lightning_state(self.layer_idx, new_state)
        else:
            h = self.self_attn(a, cos, sin, kv_cache=cache, key_padding_mask=padding_mask, cu_seqlens=cu_seqlens)
        # Post-norm: the residual is the NORMALISED input, scaled by alpha (SPEC_NOTES §1.3).
        x1 = self.attn_alpha * a + self.attn_beta * h
        b = self.post_attention_layernorm(x1)
        m, router_logits, expert_ids = self.block_sparse_moe(b)
        return self.mlp_alpha * b + self.mlp_beta * m, router_logits, expert_ids


class MiniMaxText01Model(nn.Module):
    def __init__(self, config: MiniMaxText01Config) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        # Training switch: recompute each layer in backward instead of keeping its activations (memory for compute).
        self.activation_checkpointing = False

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        cache: HybridCache | None = None,
        backend: str = "auto",
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Returns (hidden states [B, T, C] after the final norm, router logits per layer, expert ids per layer).

        attention_mask: [B, T] or [B, past + T], 1 = real token, 0 = padding (left padding for generation).
        cu_seqlens: [N + 1] boundaries of packed documents in a B = 1 row; documents never see each other.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = x.shape
        if cu_seqlens is not None and (B != 1 or cache is not None or attention_mask is not None):
            raise ValueError("packed input (cu_seqlens) needs batch size 1, no cache and no attention_mask")
        past = cache.seq_len if cache is not None else 0
        if cache is not None:
            padding_mask = cache.full_padding_mask(B, T, attention_mask, x.device)
        else:
            padding_mask = attention_mask
        if padding_mask is not None and bool(padding_mask.all()):
            padding_mask = None
        step_mask = padding_mask[:, -T:] if padding_mask is not None else None
        if step_mask is not None and bool(step_mask.all()):
            step_mask = None
        if position_ids is None:
            position_ids = self._default_positions(B, T, past, padding_mask, cu_seqlens, x.device)
        cos, sin = rotary_cos_sin(position_ids, self.config.rotary_dim, self.config.rope_theta, x.dtype)

        all_logits, all_ids = [], []
        # Only a training forward keeps activations for a backward; with a cache we are generating.
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled() and cache is None
        for layer in self.layers:
            run = partial(checkpoint, layer, use_reentrant=False) if recompute else layer
            x, router_logits, expert_ids = run(
                x, cos=cos, sin=sin, cache=cache, padding_mask=padding_mask, step_mask=step_mask,
                cu_seqlens=cu_seqlens, backend=backend,
            )
            all_logits.append(router_logits)
            all_ids.append(expert_ids)
        if cache is not None:
            cache.advance(T, padding_mask)
        return self.norm(x), all_logits, all_ids

    @staticmethod
    def _default_positions(B, T, past, padding_mask, cu_seqlens, device) -> torch.Tensor:
        if cu_seqlens is not None:  # restart at 0 in every packed document
            starts = torch.repeat_interleave(cu_seqlens[:-1], cu_seqlens[1:] - cu_seqlens[:-1])
            return (torch.arange(T, device=device) - starts.to(device)).unsqueeze(0)
        if padding_mask is not None:  # count only real tokens, so a left-padded row matches the row alone
            positions = (padding_mask.long().cumsum(-1) - 1).clamp_min(0)
            return positions[:, -T:]
        return torch.arange(past, past + T, device=device).unsqueeze(0).expand(B, T)


class MiniMaxText01ForCausalLM(nn.Module):
    def __init__(self, config: MiniMaxText01Config) -> None:
        super().__init__()
        self.config = config
        self.model = MiniMaxText01Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) for weights, zero biases (RMSNorm weights start at one)."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            if module.weight.device.type != "meta":
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def new_cache(self) -> HybridCache:
        return HybridCache(self.config)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        cache: HybridCache | None = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
        return_logits: bool = True,
        backend: str = "auto",
    ) -> CausalLMOutput:
        """labels [B, T] aligned with input_ids (shifted inside); IGNORE_INDEX (-100) positions do not count.

        logits_to_keep > 0 computes logits for the last that many positions only (generation).
        With labels and `return_logits=False` (what training wants), the loss and `target_log_probs` come from the
        labelled positions only, through `lm_head` in vocabulary-bounded chunks (`ops.linear_cross_entropy`), and
        no [B, T, V] logits are built; with the logits returned, they are read from those logits.
        """
        if use_cache and cache is None:
            cache = self.new_cache()
        hidden, router_logits, expert_ids = self.model(
            input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
            cu_seqlens=cu_seqlens, cache=cache, backend=backend,
        )
        logits = None
        if return_logits:
            kept = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
            logits = upcast_logits(self.lm_head(kept))
        token_mask = None
        if attention_mask is not None and attention_mask.shape[1] == hidden.shape[1]:
            token_mask = attention_mask.reshape(-1)
        aux = load_balancing_loss(router_logits, expert_ids, self.config.num_local_experts, token_mask)
        loss = target_log_probs = None
        if labels is not None:
            if logits_to_keep:
                raise ValueError("labels need every position's hidden state; do not pass logits_to_keep with labels")
            targets = shifted_targets(labels, cu_seqlens)  # [B, T-1]
            if logits is not None:  # built anyway: gather from them rather than run lm_head a second time
                target_log_probs = log_likelihoods_from_logits(logits[:, :-1], targets)
            else:
                target_log_probs = labelled_log_likelihoods(hidden[:, :-1], self.lm_head, targets)
            loss = -target_log_probs.sum() / (targets != IGNORE_INDEX).sum().clamp_min(1)
            if self.config.router_aux_loss_coef:
                loss = loss + self.config.router_aux_loss_coef * aux
        return CausalLMOutput(logits=logits, loss=loss, aux_loss=aux, cache=cache, hidden_states=hidden,
                              target_log_probs=target_log_probs)

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, path, dtype: torch.dtype | None = None, device=None) -> "MiniMaxText01ForCausalLM":
        from text_backbone.checkpoint import load_text_model

        return load_text_model(cls, Path(path), dtype=dtype, device=device)

    def save_pretrained(self, path, max_shard_size: int | str = "5GB") -> None:
        from text_backbone.checkpoint import save_text_model

        save_text_model(self, Path(path), max_shard_size=max_shard_size)


def shifted_targets(labels: torch.Tensor, cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
    """labels [B, T] -> next-token targets [B, T-1], IGNORE_INDEX where nothing is predicted: with packed documents
    (B = 1, `cu_seqlens` [N + 1]) the last token of one document never predicts the first token of the next."""
    targets = labels[:, 1:].clone()
    if cu_seqlens is not None:
        ends = cu_seqlens[1:-1].long() - 1  # positions whose next token starts another document
        targets[0, ends[ends < targets.shape[1]]] = IGNORE_INDEX
    return targets


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy over full logits [B, T, V]: the plain reference for the labelled-position
    path that `forward(labels=...)` takes."""
    targets = shifted_targets(labels, cu_seqlens)
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


def parameter_counts(model: MiniMaxText01ForCausalLM) -> dict[str, int]:
    """Total parameters, and those active per token excluding embeddings and lm_head (SPEC_NOTES §1.1)."""
    config = model.config
    total = sum(p.numel() for p in model.parameters())
    embedding = model.model.embed_tokens.weight.numel() + model.lm_head.weight.numel()
    experts = sum(p.numel() for layer in model.model.layers for p in layer.block_sparse_moe.experts.parameters())
    active_experts = experts * config.num_experts_per_tok // config.num_local_experts
    return {"total": total, "active_non_embedding": total - embedding - experts + active_experts}
