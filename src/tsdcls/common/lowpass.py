"""Low-pass view of self-attention, shared by the theory and TempScale stages.

Tokens X (n x d); DC[X] = J X with J = 11^T/n; HC[X] = (I - J) X. A row-stochastic attention
matrix A maps HC[AX] = (I-J) A (I-J) X, so ||HC[AX]||_F <= sigma_a ||HC[X]||_F with the
high-frequency gain sigma_a = ||(I-J) A (I-J)||_2. The derivations live in docs/theory.md.
"""

from __future__ import annotations

import math

import torch


def dc_component(x: torch.Tensor) -> torch.Tensor:
    """DC[X]: every token replaced by the mean token (over dim -2)."""
    return x.mean(dim=-2, keepdim=True).expand_as(x)


def hc_component(x: torch.Tensor) -> torch.Tensor:
    """HC[X] = X - DC[X]: what distinguishes tokens from each other."""
    return x - x.mean(dim=-2, keepdim=True)


def doubly_centered(attn: torch.Tensor) -> torch.Tensor:
    """(I - J) A (I - J) for a batch of square matrices, without forming J."""
    centered_rows = attn - attn.mean(dim=-2, keepdim=True)
    return centered_rows - centered_rows.mean(dim=-1, keepdim=True)


def high_frequency_gain(attn: torch.Tensor, exact_max_n: int = 1024, iters: int = 200) -> torch.Tensor:
    """sigma_a = ||(I-J) A (I-J)||_2 over the last two dims (batched, float64 inside).

    Exact singular values up to ``exact_max_n`` tokens; beyond that power iteration on M^T M,
    which converges from below, so the value returned is never above the true sigma_a by more
    than rounding.
    """
    matrix = doubly_centered(attn.to(torch.float64))
    n = matrix.shape[-1]
    if n <= exact_max_n:
        return torch.linalg.matrix_norm(matrix, ord=2)
    gen = torch.Generator().manual_seed(0)
    vec = torch.randn(*matrix.shape[:-2], n, 1, generator=gen, dtype=matrix.dtype)
    vec = vec.to(matrix.device)
    gram = matrix.transpose(-1, -2) @ matrix
    norm = torch.ones(matrix.shape[:-2], dtype=matrix.dtype, device=matrix.device)
    for _ in range(iters):
        vec = gram @ vec
        norm = torch.linalg.vector_norm(vec, dim=(-2, -1))
        vec = vec / norm[..., None, None]
    return torch.sqrt(torch.linalg.vector_norm(gram @ vec, dim=(-2, -1)))


def attention_from_logits(logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """A = softmax(S / tau), row-wise."""
    return torch.softmax(logits / tau, dim=-1)


def retemper(attn: torch.Tensor, tau: float) -> torch.Tensor:
    """softmax(S / tau) from A = softmax(S) alone: A^(1/tau) renormalised per row (exact).

    Rows are shift-invariant, so log A = S - logsumexp(S) carries all that softmax needs;
    masked entries (A = 0) stay 0.
    """
    log_attn = torch.log(attn.to(torch.float64).clamp_min(0))
    return torch.softmax(log_attn / tau, dim=-1).to(attn.dtype)


def small_logit_gain(n: int, logit_std: float, tau: float = 1.0) -> float:
    """Predicted sigma_a for i.i.d. N(0, s^2) logits in the small-logit regime: 2 s / (tau sqrt n)."""
    return 2.0 * logit_std / (tau * math.sqrt(n))


def tau_for_length(
    n: int, n_ref: int, exponent: float = 0.5, tau_min: float = 0.05, tau_max: float = 1.0
) -> float:
    """Temperature that restores the high-frequency gain of length ``n_ref`` at length ``n``.

    Small-logit theory gives tau(n) = (n_ref / n)^(1/2); ``exponent`` lets a stage use a slope
    fitted on real attention instead. Clamped to [tau_min, tau_max].
    """
    if n <= 0 or n_ref <= 0:
        raise ValueError(f"lengths must be positive, got n={n}, n_ref={n_ref}")
    tau = (n_ref / n) ** exponent
    return float(min(tau_max, max(tau_min, tau)))
