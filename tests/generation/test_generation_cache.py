"""HybridCache on its own: preallocated, growing, in-place key/value buffers; rows; snapshots; sizes."""
import pytest
import torch

from text_backbone.cache import HybridCache
from text_backbone.config import MiniMaxText01Config

CONFIG = MiniMaxText01Config.from_preset("tiny")  # layers 0-6 lightning, layer 7 softmax; 2 KV heads of 32
SOFTMAX_LAYER = 7
B, KVH, D, H = 2, 2, 32, 4


def kv(T, start=0.0):
    """Keys/values [B, KVH, T, D] whose entries encode their position, so misplaced writes show."""
    pos = torch.arange(start, start + T).view(1, 1, T, 1).expand(B, KVH, T, D)
    rows = torch.arange(B).view(B, 1, 1, 1) * 1000.0
    return (pos + rows).clone(), (-pos - rows).clone()


def step(cache, T):
    """What one model forward does to the cache: one softmax update, one state per lightning layer, advance."""
    k, v = kv(T, start=cache.seq_len)
    out = cache.update(SOFTMAX_LAYER, k, v)
    for layer in range(7):
        cache.set_lightning_state(layer, torch.full((B, H, D, D), float(cache.seq_len + T)))
    cache.advance(T, None)
    return out


def test_update_writes_in_place_and_returns_views_of_the_filled_part():
    cache = HybridCache(CONFIG, min_capacity=8)
    keys, values = step(cache, 5)
    assert keys.shape == (B, KVH, 5, D) and cache.capacity == 8
    buffer = cache._keys[SOFTMAX_LAYER]
    assert keys.data_ptr() == buffer.data_ptr()  # a view, not a copy
    keys, values = step(cache, 2)
    assert cache._keys[SOFTMAX_LAYER].data_ptr() == buffer.data_ptr()  # still fits: no reallocation
    expected_k, expected_v = kv(7)
    assert torch.equal(keys, expected_k) and torch.equal(values, expected_v)


def test_buffers_grow_by_doubling_and_keep_their_contents():
    cache = HybridCache(CONFIG, min_capacity=4)
    capacities = []
    for _ in range(9):
        step(cache, 1)
        capacities.append(cache.capacity)
    assert capacities == [4, 4, 4, 4, 8, 8, 8, 8, 16]
    keys, _ = step(cache, 20)  # a long write past double the capacity grows to fit it at once
    assert cache.capacity == 32 and cache.seq_len == 29
    assert torch.equal(keys, kv(29)[0])


def test_reserve_allocates_once():
    cache = HybridCache(CONFIG, min_capacity=4)
    cache.reserve(100)
    step(cache, 3)
    buffer = cache._keys[SOFTMAX_LAYER]
    assert cache.capacity == 100
    for _ in range(97):
        step(cache, 1)
    assert cache._keys[SOFTMAX_LAYER].data_ptr() == buffer.data_ptr()
    cache.reserve(150)  # growing an existing buffer keeps what it holds
    assert cache.capacity == 150 and torch.equal(cache._keys[SOFTMAX_LAYER][:, :, :100], kv(100)[0])


def test_memory_bytes_counts_states_and_buffers():
    cache = HybridCache(CONFIG, min_capacity=16)
    step(cache, 10)
    states = 7 * B * H * D * D * 4  # fp32 lightning states
    kv_bytes = 2 * B * KVH * D * 4  # keys + values per position
    assert cache.memory_bytes() == states + 16 * kv_bytes
    assert cache.memory_bytes(filled_only=True) == states + 10 * kv_bytes


def test_lightning_and_softmax_layers_reject_each_others_calls():
    cache = HybridCache(CONFIG)
    with pytest.raises(ValueError, match="lightning layer"):
        cache.update(0, *kv(1))
    with pytest.raises(ValueError, match="softmax layer"):
        cache.set_lightning_state(SOFTMAX_LAYER, torch.zeros(B, H, D, D))


def test_select_rows():
    cache = HybridCache(CONFIG, min_capacity=8)
    step(cache, 3)
    for layer in range(7):  # make the two rows' states differ
        cache.set_lightning_state(layer, torch.stack([torch.zeros(H, D, D), torch.ones(H, D, D)]))
    cache.select_rows([1, 1, 0])  # fan out row 1, then row 0
    keys = cache._keys[SOFTMAX_LAYER][:, :, :3]
    ref = kv(3)[0]
    assert torch.equal(keys, torch.stack([ref[1], ref[1], ref[0]]))
    assert cache.lightning_state(0)[:, 0, 0, 0].tolist() == [1.0, 1.0, 0.0]
    assert cache.capacity == 8 and cache.batch_size == 3 and cache.seq_len == 3
    cache.select_rows([2, 0, 1])  # a permutation keeps the batch size
    assert cache.lightning_state(0)[:, 0, 0, 0].tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        cache.select_rows([3])


def test_snapshot_crop_restores_states_and_length_without_copying_keys():
    cache = HybridCache(CONFIG, min_capacity=32)
    step(cache, 6)
    snap = cache.snapshot()
    states = [s.clone() for s in cache.lightning_states[:7]]
    step(cache, 4)
    buffer = cache._keys[SOFTMAX_LAYER]
    cache.crop(snap)
    assert cache.seq_len == 6 and cache._keys[SOFTMAX_LAYER] is buffer
    assert all(torch.equal(a, b) for a, b in zip(cache.lightning_states[:7], states))
    keys, _ = step(cache, 1)  # writes go to position 6 again
    assert torch.equal(keys, kv(7)[0])
    cache.crop(snap)  # a snapshot can be used again
    assert cache.seq_len == 6


def test_crop_refuses_snapshots_from_other_rows_or_the_future():
    cache = HybridCache(CONFIG)
    step(cache, 4)
    snap = cache.snapshot()
    cache.select_rows([0, 1])
    with pytest.raises(ValueError, match="rows of the cache changed"):
        cache.crop(snap)
    early = cache.snapshot()
    step(cache, 2)
    late = cache.snapshot()
    cache.crop(early)
    with pytest.raises(ValueError, match="cannot crop forward"):
        cache.crop(late)


def test_crop_refuses_a_snapshot_whose_positions_were_overwritten():
    cache = HybridCache(CONFIG, min_capacity=32)
    step(cache, 10)
    early = cache.snapshot()
    step(cache, 10)
    late = cache.snapshot()  # needs positions 10..19 as they are now
    cache.crop(early)
    step(cache, 12)  # positions 10..21 rewritten with other tokens
    with pytest.raises(ValueError, match="overwritten"):
        cache.crop(late)
    cache.crop(early)  # the early prefix itself is intact
    assert cache.seq_len == 10
    fresh = cache.snapshot()
    step(cache, 3)
    cache.crop(fresh)  # a snapshot taken after the crop is fine
    assert cache.seq_len == 10


def test_copy_is_deep():
    cache = HybridCache(CONFIG, min_capacity=8)
    step(cache, 3)
    twin = cache.copy()
    step(cache, 2)
    cache.lightning_states[0].add_(5)
    assert twin.seq_len == 3 and twin.capacity == 8
    assert twin._keys[SOFTMAX_LAYER].data_ptr() != cache._keys[SOFTMAX_LAYER].data_ptr()
    assert torch.equal(twin.lightning_state(0), torch.full((B, H, D, D), 3.0))
    keys, _ = step(twin, 1)
    assert torch.equal(keys, kv(4)[0])


def test_padding_mask_accumulates_and_follows_rows():
    cache = HybridCache(CONFIG)
    first = torch.tensor([[0, 1, 1], [1, 1, 1]])
    full = cache.full_padding_mask(B, 3, first, "cpu")
    cache.advance(3, full)
    full = cache.full_padding_mask(B, 1, None, "cpu")
    assert full.tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]
    cache.advance(1, full)
    with pytest.raises(ValueError, match="must have 2 or 6"):
        cache.full_padding_mask(B, 2, torch.ones(B, 3), "cpu")
    cache.select_rows([1])
    assert cache.padding_mask.tolist() == [[1, 1, 1, 1]]


def test_copy_can_resize_its_buffers():
    cache = HybridCache(CONFIG, min_capacity=8)
    step(cache, 5)
    assert cache.copy(capacity=40).capacity == 40
    assert cache.copy(capacity=2).capacity == 5  # never smaller than what is filled
    twin = cache.copy(capacity=40)
    keys, _ = step(twin, 3)
    assert torch.equal(keys, kv(8)[0])
