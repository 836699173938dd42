"""tsdcls.common.lowpass: the algebra behind sigma_a, checked against explicit matrices."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdcls.common.lowpass import (
    _block_power_gain,
    attention_from_logits,
    dc_component,
    doubly_centered,
    hc_component,
    high_frequency_gain,
    retemper,
    small_logit_gain,
    tau_for_length,
    top_singular_triplet,
)

FAST = settings(max_examples=40, deadline=None)


def _logits(seed: int, n: int, scale: float, batch: tuple[int, ...] = ()) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*batch, n, n, generator=gen, dtype=torch.float64)


def _centering(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)


@FAST
@given(n=st.integers(1, 40), seed=st.integers(0, 10_000), scale=st.floats(0.0, 8.0))
def test_doubly_centered_is_explicit_product(n: int, seed: int, scale: float) -> None:
    attn = attention_from_logits(_logits(seed, n, scale, (2,)))
    centering = _centering(n)
    assert torch.allclose(doubly_centered(attn), centering @ attn @ centering, atol=1e-13)


@FAST
@given(n=st.integers(2, 40), d=st.integers(1, 8), seed=st.integers(0, 10_000), scale=st.floats(0.0, 8.0))
def test_hc_of_attention_output_and_the_inequality(n: int, d: int, seed: int, scale: float) -> None:
    """HC[AX] = (I-J)A(I-J)X for row-stochastic A, hence ||HC[AX]|| <= sigma_a ||HC[X]||."""
    attn = attention_from_logits(_logits(seed, n, scale))
    tokens = torch.randn(n, d, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    hc_out = hc_component(attn @ tokens)
    assert torch.allclose(hc_out, doubly_centered(attn) @ tokens, atol=1e-12)
    assert torch.allclose(dc_component(tokens) + hc_component(tokens), tokens, atol=1e-12)
    sigma = float(high_frequency_gain(attn))
    assert float(torch.linalg.matrix_norm(hc_out)) <= sigma * float(torch.linalg.matrix_norm(hc_component(tokens))) * (1 + 1e-10) + 1e-14


@FAST
@given(n=st.integers(1, 30), seed=st.integers(0, 10_000), scale=st.floats(0.0, 6.0),
       tau=st.floats(0.2, 3.0))
def test_retemper_equals_softmax_at_new_temperature(n: int, seed: int, scale: float, tau: float) -> None:
    logits = _logits(seed, n, scale)
    expected = attention_from_logits(logits, tau)
    assert torch.allclose(retemper(attention_from_logits(logits), tau), expected, atol=1e-12, rtol=1e-9)


def test_retemper_keeps_masked_entries_zero() -> None:
    logits = _logits(3, 6, 1.0).masked_fill(torch.triu(torch.ones(6, 6, dtype=torch.bool), 1), float("-inf"))
    tempered = retemper(attention_from_logits(logits), 0.5)
    assert torch.all(tempered[torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)] == 0)
    assert torch.allclose(tempered, attention_from_logits(logits, 0.5), atol=1e-12)


@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0])
def test_lanczos_matches_exact_svd(scale: float) -> None:
    attn = attention_from_logits(_logits(7, 300, scale, (3,)))
    exact = torch.linalg.matrix_norm(doubly_centered(attn), ord=2)
    lanczos = high_frequency_gain(attn, exact_max_n=64)
    assert torch.allclose(lanczos, exact, rtol=1e-9)
    assert torch.all(lanczos <= exact * (1 + 1e-12))  # a Ritz value never overshoots


def test_block_power_path_matches_exact_svd() -> None:
    """The non-CPU path (subspace iteration), exercised here on CPU."""
    matrix = doubly_centered(attention_from_logits(_logits(11, 200, 1.0, (2,))))
    exact = torch.linalg.matrix_norm(matrix, ord=2)
    assert torch.allclose(_block_power_gain(matrix, iters=500), exact, rtol=1e-8)


@pytest.mark.parametrize("n, exact_max_n", [(40, 256), (300, 64)])
def test_top_singular_triplet_is_a_singular_pair(n: int, exact_max_n: int) -> None:
    matrix = doubly_centered(attention_from_logits(_logits(5, n, 2.0)))
    sigma, left, right = top_singular_triplet(matrix, exact_max_n=exact_max_n)
    assert torch.allclose(matrix @ right, sigma * left, atol=1e-8)
    assert math.isclose(sigma, float(torch.linalg.matrix_norm(matrix, ord=2)), rel_tol=1e-9)


def test_small_logit_gain_and_tau_for_length() -> None:
    assert math.isclose(small_logit_gain(400, 0.1, 0.5), 2 * 0.1 / (0.5 * 20))
    assert math.isclose(tau_for_length(512, 128), 0.5)
    assert tau_for_length(64, 128) == 1.0  # clamped to tau_max
    with pytest.raises(ValueError):
        tau_for_length(0, 128)
