"""Closed-form statements about the high-frequency gain sigma_a (derivations: docs/theory.md).

Everything here is a pure function of (n, logit scale, tau) so that tests can hit it with
hypothesis and the checks can compare it with exact singular values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def bounded_logit_gain_bound(n: int, gamma: float, tau: float = 1.0) -> float:
    """Upper bound on sigma_a when every logit satisfies |S_ij| <= gamma (Theorem 1).

    With g = gamma / tau and r = exp(-2g):
        sigma_a <= sqrt( 2 tanh(g/2) * (n-1)(1-r) / (1+(n-1) r) ).
    The first factor bounds every row's l1 distance to uniform, the second every column's;
    sqrt(||E||_1 ||E||_inf) bounds ||A - J||_2 >= sigma_a. ~sqrt(2) g for small g, and
    sqrt(2(n-1)) as g -> inf (sigma_a can really exceed 1: see two_target_logits).
    """
    if n < 1 or gamma < 0 or tau <= 0:
        raise ValueError(f"need n >= 1, gamma >= 0, tau > 0; got n={n}, gamma={gamma}, tau={tau}")
    g = gamma / tau
    r = math.exp(-2.0 * g)
    row_l1 = 2.0 * math.tanh(g / 2.0)
    column_l1 = (n - 1) * (1.0 - r) / (1.0 + (n - 1) * r)
    return math.sqrt(row_l1 * column_l1)


def bounded_logit_gain_bound_nfree(gamma: float, tau: float = 1.0) -> float:
    """The length-free corollary sqrt(2 tanh(g/2) (e^{2g} - 1)) >= bounded_logit_gain_bound."""
    g = gamma / tau
    return math.sqrt(2.0 * math.tanh(g / 2.0) * math.expm1(2.0 * g))


def bounded_logit_lower_example(gamma: float, tau: float = 1.0) -> float:
    """sigma_a = tanh(g) of the rank-one logits S = gamma h v^T (balanced +-1 h, v): a floor.

    Shows the bound cannot shrink with n: a logit bound alone does not force attenuation.
    """
    return math.tanh(gamma / tau)


def gaussian_logit_gain(n: int, logit_std: float, tau: float = 1.0) -> float:
    """Large-n prediction for i.i.d. N(0, s^2) logits: 2 sqrt((e^{g^2} - 1) / n), g = s/tau.

    n a_ij -> exp(g z_ij - g^2/2) (law of large numbers in the row sum), so A - J is an i.i.d.
    matrix of variance (e^{g^2}-1)/n^2 whose norm is ~2 sqrt(n) times its entry std.
    For small g it reduces to 2 g / sqrt(n) (tsdcls.common.lowpass.small_logit_gain).
    Valid while the largest of the n^2 lognormal entries is small against the bulk
    (g <~ 0.7 at n <= 4096, see docs/theory.md).
    """
    g = logit_std / tau
    return 2.0 * math.sqrt(math.expm1(g * g) / n)


def tau_restoring_gain_small_logit(n: int, n_ref: int) -> float:
    """tau(n) = sqrt(n_ref / n): restores sigma_a(n_ref, tau=1) at length n for small logits."""
    return math.sqrt(n_ref / n)


def tau_restoring_gain_gaussian(n: int, n_ref: int, logit_std: float) -> float:
    """tau(n) from the lognormal law: solve (e^{(s/tau)^2}-1)/n = (e^{s^2}-1)/n_ref for tau."""
    target = (n / n_ref) * math.expm1(logit_std**2)
    return logit_std / math.sqrt(math.log1p(target))


def fit_loglog_slope(lengths: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of log(values) against log(lengths)."""
    x = np.log(np.asarray(lengths, dtype=float))
    y = np.log(np.asarray(values, dtype=float))
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def bootstrap_slope_se(
    lengths: Sequence[int], per_length_samples: Sequence[Sequence[float]], draws: int, seed: int
) -> float:
    """Std of the log-log slope of per-length means when trials are resampled per length."""
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(draws):
        means = [float(np.mean(rng.choice(np.asarray(s), size=len(s)))) for s in per_length_samples]
        slopes.append(fit_loglog_slope(lengths, means)[0])
    return float(np.std(slopes, ddof=1)) if draws > 1 else 0.0
