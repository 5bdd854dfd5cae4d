"""Log-likelihoods of target tokens through `lm_head` without ever building full-vocabulary logits.

    token_lp = labelled_log_likelihoods(hidden, lm_head.weight, targets)   # [B, T-1], 0 where ignored

Training needs log p(target) only where a label is: 2% of a VQA batch's positions, 26% of a description's.
Computing `hidden @ W.T` over every position costs a [B, T, V] fp32 tensor and the same again for its
gradient: 3.3 GB each for one 4k-token sequence at the released vocabulary of 200,064. Here:

1. the hidden states at labelled positions are gathered first (N rows instead of B * T);
2. those rows pass through `lm_head` and log-softmax in chunks of `rows_per_chunk`, chosen so that one chunk's
   fp32 logits stay under `chunk_bytes` (32 MB by default);
3. each chunk is activation-checkpointed: its logits are not kept for backward but recomputed there, one chunk at
   a time, so no [N, V] tensor outlives its chunk. `lm_head` is called as a module (not its weight read directly),
   so sharded training sees it used: ZeRO-3 gathers the weight in forward and again in the recompute.

Peak memory of the loss is then a few chunk-sized tensors at once (in backward: the recomputed logits, their
softmax and its gradient), under 128 MB at the default 32 MB chunks, at any sequence length and vocabulary,
instead of 2 * B * T * V * 4 bytes.

The arithmetic is the full path's: logits are `(hidden @ W.T)` in the weight's dtype, then upcast, exactly as
`MiniMaxText01ForCausalLM.forward` computes them, so fp32 results agree with `F.cross_entropy` over full
logits to rounding (tested in float64 against it, with padding, packing and ignore_index).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
DEFAULT_CHUNK_BYTES = 32 * 2**20


def rows_per_chunk(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """How many rows of fp32 logits fit in `chunk_bytes` (at least one)."""
    return max(1, chunk_bytes // (4 * vocab_size))


def upcast_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least fp32 (bf16/fp16 -> fp32; float64 stays float64, so float64 tests stay exact)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def log_likelihoods_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reference path: log p(target) [B, T'] from full logits [B, T', V] aligned with targets, 0 where the target
    is IGNORE_INDEX (also what the model uses when it has built full logits anyway)."""
    # cross_entropy fuses log-softmax and the gather without materialising [B, T', V] log-probabilities twice.
    nll = F.cross_entropy(logits.flatten(0, 1), targets.clamp_min(0).flatten(), reduction="none")
    return (-nll).view_as(targets) * (targets != IGNORE_INDEX)


def _chunk_log_likelihoods(head: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor,
                           targets: torch.Tensor) -> torch.Tensor:
    """log p(target) of each row [n]: the model's own lm_head, then upcast, exactly as the full path computes it."""
    logits = upcast_logits(head(rows))  # [n, V]: the only full-vocabulary tensor, one chunk at a time
    return logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)


def labelled_log_likelihoods(hidden: torch.Tensor, head: nn.Module, targets: torch.Tensor, *,
                             chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """log p(target) at every predicting position, [B, T'] (fp32, or float64 for float64 inputs), 0 where the
    target is IGNORE_INDEX.

    hidden [B, T', C]: the final normed hidden state of each predicting position (for next-token targets,
    the model's hidden states without the last position); head: the model's `lm_head` (an nn.Linear [V, C]),
    called as a module so that whatever wraps it (FSDP, ZeRO-3 parameter gathering, adapters) sees every use;
    targets [B, T'].
    """
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and targets {tuple(targets.shape)} disagree on [B, T]")
    keep = targets != IGNORE_INDEX  # [B, T']
    rows, picked_targets = hidden[keep], targets[keep]  # [N, C], [N]: only the labelled positions reach lm_head
    chunk = rows_per_chunk(head.out_features, chunk_bytes)
    pieces = []
    # At least one (possibly empty) chunk: lm_head is called even without a labelled position, so the result stays
    # in the autograd graph and every process of a sharded run calls the same modules.
    for start in range(0, max(rows.shape[0], 1), chunk):
        part = slice(start, start + chunk)
        if torch.is_grad_enabled():
            # Keep nothing of the chunk's logits for backward: they are recomputed there, one chunk at a time.
            pieces.append(checkpoint(_chunk_log_likelihoods, head, rows[part], picked_targets[part],
                                     use_reentrant=False))
        else:
            pieces.append(_chunk_log_likelihoods(head, rows[part], picked_targets[part]))
    picked = torch.cat(pieces)  # [N]
    return picked.new_zeros(targets.shape).masked_scatter(keep, picked)
