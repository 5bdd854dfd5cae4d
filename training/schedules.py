"""Learning-rate multipliers over optimizer steps: warm-up then cosine, or warmup-stable-decay.

    factor = lr_factor(schedule, step, total_steps)   # multiplies every parameter group's base rate
    scheduler = LambdaLR(optimizer, lambda s: lr_factor(schedule, s, total_steps))

`step` counts optimizer updates from 0 (the factor used by the first update); steps skipped for a non-finite
loss do not advance it.
"""
from __future__ import annotations

import math

from training.stages import ScheduleConfig


def lr_factor(schedule: ScheduleConfig, step: int, total_steps: int) -> float:
    warmup = min(schedule.warmup_steps, max(total_steps - 1, 0))
    if step < warmup:
        return (step + 1) / (warmup + 1)  # never 0: the first update already moves the weights a little
    floor = schedule.min_lr_ratio
    if schedule.kind == "cosine":
        span = max(total_steps - 1 - warmup, 1)
        progress = min((step - warmup) / span, 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    # wsd: stable at 1, then exponential decay to `floor` over the last decay_fraction of the steps.
    decay_steps = max(1, round(schedule.decay_fraction * total_steps))
    decay_start = max(warmup, total_steps - decay_steps)
    if step < decay_start:
        return 1.0
    progress = min((step - decay_start + 1) / max(total_steps - decay_start, 1), 1.0)
    return floor ** progress if floor > 0 else 1.0 - progress
