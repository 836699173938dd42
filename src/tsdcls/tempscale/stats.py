"""Paired significance tests, so a 0.5 % change on 50 queries is not over-read.

Both variants are scored on the same items (queries, sentence pairs, probe experiments), so the
tests are paired:

* ``sign_test``: exact two-sided binomial test on the items that differ (ties dropped). Exact
  and seed-free; for 0/1 scores such as ndcg@1 with one relevant document it is McNemar's test.
* ``permutation_test``: paired sign-flip randomization test of the mean difference; exact
  enumeration up to 2^16 sign patterns, seeded Monte Carlo beyond.
* ``bootstrap_test``: paired bootstrap of the mean difference (percentile two-sided p).
* ``bootstrap_correlation_test``: paired bootstrap over pairs of the difference of two Spearman
  correlations with the same gold ratings (the STS case, where no per-item score exists).

Identical inputs give p = 1 in every test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

TESTS = ("sign", "permutation", "bootstrap")
EXACT_PERMUTATION_LIMIT = 16  # nonzero differences up to which all 2^n sign flips are enumerated


def _paired(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired tests need two equal-length 1-D samples, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired tests need finite scores")
    return x - y


def sign_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided sign test of a vs b (p = 1 when no item differs)."""
    diff = _paired(a, b)
    wins = int((diff > 0).sum())
    losses = int((diff < 0).sum())
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return float(min(1.0, 2.0 * tail))


def permutation_test(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired sign-flip test of mean(a - b); exact for few nonzero differences."""
    diff = _paired(a, b)
    nonzero = diff[diff != 0]
    if nonzero.size == 0:
        return 1.0
    observed = abs(nonzero.sum())
    tolerance = 1e-12 * max(1.0, observed)
    if nonzero.size <= EXACT_PERMUTATION_LIMIT:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=nonzero.size)))
        sums = np.abs(signs @ nonzero)
        return float((sums >= observed - tolerance).mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(n_resamples, nonzero.size))
    sums = np.abs(signs @ nonzero)
    # +1 in numerator and denominator: the observed labelling is one of the permutations
    return float((1 + (sums >= observed - tolerance).sum()) / (n_resamples + 1))


def _bootstrap_p(stats: np.ndarray, observed: float) -> float:
    """Two-sided percentile p-value of 'no difference' from bootstrap replicates of a difference."""
    if observed == 0 and np.all(stats == 0):
        return 1.0
    below = (1 + (stats <= 0).sum()) / (stats.size + 1)
    above = (1 + (stats >= 0).sum()) / (stats.size + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def bootstrap_test(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000, seed: int = 0) -> float:
    """Paired bootstrap p-value for mean(a - b) != 0 (resampling items with replacement)."""
    diff = _paired(a, b)
    if not diff.any():
        return 1.0
    rng = np.random.default_rng(seed)
    index = rng.integers(0, diff.size, size=(n_resamples, diff.size))
    return _bootstrap_p(diff[index].mean(axis=1), float(diff.mean()))


def _row_ranks(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank) of values[index] within every row of ``index``.

    A bootstrap row is a multiset of the original values, so its ranks follow from per-row
    counts of each distinct value: no sort per row.
    """
    distinct, ids = np.unique(values, return_inverse=True)
    rows, width = index.shape[0], distinct.size
    row_ids = ids[index]
    counts = np.bincount((row_ids + width * np.arange(rows)[:, None]).ravel(), minlength=rows * width)
    counts = counts.reshape(rows, width).astype(np.float64)
    mean_rank = np.cumsum(counts, axis=1) - counts + (counts + 1.0) / 2.0
    return np.take_along_axis(mean_rank, row_ids, axis=1)


def _spearman_rows(gold: np.ndarray, values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Spearman correlation of gold vs values for every bootstrap row of indices."""
    g = _row_ranks(gold, index)
    v = _row_ranks(values, index)
    g = g - g.mean(axis=1, keepdims=True)
    v = v - v.mean(axis=1, keepdims=True)
    denom = np.sqrt((g * g).sum(axis=1) * (v * v).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (g * v).sum(axis=1) / denom, 0.0)


def bootstrap_correlation_test(
    gold: Sequence[float], a: Sequence[float], b: Sequence[float], n_resamples: int = 2_000, seed: int = 0
) -> float:
    """Paired bootstrap p-value for spearman(gold, a) != spearman(gold, b), resampling pairs."""
    g = np.asarray(gold, dtype=np.float64)
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if not (g.shape == x.shape == y.shape) or g.ndim != 1:
        raise ValueError("gold, a and b must be equal-length 1-D samples")
    if np.array_equal(x, y):
        return 1.0
    rng = np.random.default_rng(seed)
    index = rng.integers(0, g.size, size=(n_resamples, g.size))
    stats = _spearman_rows(g, x, index) - _spearman_rows(g, y, index)
    full = np.arange(g.size)[None, :]
    observed = float(_spearman_rows(g, x, full)[0] - _spearman_rows(g, y, full)[0])
    return _bootstrap_p(stats, observed)


def bootstrap_correlation_ci(
    gold: Sequence[float], a: Sequence[float], b: Sequence[float], n_resamples: int = 2_000, seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of spearman(gold, a) - spearman(gold, b), resampling pairs together."""
    g, x, y = (np.asarray(v, dtype=np.float64) for v in (gold, a, b))
    index = np.random.default_rng(seed).integers(0, g.size, size=(n_resamples, g.size))
    stats = _spearman_rows(g, x, index) - _spearman_rows(g, y, index)
    tail = 100.0 * (1.0 - level) / 2.0
    return float(np.percentile(stats, tail)), float(np.percentile(stats, 100.0 - tail))


def paired_test(name: str, n_resamples: int = 10_000, seed: int = 0) -> Callable[[Sequence[float], Sequence[float]], float]:
    """The configured test by name (config key 'tempscale.significance.test')."""
    if name == "sign":
        return sign_test
    if name == "permutation":
        return lambda a, b: permutation_test(a, b, n_resamples=n_resamples, seed=seed)
    if name == "bootstrap":
        return lambda a, b: bootstrap_test(a, b, n_resamples=n_resamples, seed=seed)
    raise ValueError(f"unknown paired test {name!r} (choose from {TESTS})")
