"""Token-level losses for training: summed cross-entropy (normalised by the caller) and per-document log-likelihoods.

    targets = shifted_targets(labels, cu_seqlens)        # [B, T-1], IGNORE_INDEX where nothing is predicted
    ce_sum = token_log_likelihood(logits, targets).neg().sum()
    doc_logps = document_log_likelihoods(logits, targets, doc_ids, num_docs)   # DPO: log pi(y | x) per document

Why sums: the loop divides the summed cross-entropy by the number of target tokens in the whole global batch
(all processes, all accumulation steps), so the gradient is the same however a batch is split across processes
and micro-batches. `text_backbone.model.causal_lm_loss` is the per-micro-batch mean of the same quantity.

Shapes: B rows, T tokens, V vocabulary; packed batches are B = 1 with `cu_seqlens` [N + 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from text_backbone.model import IGNORE_INDEX


def shifted_targets(labels: torch.Tensor, cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
    """labels [B, T] -> next-token targets [B, T-1]; the same rule as `causal_lm_loss`: with packed documents
    the last token of one document never predicts the first token of the next."""
    targets = labels[:, 1:].clone()
    if cu_seqlens is not None:
        ends = cu_seqlens[1:-1].long() - 1
        targets[0, ends[ends < targets.shape[1]]] = IGNORE_INDEX
    return targets


def count_targets(labels: torch.Tensor, cu_seqlens: torch.Tensor | None = None) -> int:
    return int((shifted_targets(labels, cu_seqlens) != IGNORE_INDEX).sum())


def token_log_likelihood(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every predicting position [B, T-1] (0 where the target is IGNORE_INDEX).

    logits [B, T, V] (fp32 from the model); positions 0..T-2 predict targets 0..T-2.
    """
    mask = targets != IGNORE_INDEX
    # cross_entropy fuses log-softmax and the gather without materialising [B, T, V] log-probabilities twice.
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.clamp_min(0).flatten(), reduction="none")
    return (-nll).view_as(targets) * mask


def document_log_likelihoods(logits: torch.Tensor, targets: torch.Tensor, doc_ids: torch.Tensor,
                             num_docs: int) -> torch.Tensor:
    """Sum of target log-probabilities per document -> [num_docs].

    doc_ids [B, T]: the document each token belongs to (-1 for padding); a target belongs to the document of
    the token it predicts.
    """
    token_lp = token_log_likelihood(logits, targets)  # [B, T-1]
    owner = doc_ids[:, 1:]
    keep = (targets != IGNORE_INDEX) & (owner >= 0)
    sums = token_lp.new_zeros(num_docs)
    return sums.index_add(0, owner[keep], token_lp[keep])


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair DPO loss -log sigmoid(beta * [(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))]), [P].

    Returns (losses [P], {"chosen_reward", "rejected_reward", "margin"} each [P]); rewards are
    beta * (log pi - log ref), the implicit rewards DPO reports.
    """
    chosen_reward = beta * (policy_chosen - reference_chosen)
    rejected_reward = beta * (policy_rejected - reference_rejected)
    margin = chosen_reward - rejected_reward
    losses = -F.logsigmoid(margin)
    return losses, {"chosen_reward": chosen_reward.detach(), "rejected_reward": rejected_reward.detach(),
                    "margin": margin.detach()}
