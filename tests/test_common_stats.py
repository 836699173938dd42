"""Intervals and power for the claims ledger, against scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tsdcls.common.stats import (
    bootstrap_mean_ci,
    loglog_slopes,
    paired_bootstrap_ci,
    paired_mde,
    paired_t_interval,
    paired_t_power,
)


def _pair(n: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 5.0, n)  # large item spread that a paired design cancels
    return base + shift + rng.normal(0.0, 1.0, n), base


def test_paired_t_interval_equals_scipy() -> None:
    a, b = _pair(25, 0.7)
    ours = paired_t_interval(a, b, level=0.9)
    ref = stats.ttest_rel(a, b).confidence_interval(confidence_level=0.9)
    assert ours.estimate == pytest.approx(float(np.mean(a - b)), rel=1e-12)
    assert (ours.low, ours.high) == pytest.approx((ref.low, ref.high), rel=1e-10)


def test_paired_bootstrap_ci_matches_scipy_percentile_bootstrap() -> None:
    a, b = _pair(200, 0.3, seed=1)
    ours = paired_bootstrap_ci(a, b, draws=20_000, level=0.95, seed=3)
    ref = stats.bootstrap((a - b,), np.mean, n_resamples=20_000, method="percentile", random_state=4).confidence_interval
    assert ours.low == pytest.approx(ref.low, abs=0.02) and ours.high == pytest.approx(ref.high, abs=0.02)
    # the paired design removes the item spread: far narrower than the unpaired interval would be
    assert ours.half_width < 0.25 and ours.low > 0


def test_paired_bootstrap_ci_covers_the_truth_at_its_level() -> None:
    hits = 0
    for seed in range(200):
        a, b = _pair(30, 1.0, seed=seed)
        interval = paired_bootstrap_ci(a, b, draws=400, level=0.9, seed=seed)
        hits += interval.low <= 1.0 <= interval.high
    assert 0.83 <= hits / 200 <= 0.96  # percentile bootstrap at n = 30 under-covers a little


def test_bootstrap_mean_ci_is_per_cell() -> None:
    values = np.stack([np.arange(10.0), np.full(10, 2.0)], axis=1)
    mean, low, high = bootstrap_mean_ci(values, draws=500, level=0.95, seed=0)
    assert mean.tolist() == [4.5, 2.0]
    assert low[0] < 4.5 < high[0] and low[1] == high[1] == 2.0


def test_mde_normal_is_the_closed_form() -> None:
    assert paired_mde(2.0, 50, alpha=0.05, power=0.8, method="normal") == pytest.approx(
        (1.959963984540054 + 0.8416212335729143) * 2.0 / math.sqrt(50), rel=1e-12)


@pytest.mark.parametrize("n", [5, 20, 200])
def test_mde_t_has_the_requested_power(n: int) -> None:
    mde = paired_mde(1.5, n, alpha=0.05, power=0.8)
    assert paired_t_power(mde, 1.5, n) == pytest.approx(0.8, abs=1e-9)
    normal = paired_mde(1.5, n, method="normal")
    assert mde > normal and (n < 50 or mde == pytest.approx(normal, rel=0.01))


def test_t_power_against_simulation() -> None:
    rng = np.random.default_rng(7)
    n, effect = 12, 0.8
    diffs = rng.normal(effect, 1.0, size=(20_000, n))
    p = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue
    assert paired_t_power(effect, 1.0, n) == pytest.approx(float((p < 0.05).mean()), abs=0.015)


def test_loglog_slopes_recovers_powers_and_flags_nonpositive() -> None:
    n = np.array([32.0, 64.0, 128.0, 512.0])
    values = np.stack([3.0 * n**-0.5, 0.1 * n**0.25, np.array([1.0, 0.0, 1.0, 1.0])])
    slopes = loglog_slopes(n, values)
    assert slopes[:2] == pytest.approx([-0.5, 0.25], abs=1e-12) and math.isnan(slopes[2])


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        paired_t_interval([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="level"):
        paired_t_interval([1.0, 2.0], [0.0, 1.0], level=95)


def test_interval_mde_is_z_plus_z_power_standard_errors() -> None:
    from scipy import stats as sp

    from tsdcls.common.stats import interval_mde

    z = sp.norm.ppf(0.975)
    assert interval_mde(-z, z) == pytest.approx(z + sp.norm.ppf(0.8))  # SE = 1
    assert interval_mde(0.0, 2 * sp.norm.ppf(0.95), level=0.9, power=0.5) == pytest.approx(sp.norm.ppf(0.95))
    both = interval_mde(np.array([-z, 0.0]), np.array([z, math.inf]))
    assert both[0] == pytest.approx(z + sp.norm.ppf(0.8)) and math.isnan(both[1])
