"""Stage IV: direct preference optimisation against a frozen copy of the starting weights (SPEC_NOTES §7.2).

    reference = frozen_reference(model)                       # before accelerator.prepare(model)
    chosen, rejected, aux = pair_log_likelihoods(model, batch, image_mode)
    losses, rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta)

Each preference sample is two documents in the batch, chosen then rejected, sharing its images (see
`training.datasets.BatchLayout`); log pi(y | x) is summed over the assistant tokens of each document. The
shared prompt contributes identical log-probabilities to both documents, so it cancels in the margin.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from training.losses import document_log_likelihoods, dpo_loss, shifted_targets, target_log_probs

__all__ = ["frozen_reference", "pair_log_likelihoods", "dpo_loss"]


def frozen_reference(model: nn.Module) -> nn.Module:
    """A copy of the policy's current weights that never trains: no gradients, eval mode."""
    reference = copy.deepcopy(model)
    reference.requires_grad_(False)
    return reference.eval()


def pair_log_likelihoods(model: nn.Module, batch: dict[str, Any], image_mode: str, loss_path: str = "labelled"
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log pi(chosen) [P], log pi(rejected) [P], router aux loss) for a batch of P pairs; only the response
    tokens reach lm_head on the default "labelled" loss path."""
    inputs = batch["model_inputs"]
    token_lp, aux = target_log_probs(model, inputs, batch["labels"], image_mode, loss_path)
    targets = shifted_targets(batch["labels"], inputs.get("cu_seqlens"))
    per_document = document_log_likelihoods(token_lp, targets, batch["doc_ids"], batch["num_docs"])
    return per_document[0::2], per_document[1::2], aux


@torch.no_grad()
def reference_log_likelihoods(reference: nn.Module, batch: dict[str, Any], image_mode: str,
                              loss_path: str = "labelled") -> tuple[torch.Tensor, torch.Tensor]:
    chosen, rejected, _ = pair_log_likelihoods(reference, batch, image_mode, loss_path)
    return chosen, rejected
