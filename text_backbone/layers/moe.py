"""Sparse mixture of experts: fp32 router softmax, top-k renormalised, SwiGLU experts (SPEC_NOTES §4).

Tokens are dispatched grouped by expert: the (token, slot) pairs are sorted by expert id once, each expert
runs one matmul over its contiguous slice, and results are scattered back with their routing weights.
The only Python loop is over experts (32 at most), never over tokens.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from text_backbone.config import MiniMaxText01Config


class Expert(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x); names as in the released checkpoint."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden, inner, bias=False)
        self.w2 = nn.Linear(inner, hidden, bias=False)
        self.w3 = nn.Linear(hidden, inner, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoE(nn.Module):
    def __init__(self, config: MiniMaxText01Config) -> None:
        super().__init__()
        self.num_experts = config.num_local_experts
        self.top_k = config.num_experts_per_tok
        self.capacity_factor = config.expert_capacity_factor
        self.jitter_noise = config.router_jitter_noise
        self.gate = nn.Linear(config.hidden_size, self.num_experts, bias=False)
        self.experts = nn.ModuleList(Expert(config.hidden_size, config.intermediate_size) for _ in range(self.num_experts))

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, C] -> (router logits [N, E] fp32, weights [N, k] in x's dtype, expert ids [N, k])."""
        if self.training and self.jitter_noise > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - self.jitter_noise, 1.0 + self.jitter_noise)
        logits = self.gate(x).float()
        probs = logits.softmax(dim=-1)
        weights, expert_ids = probs.topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits, weights.to(x.dtype), expert_ids

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [..., C] -> (y [..., C], router logits [N, E] fp32, expert ids [N, k])."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [N, C]
        logits, weights, expert_ids = self.route(x)
        flat_ids = expert_ids.reshape(-1)  # [N*k] slot -> expert
        order = torch.argsort(flat_ids, stable=True)  # slots grouped by expert, token order kept inside a group
        counts = torch.bincount(flat_ids, minlength=self.num_experts).tolist()
        token_of_slot = order // self.top_k
        slot_weights = weights.reshape(-1)[order]
        if self.capacity_factor is not None:
            keep = self._within_capacity(counts, x.shape[0], x.device)
            order, token_of_slot, slot_weights = order[keep], token_of_slot[keep], slot_weights[keep]
            counts = [min(c, self._capacity(x.shape[0])) for c in counts]
        grouped = x[token_of_slot]  # [S, C] inputs sorted by expert
        outputs = []
        start = 0
        for expert, count in zip(self.experts, counts):
            if count:
                outputs.append(expert(grouped[start : start + count]))
            start += count
        y = torch.zeros_like(x)
        if outputs:
            y.index_add_(0, token_of_slot, torch.cat(outputs) * slot_weights.unsqueeze(-1))
        return y.reshape(shape), logits, expert_ids

    def _capacity(self, num_tokens: int) -> int:
        return max(1, math.ceil(self.capacity_factor * num_tokens * self.top_k / self.num_experts))

    def _within_capacity(self, counts: list[int], num_tokens: int, device) -> torch.Tensor:
        """Token-drop (SPEC_NOTES §4.3): each expert keeps its first `capacity` slots in token order."""
        capacity = self._capacity(num_tokens)
        rank = torch.cat([torch.arange(c, device=device) for c in counts]) if counts else torch.empty(0)
        return rank < capacity


def load_balancing_loss(
    router_logits: list[torch.Tensor], expert_ids: list[torch.Tensor], num_experts: int,
    token_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Switch/Mixtral auxiliary loss as in the released remote code (SPEC_NOTES §4.2).

    All layers' tokens are pooled: f[k, e] = fraction of tokens whose k-th choice is e, P[e] = mean router
    probability; loss = E * sum_{k,e} f[k, e] * P[e]. Equals top_k for perfectly uniform routing.
    token_mask [N] (1 = real token) excludes padding.
    """
    probs = torch.cat([logits.softmax(dim=-1) for logits in router_logits])  # [L*N, E]
    chosen = F.one_hot(torch.cat(expert_ids), num_experts).to(probs.dtype)  # [L*N, k, E]
    if token_mask is None:
        f = chosen.mean(dim=0)
        p = probs.mean(dim=0)
    else:
        m = token_mask.to(probs.dtype).repeat(len(router_logits))  # [L*N]
        denom = m.sum().clamp_min(1.0)
        f = (chosen * m[:, None, None]).sum(0) / denom
        p = (probs * m[:, None]).sum(0) / denom
    return num_experts * (f * p.unsqueeze(0)).sum()
