"""Token-level losses for training: summed cross-entropy (normalised by the caller) and per-document log-likelihoods.

    token_lp, aux = target_log_probs(model, inputs, labels, image_mode)   # [B, T-1], 0 where nothing is predicted
    ce_sum = token_lp.neg().sum()
    doc_logps = document_log_likelihoods(token_lp, targets, doc_ids, num_docs)   # DPO: log pi(y | x) per document

Two loss paths give the same numbers: "labelled" (the default) sends only the labelled positions through
`lm_head`, in vocabulary-bounded chunks (`text_backbone.ops.linear_cross_entropy`); "full" builds [B, T, V]
logits and takes the cross-entropy over them (`token_log_likelihood`), kept as the reference and for benchmarks.

Why sums: the loop divides the summed cross-entropy by the number of target tokens in the whole global batch
(all processes, all accumulation steps), so the gradient is the same however a batch is split across processes
and micro-batches. `text_backbone.model.causal_lm_loss` is the per-micro-batch mean of the same quantity.

Shapes: B rows, T tokens, V vocabulary; packed batches are B = 1 with `cu_seqlens` [N + 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from text_backbone.model import IGNORE_INDEX, shifted_targets
from text_backbone.ops.linear_cross_entropy import log_likelihoods_from_logits

__all__ = ["IGNORE_INDEX", "shifted_targets", "count_targets", "token_log_likelihood", "document_log_likelihoods",
           "dpo_loss"]


def count_targets(labels: torch.Tensor, cu_seqlens: torch.Tensor | None = None) -> int:
    return int((shifted_targets(labels, cu_seqlens) != IGNORE_INDEX).sum())


def token_log_likelihood(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every predicting position [B, T-1] (0 where the target is IGNORE_INDEX).

    logits [B, T, V] (fp32 from the model); positions 0..T-2 predict targets 0..T-2.
    """
    return log_likelihoods_from_logits(logits[:, :-1], targets)


LOSS_PATHS = ("labelled", "full")


def target_log_probs(model, inputs: dict, labels: torch.Tensor, image_mode: str | None = None,
                     loss_path: str = "labelled") -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(target) per predicting position [B, T-1] fp32, 0 where ignored; router aux loss) for one batch.

    `model` is a MiniMaxVL01 (or its wrapped/sharded form); `inputs` its keyword inputs. Both paths run the same
    forward; they differ only in how the log-likelihoods leave the final hidden states.
    """
    if loss_path not in LOSS_PATHS:
        raise ValueError(f"unknown loss path {loss_path!r}; expected one of {LOSS_PATHS}")
    extra = {} if image_mode is None else {"image_mode": image_mode}
    if loss_path == "full":
        out = model(**inputs, **extra)
        return token_log_likelihood(out.logits, shifted_targets(labels, inputs.get("cu_seqlens"))), out.aux_loss
    # Inside the model's forward, so that a sharded (FSDP) lm_head is gathered when it is used.
    out = model(**inputs, **extra, labels=labels, return_logits=False)
    return out.target_log_probs, out.aux_loss


def document_log_likelihoods(token_lp: torch.Tensor, targets: torch.Tensor, doc_ids: torch.Tensor,
                             num_docs: int) -> torch.Tensor:
    """Sum of target log-probabilities per document -> [num_docs].

    token_lp [B, T-1] (`target_log_probs`); doc_ids [B, T]: the document each token belongs to (-1 for padding);
    a target belongs to the document of the token it predicts.
    """
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
