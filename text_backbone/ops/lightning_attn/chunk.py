"""Chunked lightning attention in plain PyTorch: the CPU path for training and prefill.

Shapes: q, k `[B, T, H, K]`, v `[B, T, H, V]`, slope `[H]`, states `[B, H, K, V]` (`[N, H, K, V]` for N
packed documents). Inside, sequences are cut into NC chunks of C tokens, stored chunk-major:
`[NC, B, H, C, K]`, so that any run of chunks is one contiguous batch of small matrices.

Per chunk (README.md in this folder derives every line; λ^n means exp(-slope * n)):

    o     = ((q kᵀ) ⊙ M) v  +  (q ⊙ λ^(i+1)) S_before     # intra-chunk + carried state, M_ij = λ^(i-j), j <= i
    S_end = λ^C S_before  +  kᵀ (v ⊙ λ^(C-1-j))           # state after the chunk

The matrix products run for a group of chunks at a time as batched matmuls; only the `[B, H, K, V]` state
is carried chunk to chunk (one fused op per chunk). Groups keep the working set in cache, and their buffers
are allocated once per call: on a CPU, freshly allocated large tensors cost page faults that are worth more
than the matmuls themselves (docs/PERFORMANCE.md). Every decay factor is λ raised to a non-negative integer,
so nothing overflows whatever the slope or chunk size.

Padding and packed documents use one layout: each segment (a batch row without its pad tokens, or a document
of a packed sequence) starts a fresh chunk and is zero-padded to whole chunks. Pads then sit only at the end
of a segment's last chunk, where they are identity steps: k = v = 0 and the chunk's decay counts only its
real tokens. The state restarts from the segment's initial state at its first chunk.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Rows (B * H * C per chunk) handled per group of chunks: 65536 rows = 128 chunks of 8 heads x 64 tokens
# (16 chunks at the real model's 64 heads), each work buffer 16 MiB in float32. Every multi-threaded op ends
# in a thread barrier, and on the shared 2-core machine a barrier often costs milliseconds, so fewer, larger
# groups won there (2k to 128k rows measured, docs/PERFORMANCE.md); an idle machine may favour smaller groups
# that stay in cache.
ROWS_PER_GROUP = 65536


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """State and decay precision: float64 stays float64, everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------------------------------------
# Layout: where every token goes in the chunked sequence, and how many real tokens each chunk holds.
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkLayout:
    """How tokens map onto chunks.

    `num_chunks` chunks of `chunk_size`; `real_per_chunk[c]` real tokens sit at the front of chunk c (the rest
    are pads); segment n owns chunks `[segment_first_chunk[n], segment_first_chunk[n + 1])` and starts from its
    own initial state. For packed layouts `source` / `target` map the real tokens' rows of the flattened
    `[B * T]` input to rows of the flattened `[NC * C]` packed sequence; both are None for the plain batched
    layout (each batch row is one segment; only the last chunk may be ragged).
    """

    chunk_size: int
    num_chunks: int
    real_per_chunk: torch.Tensor  # [NC] int64
    segment_first_chunk: tuple[int, ...]
    source: torch.Tensor | None = None  # [R] int64
    target: torch.Tensor | None = None  # [R] int64

    @property
    def segment_ranges(self) -> list[tuple[int, int]]:
        bounds = list(self.segment_first_chunk) + [self.num_chunks]
        return list(zip(bounds[:-1], bounds[1:]))


def batched_layout(seq_len: int, chunk_size: int, device: torch.device) -> ChunkLayout:
    """Plain layout: each batch row is one segment of `seq_len` tokens; only the last chunk may be ragged."""
    num_chunks = max(1, -(-seq_len // chunk_size))
    real = torch.full((num_chunks,), chunk_size, dtype=torch.long, device=device)
    real[-1] = seq_len - (num_chunks - 1) * chunk_size
    return ChunkLayout(chunk_size, num_chunks, real, (0,))


def real_token_segments(
    batch: int,
    seq_len: int,
    device: torch.device,
    *,
    cu_seqlens: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The real tokens of a padded and/or packed input, as consecutive segments.

    Segments are the documents of `cu_seqlens` (batch 1) or else the batch rows. Returns (source `[R]`: flat
    indices b * T + t of the real tokens in order, lengths `[N]`: real tokens per segment). Because a pad is an
    identity step, running each segment's real tokens alone gives exactly the padded result.
    """
    if attention_mask is not None:
        is_real = attention_mask.reshape(-1).to(device=device, dtype=torch.bool)  # [B * T]
    else:
        is_real = torch.ones(batch * seq_len, dtype=torch.bool, device=device)
    if cu_seqlens is not None:
        bounds = cu_seqlens.to(device=device, dtype=torch.long)
    else:
        bounds = torch.arange(batch + 1, device=device, dtype=torch.long) * seq_len
    real_cumsum = F.pad(is_real.long().cumsum(0), (1, 0))  # [B*T + 1]
    lengths = real_cumsum[bounds[1:]] - real_cumsum[bounds[:-1]]  # [N]
    return is_real.nonzero().squeeze(1), lengths


def packed_layout(
    batch: int,
    seq_len: int,
    chunk_size: int,
    device: torch.device,
    *,
    cu_seqlens: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> ChunkLayout:
    """Segments from packed documents (`cu_seqlens`, batch 1) and/or a padding mask (pads dropped), each
    starting a fresh chunk. A segment with no real tokens still gets one (all-pad) chunk, so its final state is
    simply its initial state."""
    source, seg_len = real_token_segments(batch, seq_len, device, cu_seqlens=cu_seqlens, attention_mask=attention_mask)
    segments = torch.arange(len(seg_len), device=device)
    seg_chunks = ((seg_len + chunk_size - 1) // chunk_size).clamp(min=1)  # [N]
    first_chunk = F.pad(seg_chunks.cumsum(0), (1, 0))  # [N + 1]
    num_chunks = int(first_chunk[-1])

    seg_of_token = torch.repeat_interleave(segments, seg_len)  # [R]
    first_token = F.pad(seg_len.cumsum(0), (1, 0))[:-1]  # [N] index of each segment's first real token
    pos_in_seg = torch.arange(len(source), device=device) - first_token[seg_of_token]
    target = first_chunk[seg_of_token] * chunk_size + pos_in_seg  # [R]

    seg_of_chunk = torch.repeat_interleave(segments, seg_chunks)  # [NC]
    chunk_in_seg = torch.arange(num_chunks, device=device) - first_chunk[seg_of_chunk]
    real = (seg_len[seg_of_chunk] - chunk_in_seg * chunk_size).clamp(0, chunk_size)  # [NC]
    return ChunkLayout(chunk_size, num_chunks, real, tuple(first_chunk[:-1].tolist()), source, target)


def _pack(x: torch.Tensor, layout: ChunkLayout) -> torch.Tensor:
    """`[B, T, H, D]` -> `[1, NC * C, H, D]`: real tokens moved to their packed rows, zeros elsewhere."""
    B, T, H, D = x.shape
    rows = x.reshape(B * T, H, D).index_select(0, layout.source)  # [R, H, D]
    packed = rows.new_zeros(layout.num_chunks * layout.chunk_size, H, D).index_copy(0, layout.target, rows)
    return packed.unsqueeze(0)


def _unpack(o: torch.Tensor, layout: ChunkLayout, batch: int, seq_len: int) -> torch.Tensor:
    """Inverse of `_pack` for outputs: `[1, NC * C, H, V]` -> `[B, T, H, V]`, zeros at pad positions."""
    H, V = o.shape[2:]
    rows = o[0].index_select(0, layout.target)  # [R, H, V]
    return rows.new_zeros(batch * seq_len, H, V).index_copy(0, layout.source, rows).view(batch, seq_len, H, V)


def _token_major(chunks: torch.Tensor) -> torch.Tensor:
    """View of chunk-major `[G, B, H, C, D]` in token-major order `[B, G, C, H, D]` (no copy)."""
    return chunks.permute(1, 0, 3, 2, 4)


def _load_chunks_into(out: torch.Tensor, x: torch.Tensor, first: int) -> torch.Tensor:
    """Fills `out [G, B, H, C, D]` with chunks first.. of `x [B, T, H, D]` (cast to out's dtype); the part of a
    ragged last chunk beyond T is zeroed. Returns out."""
    G, B, H, C, D = out.shape
    start = first * C
    full = min(G, (x.shape[1] - start) // C)  # whole chunks available
    if full:
        _token_major(out[:full]).copy_(x[:, start : start + full * C].view(B, full, C, H, D))
    if full < G:  # the ragged tail: one partial chunk, then nothing
        rest = x[:, start + full * C :]  # [B, r, H, D]
        out[full:].zero_()
        out[full, :, :, : rest.shape[1]].copy_(rest.transpose(1, 2))
    return out


def _load_chunks(x: torch.Tensor, first: int, end: int, chunk_size: int, acc: torch.dtype) -> torch.Tensor:
    """Chunks [first, end) of `x [B, T, H, D]` as a new `[G, B, H, C, D]` tensor in `acc` (differentiable)."""
    B, _, H, D = x.shape
    return _load_chunks_into(torch.empty(end - first, B, H, chunk_size, D, dtype=acc, device=x.device), x, first)


def _store_chunks(out: torch.Tensor, chunks: torch.Tensor, first: int) -> None:
    """Writes `chunks [G, B, H, C, D]` into `out [B, T, H, D]` from chunk `first` on (dropping a padded tail)."""
    G, B, H, C, D = chunks.shape
    start = first * C
    full = min(G, (out.shape[1] - start) // C)
    if full:
        out[:, start : start + full * C].view(B, full, C, H, D).copy_(_token_major(chunks[:full]))
    if full < G:
        rest = out[:, start + full * C :]  # [B, r, H, D]
        rest.copy_(chunks[full, :, :, : rest.shape[1]].transpose(1, 2))


# ----------------------------------------------------------------------------------------------------------------------
# Decay factors. With n real tokens up to and including position i of a chunk, every factor is λ^(integer >= 0).
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecayFactors:
    """Broadcastable against chunk-major tensors `[NC or G, B, H, C, D]` and states `[B, H, K, V]`."""

    query: torch.Tensor  # [H, C, 1]          λ^(i+1): the carried state as seen by query i
    mask: torch.Tensor  # [H, C, C]           λ^(i-j) for j <= i, else 0: causal intra-chunk decay
    key: torch.Tensor  # [NC, 1, H, C, 1]     λ^(r_c-1-j) for real j < r_c, else 0: weight in the chunk-end state
    chunk: torch.Tensor  # [NC, H, 1, 1]      λ^(r_c): decay of the carried state across chunk c


def decay_factors(slope: torch.Tensor, layout: ChunkLayout, acc: torch.dtype) -> DecayFactors:
    """Real tokens fill each chunk from the front, so the query and mask factors are the same for every chunk;
    only the key and chunk factors depend on how many real tokens (r_c) a chunk holds."""
    C = layout.chunk_size
    s = slope.to(acc).view(-1, 1, 1)  # [H, 1, 1]
    pos = torch.arange(C, device=slope.device)
    query = torch.exp(-s * (pos + 1).to(acc).view(C, 1))  # [H, C, 1]
    lag = pos.view(C, 1) - pos.view(1, C)  # [C, C], i - j
    mask = torch.exp(-s * lag.clamp(min=0).to(acc)).masked_fill(lag < 0, 0.0)  # [H, C, C]
    s_per_chunk = s.view(1, -1, 1)  # [1, H, 1]
    real = layout.real_per_chunk.to(slope.device).view(-1, 1, 1)  # [NC, 1, 1]
    to_end = real - 1 - pos.view(1, 1, C)  # [NC, 1, C]
    key = torch.exp(-s_per_chunk * to_end.clamp(min=0).to(acc)).masked_fill(to_end < 0, 0.0)  # [NC, H, C]
    chunk = torch.exp(-s_per_chunk * real.to(acc))  # [NC, H, 1]
    return DecayFactors(query, mask, key.unsqueeze(1).unsqueeze(-1), chunk.unsqueeze(-1))


# ----------------------------------------------------------------------------------------------------------------------
# Fast path: grouped forward and hand-written backward.
# ----------------------------------------------------------------------------------------------------------------------


def _chunks_per_group(batch: int, heads: int, chunk_size: int) -> int:
    return max(1, ROWS_PER_GROUP // (batch * heads * chunk_size))


def _groups(num_chunks: int, per_group: int) -> list[tuple[int, int]]:
    return [(c, min(c + per_group, num_chunks)) for c in range(0, num_chunks, per_group)]


def _bmm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Batched matmul of chunk-major `[G, B, H, m, k] @ [G, B, H, k, n]` into the contiguous buffer `out`."""
    torch.bmm(a.flatten(0, 2), b.flatten(0, 2), out=out.flatten(0, 2))
    return out


def _add_bmm_(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`out += a @ b` for chunk-major tensors, in place."""
    out.flatten(0, 2).baddbmm_(a.flatten(0, 2), b.flatten(0, 2))
    return out


class ChunkedLightningFn(torch.autograd.Function):
    """q, k `[B, T, H, K]`, v `[B, T, H, V]` (T tokens laid out as `layout` says), initial_state `[N, B, H, K, V]`
    -> (o `[B, T, H, V]` in q's dtype, final states `[N, B, H, K, V]`).

    Each pass allocates its group-sized work buffers once and reuses them for every group (`out=` and in-place
    ops only inside the loops). When gradients are needed the forward saves q, k, v and the state before every
    chunk `[NC, B, H, K, V]`; the backward recomputes the intra-chunk scores per group (one matmul) instead of
    keeping `[NC, B, H, C, C]` alive. Without gradients only one group's states are held.
    """

    @staticmethod
    def forward(ctx, q, k, v, initial_state, decay: DecayFactors, layout: ChunkLayout, keep_all: bool):
        """keep_all: store every chunk's state for a backward (computed by the caller: inside `forward` autograd
        is always off and `ctx.needs_input_grad` does not see an enclosing `torch.no_grad()`)."""
        B, T, H, K = q.shape
        V = v.shape[-1]
        C, NC = layout.chunk_size, layout.num_chunks
        first_of = {c: n for n, (c, _) in enumerate(layout.segment_ranges)}
        last_of = {end - 1: n for n, (_, end) in enumerate(layout.segment_ranges)}
        per_group = min(_chunks_per_group(B, H, C), NC)
        new = lambda *shape: torch.empty(*shape, dtype=initial_state.dtype, device=q.device)  # noqa: E731
        q_buf, k_buf, q_decayed = new(per_group, B, H, C, K), new(per_group, B, H, C, K), new(per_group, B, H, C, K)
        v_buf, v_decayed, o_buf = new(per_group, B, H, C, V), new(per_group, B, H, C, V), new(per_group, B, H, C, V)
        scores_buf, chunk_kv_buf = new(per_group, B, H, C, C), new(per_group, B, H, K, V)
        # The backward needs the state before every chunk; inference only needs a group's worth at a time.
        states = new(NC + 1 if keep_all else per_group + 1, B, H, K, V)
        o = torch.empty(B, T, H, V, dtype=q.dtype, device=q.device)
        finals = torch.empty_like(initial_state)
        for first, end in _groups(NC, per_group):
            g = end - first
            qg, kg, vg = (_load_chunks_into(buf[:g], x, first) for buf, x in ((q_buf, q), (k_buf, k), (v_buf, v)))
            # What each chunk adds to the state: kᵀ (v ⊙ λ^(r-1-j)).
            chunk_kv = _bmm(kg.mT, torch.mul(vg, decay.key[first:end], out=v_decayed[:g]), out=chunk_kv_buf[:g])
            # before[i] = state before chunk first+i; before[i+1] is also the state after it, unless that chunk
            # ends a segment (then the state after it is the segment's final state).
            before = states[first : end + 1] if keep_all else states[: g + 1]
            if not keep_all and first > 0 and first not in first_of:
                before[0].copy_(states[per_group])  # carried over from the previous (full) group
            for i, c in enumerate(range(first, end)):
                if c in first_of:
                    before[i].copy_(initial_state[first_of[c]])
                after = finals[last_of[c]] if c in last_of else before[i + 1]
                torch.addcmul(chunk_kv[i], before[i], decay.chunk[c], out=after)
            scores = _bmm(qg, kg.mT, out=scores_buf[:g]).mul_(decay.mask)  # [G, B, H, C, C]
            og = _bmm(scores, vg, out=o_buf[:g])  # intra-chunk part
            _add_bmm_(og, torch.mul(qg, decay.query, out=q_decayed[:g]), before[:-1])  # + carried state
            _store_chunks(o, og, first)
        ctx.save_for_backward(q, k, v, states[:NC] if keep_all else None)
        ctx.decay, ctx.layout = decay, layout
        return o, finals

    @staticmethod
    def backward(ctx, do, dfinals):
        q, k, v, states = ctx.saved_tensors
        decay: DecayFactors = ctx.decay
        layout: ChunkLayout = ctx.layout
        B, T, H, K = q.shape
        V = v.shape[-1]
        C, NC = layout.chunk_size, layout.num_chunks
        first_of = {c: n for n, (c, _) in enumerate(layout.segment_ranges)}
        last_of = {end - 1: n for n, (_, end) in enumerate(layout.segment_ranges)}
        per_group = min(_chunks_per_group(B, H, C), NC)
        new = lambda *shape: torch.empty(*shape, dtype=states.dtype, device=q.device)  # noqa: E731
        q_buf, k_buf, k_decayed = new(per_group, B, H, C, K), new(per_group, B, H, C, K), new(per_group, B, H, C, K)
        v_buf, v_decayed = new(per_group, B, H, C, V), new(per_group, B, H, C, V)
        do_buf, do_decayed_buf = new(per_group, B, H, C, V), new(per_group, B, H, C, V)
        dq_buf, dk_buf, dv_buf = new(per_group, B, H, C, K), new(per_group, B, H, C, K), new(per_group, B, H, C, V)
        scores_buf, dscores_buf = new(per_group, B, H, C, C), new(per_group, B, H, C, C)
        from_outputs_buf, dstate_buf = new(per_group, B, H, K, V), new(per_group + 1, B, H, K, V)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dinitial = torch.empty_like(dfinals)
        for first, end in reversed(_groups(NC, per_group)):
            g = end - first
            qg, kg, vg, dog = (_load_chunks_into(buf[:g], x, first)
                               for buf, x in ((q_buf, q), (k_buf, k), (v_buf, v), (do_buf, do)))
            do_decayed = torch.mul(dog, decay.query, out=do_decayed_buf[:g])  # rows scaled by λ^(i+1)
            from_outputs = _bmm(qg.mT, do_decayed, out=from_outputs_buf[:g])  # d loss / d state, via this chunk's o
            # Reverse sweep. dstate[i] = gradient of the state before chunk first+i, dstate[i+1] = of the state
            # after it; a segment's last chunk instead feeds that segment's final state.
            dstate = dstate_buf[: g + 1]
            if end < NC:
                dstate[g].copy_(dstate_buf[0])  # the next group's first entry, from the previous iteration
            for i, c in reversed(list(enumerate(range(first, end)))):
                if c in last_of:
                    dstate[i + 1].copy_(dfinals[last_of[c]])
                torch.addcmul(from_outputs[i], dstate[i + 1], decay.chunk[c], out=dstate[i])
                if c in first_of:
                    dinitial[first_of[c]].copy_(dstate[i])
            dchunk_kv = dstate[1:]  # [G, B, H, K, V]

            scores = _bmm(qg, kg.mT, out=scores_buf[:g]).mul_(decay.mask)  # recomputed
            dscores = _bmm(dog, vg.mT, out=dscores_buf[:g]).mul_(decay.mask)
            dqg = _add_bmm_(_bmm(dscores, kg, out=dq_buf[:g]), do_decayed, states[first:end].mT)
            v_dec = torch.mul(vg, decay.key[first:end], out=v_decayed[:g])
            dkg = _add_bmm_(_bmm(dscores.mT, qg, out=dk_buf[:g]), v_dec, dchunk_kv.mT)
            k_dec = torch.mul(kg, decay.key[first:end], out=k_decayed[:g])
            dvg = _add_bmm_(_bmm(scores.mT, dog, out=dv_buf[:g]), k_dec, dchunk_kv)
            for grad, chunks in ((dq, dqg), (dk, dkg), (dv, dvg)):
                _store_chunks(grad, chunks, first)
        return dq, dk, dv, dinitial, None, None, None


# ----------------------------------------------------------------------------------------------------------------------
# The same recurrence on whole chunked tensors with differentiable ops only: autograd through it is a second,
# independent backward (tests compare it with the hand-written one; the benchmark times both).
# ----------------------------------------------------------------------------------------------------------------------


def chunk_forward_autograd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, initial_state: torch.Tensor, decay: DecayFactors,
    layout: ChunkLayout,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as `ChunkedLightningFn.forward`, all chunks at once."""
    B, T, H, K = q.shape
    acc = initial_state.dtype
    qc, kc, vc = (_load_chunks(x, 0, layout.num_chunks, layout.chunk_size, acc) for x in (q, k, v))  # [NC, B, H, C, D]
    chunk_kv = kc.mT @ (vc * decay.key)  # [NC, B, H, K, V]
    before, finals = [], []
    for n, (first, end) in enumerate(layout.segment_ranges):
        state = initial_state[n]  # [B, H, K, V]
        for c in range(first, end):
            before.append(state)
            state = decay.chunk[c] * state + chunk_kv[c]
        finals.append(state)
    states = torch.stack(before)  # [NC, B, H, K, V]
    oc = ((qc @ kc.mT) * decay.mask) @ vc + (qc * decay.query) @ states  # [NC, B, H, C, V]
    o = oc.permute(1, 0, 3, 2, 4).reshape(B, -1, H, v.shape[-1])[:, :T]  # [B, T, H, V]
    return o.to(q.dtype), torch.stack(finals)


# ----------------------------------------------------------------------------------------------------------------------
# Public entry point of the torch backend.
# ----------------------------------------------------------------------------------------------------------------------


def chunk_lightning_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slope: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    chunk_size: int = 64,
    backward: str = "manual",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked lightning attention; same contract as `lightning_attn` (inputs are validated there).

    `backward="manual"`: grouped forward + hand-written backward (the fast path). `"autograd"`: differentiate a
    whole-tensor chunked forward (an independent check, and the baseline the benchmark compares against).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    acc = _acc_dtype(q.dtype)
    packed = cu_seqlens is not None or attention_mask is not None
    if packed:
        layout = packed_layout(B, T, chunk_size, q.device, cu_seqlens=cu_seqlens, attention_mask=attention_mask)
        num_segments, rows = len(layout.segment_first_chunk), 1
        q, k, v = (_pack(x, layout) for x in (q, k, v))  # [1, NC * C, H, D]
    else:
        layout = batched_layout(T, chunk_size, q.device)
        num_segments, rows = 1, B
    if initial_state is None:
        init = torch.zeros(num_segments, rows, H, K, V, dtype=acc, device=q.device)
    else:
        init = initial_state.to(acc).reshape(num_segments, rows, H, K, V)
    decay = decay_factors(slope, layout, acc)

    if backward == "manual":
        needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, init))
        o, finals = ChunkedLightningFn.apply(q, k, v, init, decay, layout, needs_grad)
    elif backward == "autograd":
        o, finals = chunk_forward_autograd(q, k, v, init, decay, layout)
    else:
        raise ValueError(f"backward must be 'manual' or 'autograd', got {backward!r}")

    if packed:
        o = _unpack(o, layout, B, T)
    return o, (finals.reshape(-1, H, K, V) if output_final_state else None)  # [B or N, H, K, V]
