"""Confidence intervals and power for the claims ledger, shared by the theory and TempScale stages.

Every interval is two-sided at confidence ``level``. Bootstrap intervals are percentile intervals
over items resampled with replacement (texts, queries, seeds); a paired design resamples the
same item indices for both arms, so the item-to-item spread cancels out of the difference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided confidence interval."""

    estimate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """``{estimate, ci_low, ci_high}`` (with an optional column prefix), for result rows."""
        return {f"{prefix}estimate": self.estimate, f"{prefix}ci_low": self.low, f"{prefix}ci_high": self.high}


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie in (0, 1), got {level}")


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"a paired design needs two equal-length 1-D samples of >= 2 items, got {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("a paired design needs finite values")
    return x - y


def bootstrap_indices(n_items: int, draws: int, seed: int) -> np.ndarray:
    """``draws`` x ``n_items`` item indices drawn with replacement (one row per replicate)."""
    if n_items < 1 or draws < 1:
        raise ValueError(f"need >= 1 item and >= 1 draw, got {n_items}, {draws}")
    return np.random.default_rng(seed).integers(0, n_items, size=(draws, n_items))


def percentile_bounds(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0 of bootstrap replicates (NaN replicates ignored)."""
    _check_level(level)
    tail = 100.0 * (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
        low = np.nanpercentile(replicates, tail, axis=0)
        high = np.nanpercentile(replicates, 100.0 - tail, axis=0)
    return low, high


def bootstrap_mean_ci(
    values: np.ndarray, draws: int, level: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 (items) with a percentile bootstrap interval, for every other cell at once."""
    values = np.asarray(values, dtype=np.float64)
    index = bootstrap_indices(values.shape[0], draws, seed)
    replicates = values[index].mean(axis=1)
    low, high = percentile_bounds(replicates, level)
    return values.mean(axis=0), low, high


def paired_bootstrap_ci(
    a: Sequence[float], b: Sequence[float], draws: int = 10_000, level: float = 0.95, seed: int = 0
) -> Interval:
    """mean(a - b) with a paired percentile bootstrap interval (items resampled together)."""
    diff = _differences(a, b)
    estimate, low, high = bootstrap_mean_ci(diff, draws, level, seed)
    return Interval(float(estimate), float(low), float(high))


def paired_t_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """mean(a - b) +- t_{(1+level)/2, n-1} sd(a - b) / sqrt(n): the paired t-interval."""
    from scipy import stats

    _check_level(level)
    diff = _differences(a, b)
    n = diff.size
    half = float(stats.t.ppf((1.0 + level) / 2.0, n - 1)) * float(diff.std(ddof=1)) / math.sqrt(n)
    mean = float(diff.mean())
    return Interval(mean, mean - half, mean + half)


def paired_t_power(effect: float, sd_diff: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at true mean difference ``effect`` (noncentral t)."""
    from scipy import stats

    if n < 2 or sd_diff <= 0:
        raise ValueError(f"power needs n >= 2 and sd_diff > 0, got n={n}, sd_diff={sd_diff}")
    df = n - 1
    critical = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    noncentrality = effect * math.sqrt(n) / sd_diff
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))


def paired_mde(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8, method: str = "t") -> float:
    """Minimal detectable mean difference of a paired design (two-sided test at ``alpha``).

    ``method="normal"``: (z_{1-alpha/2} + z_power) sd / sqrt(n), the textbook closed form;
    ``method="t"``: the effect at which the paired t-test has exactly ``power`` (noncentral t),
    a little larger for small n.
    """
    from scipy import optimize, stats

    _check_level(1.0 - alpha)
    _check_level(power)
    if n < 2 or sd_diff <= 0:
        raise ValueError(f"the MDE needs n >= 2 and sd_diff > 0, got n={n}, sd_diff={sd_diff}")
    normal = (float(stats.norm.ppf(1.0 - alpha / 2.0)) + float(stats.norm.ppf(power))) * sd_diff / math.sqrt(n)
    if method == "normal":
        return normal
    if method != "t":
        raise ValueError(f"unknown MDE method {method!r} (t, normal)")
    if paired_t_power(0.0, sd_diff, n, alpha) >= power:  # pragma: no cover - needs power <= alpha
        return 0.0
    upper = normal
    while paired_t_power(upper, sd_diff, n, alpha) < power:
        upper *= 2.0
    return float(optimize.brentq(lambda e: paired_t_power(e, sd_diff, n, alpha) - power, 0.0, upper, xtol=1e-12 * upper))


def interval_mde(low: Any, high: Any, level: float = 0.95, power: float = 0.8) -> Any:
    """Minimal detectable effect of a roughly normal estimate from its two-sided ``level`` CI:
    (z_{(1+level)/2} + z_power) x SE with SE = half-width / z_{(1+level)/2} (arrays elementwise;
    NaN where a bound is not finite)."""
    from scipy import stats

    _check_level(level)
    _check_level(power)
    z = float(stats.norm.ppf(0.5 + level / 2))
    half = (np.asarray(high, dtype=float) - np.asarray(low, dtype=float)) / 2
    with np.errstate(invalid="ignore"):
        mde = np.where(np.isfinite(half), (z + float(stats.norm.ppf(power))) * half / z, np.nan)
    return float(mde) if mde.ndim == 0 else mde


def loglog_slopes(lengths: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Least-squares slope of log(values) against log(lengths) along the last axis (NaN if any value <= 0)."""
    x = np.log(np.asarray(lengths, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)
    xc = x - x.mean()
    return ((y - y.mean(axis=-1, keepdims=True)) * xc).sum(axis=-1) / (xc * xc).sum()
