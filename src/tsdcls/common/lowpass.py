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


def high_frequency_gain(attn: torch.Tensor, exact_max_n: int = 256, iters: int = 200) -> torch.Tensor:
    """sigma_a = ||(I-J) A (I-J)||_2 over the last two dims (batched, float64 inside).

    Exact singular values up to ``exact_max_n`` tokens. Beyond that, Lanczos (ARPACK, via
    :func:`top_singular_triplet`) on CPU, or block power iteration on other devices; both
    return a Ritz value, which lies inside the spectrum, so the value is never above the true
    sigma_a by more than rounding. One thread, float64: Lanczos measured 2.3x faster than the
    full SVD at n = 512 and 7x at n = 1024, equal to ~1e-15 (benchmarks/bench_theory.py).
    """
    matrix = doubly_centered(attn.to(torch.float64))
    n = matrix.shape[-1]
    if n <= exact_max_n:
        return torch.linalg.matrix_norm(matrix, ord=2)
    if matrix.device.type != "cpu":
        return _block_power_gain(matrix, iters)
    flat = matrix.reshape(-1, n, n)
    gains = [top_singular_triplet(m, exact_max_n=exact_max_n)[0] for m in flat]
    return torch.tensor(gains, dtype=torch.float64).reshape(matrix.shape[:-2])


def top_singular_triplet(
    matrix: torch.Tensor, exact_max_n: int = 256, tol: float = 1e-10
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Largest singular value of one square matrix with its left/right singular vectors (CPU).

    Exact SVD up to ``exact_max_n``; beyond, ARPACK Lanczos with a fixed random start vector
    (deterministic; a constant start would lie in the null space of a doubly centred matrix).
    """
    matrix = matrix.detach().to("cpu", torch.float64)
    n = matrix.shape[-1]
    if n <= exact_max_n:
        left, values, right_t = torch.linalg.svd(matrix)
        return float(values[0]), left[:, 0], right_t[0]
    import numpy as np
    from scipy.sparse.linalg import svds

    start = np.random.default_rng(12345).standard_normal(n)
    left, values, right_t = svds(matrix.numpy(), k=1, v0=start, tol=tol, solver="arpack")
    return float(values[0]), torch.from_numpy(left[:, 0].copy()), torch.from_numpy(right_t[0].copy())


def _block_power_gain(matrix: torch.Tensor, iters: int, block: int = 8) -> torch.Tensor:
    """Subspace iteration on M^T M without forming it (GPU path); Rayleigh-Ritz estimate."""
    n = matrix.shape[-1]
    gen = torch.Generator().manual_seed(0)
    basis = torch.randn(*matrix.shape[:-2], n, block, generator=gen, dtype=matrix.dtype)
    basis = torch.linalg.qr(basis.to(matrix.device))[0]
    previous = torch.zeros(matrix.shape[:-2], dtype=matrix.dtype, device=matrix.device)
    estimate = previous
    for _ in range(iters):
        basis = torch.linalg.qr(matrix.transpose(-1, -2) @ (matrix @ basis))[0]
        estimate = torch.linalg.matrix_norm(matrix @ basis, ord=2)
        if torch.all((estimate - previous).abs() <= 1e-12 * estimate):
            break
        previous = estimate
    return estimate


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


def tau_log_length(n: int, n_ref: int, tau_min: float = 0.05, tau_max: float = 1.0) -> float:
    """Scalable-Softmax-style temperature: logits times s log n with s = 1 / log n_ref, i.e.
    tau(n) = log n_ref / log n (unchanged at n_ref). Clamped to [tau_min, tau_max]."""
    if n <= 0 or n_ref <= 1:
        raise ValueError(f"need n > 0 and n_ref > 1, got n={n}, n_ref={n_ref}")
    tau = math.inf if n == 1 else math.log(n_ref) / math.log(n)
    return float(min(tau_max, max(tau_min, tau)))


TAU_LAWS = ("power", "log")  # tau(n) = (n_ref/n)^exponent | log n_ref / log n


def tau_for_law(law: str, n: int, n_ref: int, exponent: float = 0.5, tau_min: float = 0.05, tau_max: float = 1.0) -> float:
    """tau(n) of a named temperature law (``TAU_LAWS``), clamped to [tau_min, tau_max]."""
    if law == "power":
        return tau_for_length(n, n_ref, exponent, tau_min, tau_max)
    if law == "log":
        return tau_log_length(n, n_ref, tau_min, tau_max)
    raise ValueError(f"unknown temperature law {law!r} (have {TAU_LAWS})")
