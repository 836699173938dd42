"""Logit matrices S (n x n, float64) for the checks: random and structured families.

Bounded families satisfy |S_ij| <= gamma exactly (the closed-form bound applies); the others
(Gaussian, causal) only feed the inequality check and the scaling law.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LogitFamily = Callable[[int, float, torch.Generator], torch.Tensor]


def gaussian(n: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """i.i.d. N(0, scale^2) logits (unbounded)."""
    return scale * torch.randn(n, n, generator=gen, dtype=torch.float64)


def causal(n: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian logits with the strict upper triangle masked (-inf): decoder-style attention."""
    logits = gaussian(n, scale, gen)
    mask = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    return logits.masked_fill(mask, float("-inf"))


def local_band(n: int, gamma: float, gen: torch.Generator) -> torch.Tensor:
    """Local attention: gamma (2 exp(-|i-j|/w) - 1), w = max(2, n/16); in (-gamma, gamma]."""
    idx = torch.arange(n, dtype=torch.float64)
    width = max(2.0, n / 16.0)
    return gamma * (2.0 * torch.exp(-(idx[:, None] - idx[None, :]).abs() / width) - 1.0)


def low_rank(n: int, gamma: float, gen: torch.Generator, rank: int = 4) -> torch.Tensor:
    """Rank-4 Gaussian logits U V^T rescaled so that max |S_ij| = gamma."""
    left = torch.randn(n, rank, generator=gen, dtype=torch.float64)
    right = torch.randn(n, rank, generator=gen, dtype=torch.float64)
    logits = left @ right.T
    return gamma * logits / logits.abs().max()


def uniform(n: int, gamma: float, gen: torch.Generator) -> torch.Tensor:
    """i.i.d. uniform logits in [-gamma, gamma]."""
    return gamma * (2.0 * torch.rand(n, n, generator=gen, dtype=torch.float64) - 1.0)


def random_sign(n: int, gamma: float, gen: torch.Generator) -> torch.Tensor:
    """i.i.d. +-gamma logits: every entry at the boundary of the box."""
    signs = torch.randint(0, 2, (n, n), generator=gen).to(torch.float64) * 2.0 - 1.0
    return gamma * signs


def one_hot_peaked(n: int, gamma: float, gen: torch.Generator) -> torch.Tensor:
    """-gamma everywhere except +gamma at one random key per query (peaked attention)."""
    logits = torch.full((n, n), -gamma, dtype=torch.float64)
    keys = torch.randint(0, n, (n,), generator=gen)
    logits[torch.arange(n), keys] = gamma
    return logits


def _balanced_signs(n: int, gen: torch.Generator) -> torch.Tensor:
    signs = torch.ones(n, dtype=torch.float64)
    signs[torch.randperm(n, generator=gen)[: n // 2]] = -1.0
    return signs


def rank_one_sign(n: int, gamma: float, gen: torch.Generator) -> torch.Tensor:
    """gamma h v^T with balanced +-1 vectors: sigma_a = tanh(gamma/tau) (small-g worst case)."""
    return gamma * torch.outer(_balanced_signs(n, gen), _balanced_signs(n, gen))


def two_target(n: int, gamma: float, gen: torch.Generator) -> torch.Tensor:
    """Half the queries peak on key 0, half on key 1: sigma_a -> sqrt(n/2) as gamma -> inf.

    The large-g worst case: attention need not contract the high-frequency part at all.
    """
    logits = torch.full((n, n), -gamma, dtype=torch.float64)
    group = _balanced_signs(n, gen) > 0
    logits[group, 0] = gamma
    logits[~group, 1 if n > 1 else 0] = gamma
    return logits


BOUNDED_FAMILIES: dict[str, LogitFamily] = {
    "local_band": local_band,
    "low_rank": low_rank,
    "uniform": uniform,
    "random_sign": random_sign,
    "one_hot_peaked": one_hot_peaked,
    "rank_one_sign": rank_one_sign,
    "two_target": two_target,
}
UNBOUNDED_FAMILIES: dict[str, LogitFamily] = {"gaussian": gaussian, "causal": causal}
