"""Log-likelihoods of target tokens through `lm_head` without ever building full-vocabulary logits.

    token_lp = labelled_log_likelihoods(hidden, lm_head.weight, targets)   # [B, T-1], 0 where ignored

Training needs log p(target) only where a label is: 2% of a VQA batch's positions, 26% of a description's.
Computing `hidden @ W.T` over every position costs a [B, T, V] fp32 tensor and the same again for its
gradient: 3.3 GB each for one 4k-token sequence at the released vocabulary of 200,064. Here:

1. the hidden states at labelled positions are gathered first (N rows instead of B * T);
2. those rows pass through `lm_head` and log-softmax in chunks of `rows_per_chunk`, chosen so that one chunk's
   fp32 logits stay under `chunk_bytes` (64 MB by default); only the per-row log-sum-exp is kept;
3. the backward pass recomputes each chunk's logits and turns them into the gradients of the hidden rows and
   of the weight on the spot (d log p / d logits = onehot(target) - softmax), so no [N, V] tensor outlives
   a chunk.

Peak memory of the loss is then two chunks of logits (logits and their softmax-gradient), 128 MB at the
default, at any sequence length and vocabulary, instead of 2 * B * T * V * 4 bytes.

The arithmetic is the full path's: logits are `(hidden @ W.T)` in the weight's dtype, then upcast, exactly as
`MiniMaxText01ForCausalLM.forward` computes them, so fp32 results agree with `F.cross_entropy` over full
logits to rounding (tested in float64 against it, with padding, packing and ignore_index).
"""
from __future__ import annotations

import torch

IGNORE_INDEX = -100
DEFAULT_CHUNK_BYTES = 64 * 2**20


def rows_per_chunk(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """How many rows of fp32 logits fit in `chunk_bytes` (at least one)."""
    return max(1, chunk_bytes // (4 * vocab_size))


def upcast_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least fp32 (bf16/fp16 -> fp32; float64 stays float64, so float64 tests stay exact)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _chunk_logits(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # The same order of operations as the model's lm_head: product in the weight's dtype, then upcast.
    return upcast_logits(rows @ weight.t())


class _LinearLogLikelihood(torch.autograd.Function):
    """rows [N, C], weight [V, C], targets [N] (all valid) -> log p(target) [N] in fp32."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        log_likelihood = torch.empty(rows.shape[0], dtype=torch.promote_types(rows.dtype, torch.float32),
                                     device=rows.device)
        log_normaliser = torch.empty_like(log_likelihood)
        for start in range(0, rows.shape[0], chunk):
            stop = min(start + chunk, rows.shape[0])
            logits = _chunk_logits(rows[start:stop], weight)  # [n, V]
            lse = torch.logsumexp(logits, dim=-1)
            log_normaliser[start:stop] = lse
            log_likelihood[start:stop] = logits.gather(1, targets[start:stop, None]).squeeze(1) - lse
        ctx.save_for_backward(rows, weight, targets, log_normaliser)
        ctx.chunk = chunk
        return log_likelihood

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        rows, weight, targets, log_normaliser = ctx.saved_tensors
        need_rows, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_rows = torch.empty_like(rows) if need_rows else None
        grad_weight = torch.zeros_like(weight, dtype=log_normaliser.dtype) if need_weight else None
        for start in range(0, rows.shape[0], ctx.chunk):
            stop = min(start + ctx.chunk, rows.shape[0])
            logits = _chunk_logits(rows[start:stop], weight)  # recomputed: [n, V]
            # d log p(t) / d logits = onehot(t) - softmax(logits); times the incoming gradient per row.
            grad_logits = torch.exp(logits - log_normaliser[start:stop, None]).neg_()
            grad_logits.scatter_add_(1, targets[start:stop, None],
                                     torch.ones_like(log_normaliser[start:stop, None]))
            grad_logits.mul_(grad_output[start:stop, None])
            grad_logits = grad_logits.to(weight.dtype)
            if need_rows:
                grad_rows[start:stop] = grad_logits @ weight
            if need_weight:
                grad_weight += grad_logits.t() @ rows[start:stop]
        if need_weight:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_rows, grad_weight, None, None


def labelled_log_likelihoods(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                             chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """log p(target) at every predicting position, [B, T'] (fp32, or float64 for float64 inputs), 0 where the
    target is IGNORE_INDEX.

    hidden [B, T', C]: the final normed hidden state of each predicting position (for next-token targets,
    the model's hidden states without the last position); weight [V, C]: `lm_head.weight`; targets [B, T'].
    """
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and targets {tuple(targets.shape)} disagree on [B, T]")
    keep = targets != IGNORE_INDEX  # [B, T']
    rows = hidden[keep]  # [N, C]: only the labelled positions reach lm_head
    chunk = rows_per_chunk(weight.shape[0], chunk_bytes)
    picked = _LinearLogLikelihood.apply(rows, weight, targets[keep], chunk)  # [N]
    return picked.new_zeros(targets.shape).masked_scatter(keep, picked)
