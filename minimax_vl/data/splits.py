"""Seed ranges of the data splits, and per-purpose random generators derived from a seed.

Every generated sample is a pure function of one integer seed. Splits own disjoint seed ranges, so
no image of `val`, `test` or `heldout` can also appear in `train`. The `heldout` split additionally
draws its label words, palettes and fonts from separate lists (see `vocab.py`, `styles.py`).
"""
from __future__ import annotations

import random

# [start, stop) of each split's seeds. Wide gaps leave room to grow a split without overlap.
SPLIT_SEED_RANGES: dict[str, range] = {
    "train": range(0, 100_000_000),
    "val": range(100_000_000, 101_000_000),
    "test": range(101_000_000, 102_000_000),
    "heldout": range(200_000_000, 201_000_000),
}
SPLITS = tuple(SPLIT_SEED_RANGES)


def check_split(split: str) -> str:
    if split not in SPLIT_SEED_RANGES:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def vocabulary_split(split: str) -> str:
    """Which word lists / styles a split draws from: 'heldout' has its own, the others share 'train'."""
    return "heldout" if check_split(split) == "heldout" else "train"


def seed_for(split: str, index: int) -> int:
    """The seed of sample `index` (0-based) of `split`."""
    seeds = SPLIT_SEED_RANGES[check_split(split)]
    if not 0 <= index < len(seeds):
        raise IndexError(f"sample index {index} is outside split {split!r}, which holds {len(seeds)} samples")
    return seeds[index]


def rng_for(seed: int, purpose: str) -> random.Random:
    """An independent generator per (seed, purpose): string seeds are hashed with SHA-512, so this is
    stable across processes and Python versions (unlike `hash()`), and purposes do not share draws."""
    return random.Random(f"{purpose}:{seed}")
