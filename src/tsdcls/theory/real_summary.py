"""Bootstrap summaries of the real-attention gains (docs/theory.md, section 4).

Texts are the resampled items: each bootstrap replicate draws texts with replacement and keeps
every length, layer and tau of a drawn text, so trends over length and tau stay paired. One set
of indices serves every quantity. Nothing here asserts a direction: the tables are data for the
claims ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tsdcls.common.seeding import derive_seed
from tsdcls.common.stats import bootstrap_indices, loglog_slopes, percentile_bounds

if TYPE_CHECKING:
    from tsdcls.theory.real_attention import RealSettings

# head-mean quantities of real_attention_gain.csv that get a CI per (layer, n, tau) and a slope
QUANTITIES = ("sigma_a", "sigma_a_nosink", "typical_gain", "top_key_share", "sink_mass", "realized_gain")
SMALL_LOGIT_ALPHA = 0.5  # tau(n) = (n_ref / n)^(1/2): small-logit theory (docs/theory.md, section 3)


def cube(frame: pd.DataFrame, column: str, lengths: list[int], taus: list[float]) -> np.ndarray:
    """``column`` as an array [text, layer, n, tau] (lengths and taus in the given order)."""
    table = frame.pivot_table(index=["text", "layer"], columns=["n", "tau"], values=column, aggfunc="first")
    table = table.reindex(columns=pd.MultiIndex.from_product([lengths, taus], names=["n", "tau"]))
    texts = frame["text"].nunique()
    values = table.to_numpy(dtype=np.float64).reshape(texts, -1, len(lengths), len(taus))
    if np.isnan(values).any():
        raise ValueError(f"real-attention rows for '{column}' are incomplete (a text, layer, n or tau is missing)")
    return values


def restoring_tau(curves: np.ndarray, target: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """tau where the tabulated typical gain equals ``target``, per [..., n, layer] (NaN if none).

    ``curves`` [..., n, layer, grid]; ``target`` [..., layer]. Log gain is interpolated linearly
    in log tau between grid points; of several crossings the one nearest tau = 1 is taken.
    """
    diff = np.log(curves) - np.log(target)[..., None, :, None]
    log_grid = np.log(grid)
    left, right = diff[..., :-1], diff[..., 1:]
    crosses = (left * right <= 0) & (left != right)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(crosses, left / (left - right), np.nan)
    candidate = log_grid[:-1] + fraction * np.diff(log_grid)
    distance = np.where(np.isfinite(candidate), np.abs(candidate), np.inf)
    best = np.argmin(distance, axis=-1)[..., None]
    picked = np.take_along_axis(candidate, best, axis=-1)[..., 0]
    found = np.isfinite(np.take_along_axis(distance, best, axis=-1)[..., 0])
    return np.where(found, np.exp(picked), np.nan)


def fit_alpha(tau: np.ndarray, lengths: list[int], n_ref: int) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of log tau = alpha log(n_ref / n) through the origin: per layer [..., layer]
    and pooled over layers [...]. ``tau`` is [..., n, layer]; NaN cells and n = n_ref are left out."""
    x = np.log(n_ref / np.asarray(lengths, dtype=np.float64))[:, None]
    log_tau = np.log(tau)
    usable = np.isfinite(log_tau) & (x != 0)
    xy = np.where(usable, x * log_tau, 0.0)
    xx = np.where(usable, x * x, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_layer = xy.sum(axis=-2) / xx.sum(axis=-2)
        pooled = xy.sum(axis=(-2, -1)) / xx.sum(axis=(-2, -1))
    return per_layer, pooled


def _interval(estimate: np.ndarray, replicates: np.ndarray, level: float) -> dict[str, np.ndarray]:
    low, high = percentile_bounds(replicates, level)
    return {"estimate": estimate, "ci_low": low, "ci_high": high}


def _long_rows(quantity: str, stats: dict[str, np.ndarray], axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Flatten arrays shaped by ``axes`` (name -> coordinates, in axis order) into rows."""
    names = list(axes)
    rows = []
    for index in np.ndindex(*(len(axes[name]) for name in names)):
        row: dict[str, Any] = {"quantity": quantity, **{name: axes[name][i] for name, i in zip(names, index, strict=True)}}
        row.update({key: float(value[index]) for key, value in stats.items()})
        rows.append(row)
    return rows


def summarize(frame: pd.DataFrame, curves: np.ndarray, settings: RealSettings, seed: int) -> dict[str, pd.DataFrame]:
    """The `summary`, `slopes` and `tau_law` tables of one run (columns: docs/theory.md, section 5)."""
    lengths, taus = list(settings.lengths), sorted(settings.taus, reverse=True)
    layers = sorted(int(x) for x in frame["layer"].unique())
    cubes = {q: cube(frame, q, lengths, taus) for q in QUANTITIES}
    texts = next(iter(cubes.values())).shape[0]
    index = bootstrap_indices(texts, settings.bootstrap_draws, derive_seed(seed, "real-attention-bootstrap"))
    level = settings.ci_level
    summary, slopes = [], []
    cell_axes = {"layer": layers, "n": lengths, "tau": taus}
    for quantity, values in {**cubes, "sigma_a_rise_vs_tau1": cubes["sigma_a"] / cubes["sigma_a"][..., :1] - 1.0}.items():
        replicates = values[index].mean(axis=1)  # draws x layer x n x tau
        summary += _long_rows(quantity, _interval(values.mean(axis=0), replicates, level), cell_axes)
        if quantity in QUANTITIES:
            per_n_last = np.moveaxis(values.mean(axis=0), 1, -1)  # layer x tau x n
            fitted = _interval(loglog_slopes(lengths, per_n_last), loglog_slopes(lengths, np.moveaxis(replicates, 2, -1)), level)
            slopes += _long_rows(quantity, fitted, {"layer": layers, "tau": taus})
    restore_rows, law_rows = tau_law(cubes["typical_gain"], curves, settings, index)
    summary_frame = pd.DataFrame(summary + restore_rows).assign(n_texts=texts)
    slope_frame = pd.DataFrame(slopes).assign(n_texts=texts, min_n=min(lengths), max_n=max(lengths))
    law = pd.DataFrame(law_rows).assign(model=settings.model, n_ref=settings.n_ref, n_texts=texts)
    return {"summary": summary_frame, "slopes": slope_frame, "tau_law": law}


def tau_law(typical: np.ndarray, curves: np.ndarray, settings: RealSettings, index: np.ndarray) -> tuple[list[dict], list[dict]]:
    """Restoring tau per (layer, n) and alpha of tau(n) = (n_ref/n)^alpha, with bootstrap CIs.

    The target of layer l is its text-mean typical gain at n_ref and tau = 1; the restoring tau
    at n is where the text-mean typical-gain curve of that layer at n meets it.
    """
    lengths, grid, level = list(settings.lengths), settings.restore_grid, settings.ci_level
    ref = lengths.index(settings.n_ref)
    tau_one = sorted(settings.taus, reverse=True).index(1.0)
    target = typical[:, :, ref, tau_one]  # text x layer
    mean_curves = curves.mean(axis=0)  # n x layer x grid
    estimate = restoring_tau(mean_curves, target.mean(axis=0), grid)
    replicates = restoring_tau(curves[index].mean(axis=1), target[index].mean(axis=1), grid)
    layers = list(range(curves.shape[2]))
    restore = _long_rows("restoring_tau", _interval(estimate, replicates, level), {"n": lengths, "layer": layers})
    for row in restore:
        row["tau"] = float("nan")  # the row's value is a temperature; no tau was applied
    per_layer, pooled = fit_alpha(estimate, lengths, settings.n_ref)
    rep_layer, rep_pooled = fit_alpha(replicates, lengths, settings.n_ref)
    unresolved = np.isnan(estimate)
    law = [{"layer": "all", "quantity": "alpha", **_scalar(_interval(pooled, rep_pooled, level)),
            "small_logit_alpha": SMALL_LOGIT_ALPHA, "unresolved_lengths": int(unresolved.sum())}]
    for layer in layers:
        law.append({"layer": str(layer), "quantity": "alpha",
                    **_scalar(_interval(per_layer[layer], rep_layer[:, layer], level)),
                    "small_logit_alpha": SMALL_LOGIT_ALPHA, "unresolved_lengths": int(unresolved[:, layer].sum())})
    return restore, law


def _scalar(stats: dict[str, np.ndarray]) -> dict[str, float]:
    return {key: float(value) for key, value in stats.items()}
