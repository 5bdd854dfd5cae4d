"""HybridCache: what generation carries between forward calls of the hybrid model.

Shapes: B batch rows, H lightning heads, KVH key/value heads, D head dim, S positions seen so far.

    lightning layer i : state [B, H, D, D] fp32         fixed size, replaced by every forward (SPEC_NOTES §2.6)
    softmax layer i   : keys, values [B, KVH, cap, D]   preallocated; positions [0, S) are filled, cap >= S
    padding_mask      : [B, S] (1 = real token) or None when no row was ever padded

Keys and values are written in place and `update` returns views of the filled part, so a decode step copies
one new position per softmax layer instead of the whole history. Buffers grow by doubling when full; a caller
that knows the final length (prompt + max_new_tokens) calls `reserve(total)` first and never reallocates.

Rolling back: lightning states cannot be un-decayed, so a rollback needs a `snapshot()` taken at the prefix
(the states are small: H*D*D floats per layer) and `crop(snapshot)`, which restores those states and only
shortens the softmax lengths; the key/value bytes past the new length are simply overwritten later. A snapshot
stays usable until the cache is cropped below its length (later writes then overwrite positions it needs), or
its rows change (`select_rows`); `crop` refuses it after that instead of mixing two histories.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from text_backbone.config import LIGHTNING, SOFTMAX, MiniMaxText01Config


@dataclass(frozen=True)
class CacheSnapshot:
    """What `crop` needs to return a cache to an earlier length: a few small tensors, no key/value copies."""

    seq_len: int
    lightning_states: tuple[torch.Tensor | None, ...]  # clones, [B, H, D, D] per lightning layer
    padding_mask: torch.Tensor | None  # [B, seq_len]
    batch_size: int | None
    rows_version: int  # bumped by select_rows: rows changed, so older snapshots no longer apply
    taken_at: int  # the cache's clock when taken: crops after it may have overwritten positions it needs


class HybridCache:
    """Per-layer generation state of `MiniMaxText01Model`; see the module docstring for the layout."""

    def __init__(self, config: MiniMaxText01Config, *, min_capacity: int = 256) -> None:
        if min_capacity < 1:
            raise ValueError(f"min_capacity must be >= 1, got {min_capacity}")
        self.attn_type_list = list(config.attn_type_list)
        num_layers = len(self.attn_type_list)
        self.lightning_states: list[torch.Tensor | None] = [None] * num_layers
        self._keys: list[torch.Tensor | None] = [None] * num_layers  # [B, KVH, cap, D] buffers
        self._values: list[torch.Tensor | None] = [None] * num_layers
        self.padding_mask: torch.Tensor | None = None
        self.seq_len = 0
        self.min_capacity = min_capacity
        self._reserved = 0  # capacity to allocate at the next (re)allocation, from `reserve`
        self._rows_version = 0
        self._clock = 0  # ticks at every snapshot and crop
        self._crops: list[tuple[int, int]] = []  # (clock, length) of every crop, to spot overwritten snapshots

    # ------------------------------------------------------------------ per layer (called by the model)
    def lightning_state(self, layer_idx: int) -> torch.Tensor | None:
        return self.lightning_states[layer_idx]

    def set_lightning_state(self, layer_idx: int, state: torch.Tensor) -> None:
        if self.attn_type_list[layer_idx] != LIGHTNING:
            raise ValueError(f"layer {layer_idx} is a softmax layer; it keeps keys and values, not a state")
        self.lightning_states[layer_idx] = state

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes this call's keys/values [B, KVH, T, D] at positions [seq_len, seq_len + T) and returns views of
        all of them [B, KVH, seq_len + T, D]. `seq_len` itself moves on in `advance`, after every layer ran."""
        if self.attn_type_list[layer_idx] != SOFTMAX:
            raise ValueError(f"layer {layer_idx} is a lightning layer; it keeps a state, not keys and values")
        start, end = self.seq_len, self.seq_len + k.shape[2]
        keys, values = self._keys[layer_idx], self._values[layer_idx]
        if keys is not None and keys.shape[0] != k.shape[0]:
            raise ValueError(f"cache holds {keys.shape[0]} rows but this call has {k.shape[0]}; use select_rows() "
                             "to change the batch of a cache")
        if keys is None or keys.shape[2] < end:  # full: double (or fit a long write, or the reservation)
            capacity = max(end, self._reserved, self.min_capacity, 2 * (0 if keys is None else keys.shape[2]))
            keys, values = self._grown(keys, k, capacity), self._grown(values, v, capacity)
            self._keys[layer_idx], self._values[layer_idx] = keys, values
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        return keys[:, :, :end], values[:, :, :end]

    def _grown(self, buffer: torch.Tensor | None, like: torch.Tensor, capacity: int) -> torch.Tensor:
        """A new [B, KVH, capacity, D] buffer (dtype and device of `like`) holding the filled part of `buffer`."""
        B, KVH, _, D = like.shape
        grown = like.new_empty(B, KVH, capacity, D)
        if buffer is not None and self.seq_len:
            grown[:, :, : self.seq_len] = buffer[:, :, : self.seq_len]
        return grown

    # ------------------------------------------------------------------ whole cache (called by the model)
    def full_padding_mask(self, batch: int, new_tokens: int, mask: torch.Tensor | None, device) -> torch.Tensor | None:
        """Padding mask over past + new positions, given this call's mask ([B, T] or [B, past + T]) or None."""
        if mask is not None and mask.shape[1] == self.seq_len + new_tokens:
            return mask
        if mask is not None and mask.shape[1] != new_tokens:
            raise ValueError(f"attention_mask has {mask.shape[1]} columns; with {self.seq_len} cached positions and "
                             f"{new_tokens} new ones it must have {new_tokens} or {self.seq_len + new_tokens}")
        if mask is None and self.padding_mask is None:
            return None
        past = self.padding_mask
        if past is None:
            past = torch.ones(batch, self.seq_len, dtype=torch.long, device=device)
        if mask is None:
            mask = torch.ones(batch, new_tokens, dtype=past.dtype, device=device)
        return torch.cat([past.to(mask.dtype), mask], dim=1)

    def advance(self, new_tokens: int, full_mask: torch.Tensor | None) -> None:
        self.seq_len += new_tokens
        self.padding_mask = full_mask

    # ------------------------------------------------------------------ sizing
    @property
    def batch_size(self) -> int | None:
        """Rows held, or None before the first forward."""
        for t in (*self.lightning_states, *self._keys):
            if t is not None:
                return t.shape[0]
        return None if self.padding_mask is None else self.padding_mask.shape[0]

    @property
    def capacity(self) -> int:
        """Positions the softmax buffers can hold before they must grow (0 before the first forward)."""
        return min((k.shape[2] for k in self._keys if k is not None), default=0)

    def reserve(self, total_len: int) -> None:
        """Makes room for `total_len` positions: later writes up to that length never reallocate. Buffers not yet
        allocated are created at this size; existing ones grow now if they are smaller."""
        self._reserved = max(self._reserved, total_len)
        for i, keys in enumerate(self._keys):
            if keys is not None and keys.shape[2] < total_len:
                self._keys[i] = self._grown(keys, keys, total_len)
                self._values[i] = self._grown(self._values[i], self._values[i], total_len)

    def memory_bytes(self, *, filled_only: bool = False) -> int:
        """Bytes the cache holds: lightning states plus the allocated key/value buffers (or only their filled
        part with `filled_only=True`)."""
        total = sum(s.numel() * s.element_size() for s in self.lightning_states if s is not None)
        for buffer in (*self._keys, *self._values):
            if buffer is not None:
                positions = self.seq_len if filled_only else buffer.shape[2]
                total += buffer[:, :, :positions].numel() * buffer.element_size()
        if self.padding_mask is not None:
            total += self.padding_mask.numel() * self.padding_mask.element_size()
        return total

    # ------------------------------------------------------------------ rows
    def select_rows(self, indices: torch.Tensor | list[int]) -> None:
        """Keeps the rows `indices` in that order (repeats allowed: `[0] * n` fans one prompt out to n rows).
        Used to drop finished sequences from a batch. Invalidates earlier snapshots."""
        B = self.batch_size
        if B is None:
            raise ValueError("select_rows on an empty cache: run a forward first")
        index = torch.as_tensor(indices, dtype=torch.long)
        if index.dim() != 1 or index.numel() == 0:
            raise ValueError(f"indices must be a non-empty 1-D list of row numbers, got shape {tuple(index.shape)}")
        if int(index.min()) < 0 or int(index.max()) >= B:
            raise IndexError(f"row indices must lie in [0, {B}), got {index.tolist()}")
        take = lambda t: None if t is None else t.index_select(0, index.to(t.device))  # noqa: E731
        self.lightning_states = [take(s) for s in self.lightning_states]
        # index_select copies only what it reads, so slice to the filled part first and keep the spare room.
        self._keys = [self._regrow(take(k[:, :, : self.seq_len]) if k is not None else None, k) for k in self._keys]
        self._values = [self._regrow(take(v[:, :, : self.seq_len]) if v is not None else None, v) for v in self._values]
        self.padding_mask = take(self.padding_mask)
        self._rows_version += 1

    def _regrow(self, filled: torch.Tensor | None, old: torch.Tensor | None, capacity: int | None = None):
        """A fresh buffer of `capacity` positions (default: old's) starting with `filled` [B, KVH, seq_len, D]."""
        if filled is None:
            return None
        capacity = max(self.seq_len, capacity if capacity is not None else old.shape[2])
        out = filled.new_empty(filled.shape[0], filled.shape[1], capacity, filled.shape[3])
        out[:, :, : self.seq_len] = filled
        return out

    # ------------------------------------------------------------------ rollback and copies
    def snapshot(self) -> CacheSnapshot:
        """Remembers the current length: cheap (clones the lightning states only)."""
        self._clock += 1
        return CacheSnapshot(
            seq_len=self.seq_len,
            lightning_states=tuple(None if s is None else s.clone() for s in self.lightning_states),
            padding_mask=self.padding_mask,
            batch_size=self.batch_size,
            rows_version=self._rows_version,
            taken_at=self._clock,
        )

    def crop(self, snapshot: CacheSnapshot) -> None:
        """Rolls back to `snapshot`: lightning states restored, softmax lengths shortened (no key/value copies).
        The snapshot stays valid, so one prefix can be returned to any number of times."""
        if snapshot.rows_version != self._rows_version or snapshot.batch_size not in (None, self.batch_size):
            raise ValueError("this snapshot was taken before the rows of the cache changed (select_rows); "
                             "take a new snapshot after changing rows")
        if snapshot.seq_len > self.seq_len:
            raise ValueError(f"cannot crop forward: snapshot has {snapshot.seq_len} positions, cache {self.seq_len}")
        if any(when > snapshot.taken_at and length < snapshot.seq_len for when, length in self._crops):
            raise ValueError("the cache was cropped below this snapshot's length after it was taken, and positions "
                             "it needs have been overwritten since; crop to a snapshot taken after that crop")
        self._clock += 1
        self._crops.append((self._clock, snapshot.seq_len))
        self.lightning_states = [None if s is None else s.clone() for s in snapshot.lightning_states]
        self.seq_len = snapshot.seq_len
        self.padding_mask = snapshot.padding_mask

    def copy(self, *, capacity: int | None = None) -> "HybridCache":
        """An independent deep copy, so one prefix serves many continuations. Only filled positions are copied;
        the new buffers hold `capacity` positions (default: as many as this cache's)."""
        other = HybridCache.__new__(HybridCache)
        other.__dict__.update(self.__dict__)
        other._crops = list(self._crops)
        other.lightning_states = [None if s is None else s.clone() for s in self.lightning_states]
        filled = lambda t: None if t is None else self._regrow(t[:, :, : self.seq_len], t, capacity)  # noqa: E731
        other._keys = [filled(k) for k in self._keys]
        other._values = [filled(v) for v in self._values]
        other.padding_mask = None if self.padding_mask is None else self.padding_mask.clone()
        return other
