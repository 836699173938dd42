"""Learning-rate schedule as a pure function of the step: linear warmup, then cosine decay."""

from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate at optimiser step ``step`` (0-based).

    Warmup rises linearly from ``base_lr / warmup_steps`` to ``base_lr`` over ``warmup_steps``
    steps; then a half cosine falls to ``min_lr`` at ``total_steps``. A pure function, so a resumed
    run needs only the step counter to continue the same schedule.
    """
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
