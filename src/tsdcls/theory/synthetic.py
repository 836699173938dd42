"""Checks (a)-(c) on synthetic logits: the HC inequality, the closed-form bound, the n^-1/2 law.

Each experiment returns rows (for the CSVs) and :class:`Check` verdicts; nothing here writes
files, so tests can call the experiments directly with tiny settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.optimize import brentq
from tqdm import tqdm

from tsdcls.common.config import ConfigError, reject_unknown_keys
from tsdcls.common.lowpass import (
    attention_from_logits,
    doubly_centered,
    hc_component,
    top_singular_triplet,
)
from tsdcls.common.seeding import derive_seed
from tsdcls.theory import bounds, logits
from tsdcls.theory.record import Check

BoundFn = Callable[[int, float, float], float]


@dataclass(frozen=True)
class SyntheticSettings:
    """theory.synthetic as typed values (keys and meaning: workflow/schemas/theory.schema.yaml)."""

    lengths: list[int]
    trials: int
    logit_std: list[float]
    taus: list[float]
    gammas: list[float]
    dim: int
    n_ref: int
    large_length: int = 2048
    large_length_trials: int = 1
    bound_max_length: int = 1024
    tau_restore_max_length: int = 512
    fit_min_length: int = 32
    small_logit_max: float = 0.5
    slope_tolerance_floor: float = 0.05
    law_rel_tolerance: float = 0.1
    tau_rel_tolerance: float = 0.1
    bootstrap_draws: int = 200
    exact_max_n: int = 256
    inequality_tolerance: float = 1e-9

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> SyntheticSettings:
        reject_unknown_keys(section, cls.__dataclass_fields__, "theory.synthetic")
        try:
            settings = cls(**section)
        except TypeError as err:
            raise ConfigError(f"config section 'theory.synthetic' is incomplete: {err}") from err
        if 1.0 not in settings.taus:
            raise ConfigError("config key 'theory.synthetic.taus' must contain 1.0 (the reference)")
        if sorted(set(settings.lengths)) != list(settings.lengths):
            raise ConfigError("config key 'theory.synthetic.lengths' must be strictly increasing")
        fitted = [n for n in settings.lengths if n >= settings.fit_min_length]
        if len(fitted) < 2:
            raise ConfigError(
                "config key 'theory.synthetic.fit_min_length' leaves fewer than 2 lengths to fit a slope"
            )
        return settings

    def trials_at(self, n: int) -> int:
        return self.large_length_trials if n >= self.large_length else self.trials


@dataclass
class GainProbe:
    """sigma_a of one attention matrix plus the inequality margins measured on it."""

    sigma_a: float
    margin_random: float
    margin_adversarial: float
    identity_error: float


def probe_attention(attn: torch.Tensor, tokens: torch.Tensor, exact_max_n: int) -> GainProbe:
    """sigma_a = ||(I-J)A(I-J)||_2 and the relative slack of ||HC[AX]|| <= sigma_a ||HC[X]||.

    Two token sets: random ``tokens`` and the adversarial X = top right singular vector, for
    which the inequality is tight (margin ~ rounding).
    """
    centered = doubly_centered(attn)
    sigma, _, right = top_singular_triplet(centered, exact_max_n=exact_max_n)
    scale = max(sigma, 1e-300)
    hc_out = hc_component(attn @ tokens)
    ratio = float(torch.linalg.matrix_norm(hc_out) / torch.linalg.matrix_norm(hc_component(tokens)))
    worst_x = right[:, None]
    worst_ratio = float(
        torch.linalg.matrix_norm(hc_component(attn @ worst_x)) / torch.linalg.matrix_norm(hc_component(worst_x))
    )
    identity = float(torch.linalg.matrix_norm(hc_out - centered @ tokens) / max(float(torch.linalg.matrix_norm(hc_out)), 1e-300))
    return GainProbe(sigma, (sigma - ratio) / scale, (sigma - worst_ratio) / scale, identity)


def _generator(seed: int, *labels: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *labels))


def _tokens(n: int, dim: int, seed: int, *labels: object) -> torch.Tensor:
    return torch.randn(n, dim, generator=_generator(seed, "tokens", *labels), dtype=torch.float64)


class InequalityTally:
    """Worst margins of check (a) per logit family, fed by every probe of every experiment."""

    def __init__(self) -> None:
        self.worst: dict[str, dict[str, float]] = {}
        self.count = 0

    def add(self, family: str, n: int, probe: GainProbe) -> None:
        self.count += 1
        entry = self.worst.setdefault(family, {"random_x": math.inf, "adversarial_x": math.inf,
                                                "identity_error": 0.0, "max_length": 0})
        entry["random_x"] = min(entry["random_x"], probe.margin_random)
        entry["adversarial_x"] = min(entry["adversarial_x"], probe.margin_adversarial)
        entry["identity_error"] = max(entry["identity_error"], probe.identity_error)
        entry["max_length"] = max(entry["max_length"], n)

    def check(self, tolerance: float) -> Check:
        worst = min(min(e["random_x"], e["adversarial_x"]) for e in self.worst.values())
        identity = max(e["identity_error"] for e in self.worst.values())
        return Check(
            name="hc_inequality",
            claim="||HC[AX]||_F <= sigma_a ||HC[X]||_F and HC[AX] = (I-J)A(I-J)X for every A tested",
            worst_margin=min(worst + tolerance, tolerance - identity),
            details={
                "margin_unit": "(sigma_a - ||HC[AX]||/||HC[X]||) / sigma_a, plus the rounding tolerance",
                "tolerance": tolerance,
                "matrices": self.count,
                "worst_relative_slack": worst,
                "max_identity_relative_error": identity,
                "per_family": self.worst,
            },
        )


def gaussian_grid(settings: SyntheticSettings, seed: int, tally: InequalityTally) -> pd.DataFrame:
    """sigma_a for i.i.d. N(0, s^2) logits over (n, s, tau, trial); one draw Z per (n, trial).

    sigma_a depends on (s, tau) only through g = s/tau, so each distinct g is computed once and
    shared (common random numbers make the tau comparison paired).
    """
    rows = []
    pairs = [(s, tau, s / tau) for s in settings.logit_std for tau in settings.taus]
    jobs = [(n, t) for n in settings.lengths for t in range(settings.trials_at(n))]
    for n, trial in tqdm(jobs, desc="gaussian logits", leave=False, mininterval=5):
        unit = logits.gaussian(n, 1.0, _generator(seed, "gaussian", n, trial))
        tokens = _tokens(n, settings.dim, seed, "gaussian", n, trial)
        cache: dict[float, float] = {}
        for s, tau, g in pairs:
            key = round(g, 12)
            if key not in cache:
                probe = probe_attention(attention_from_logits(g * unit), tokens, settings.exact_max_n)
                tally.add("gaussian", n, probe)
                cache[key] = probe.sigma_a
            rows.append({
                "n": n, "logit_std": s, "tau": tau, "g": g, "trial": trial, "sigma_a": cache[key],
                "gaussian_law": bounds.gaussian_logit_gain(n, s, tau),
                "small_logit_law": 2.0 * g / math.sqrt(n),
                "in_small_logit_regime": g <= settings.small_logit_max,
            })
        causal = attention_from_logits(logits.causal(n, max(settings.logit_std), _generator(seed, "causal", n, trial)))
        tally.add("causal", n, probe_attention(causal, tokens, settings.exact_max_n))
    return pd.DataFrame(rows)


def bounded_logit_sweep(
    settings: SyntheticSettings, seed: int, tally: InequalityTally, bound_fn: BoundFn
) -> pd.DataFrame:
    """Exact sigma_a of structured and random bounded logits against the closed-form bound.

    Every gamma for n <= bound_max_length; beyond, the largest gamma only (cost).
    """
    rows = []
    tau_pair = sorted({1.0, min(settings.taus)})
    jobs = [
        (n, family, gamma, tau)
        for n in settings.lengths
        for gamma in (settings.gammas if n <= settings.bound_max_length else [max(settings.gammas)])
        for family in logits.BOUNDED_FAMILIES
        for tau in (tau_pair if n <= settings.bound_max_length else [1.0])
    ]
    for n, family, gamma, tau in tqdm(jobs, desc="bounded logits", leave=False, mininterval=5):
        scores = logits.BOUNDED_FAMILIES[family](n, gamma, _generator(seed, family, n, gamma))
        assert float(scores.abs().max()) <= gamma * (1 + 1e-12)
        tokens = _tokens(n, settings.dim, seed, family, n, gamma)
        probe = probe_attention(attention_from_logits(scores, tau), tokens, settings.exact_max_n)
        tally.add(family, n, probe)
        bound = bound_fn(n, gamma, tau)
        rows.append({
            "n": n, "family": family, "gamma": gamma, "tau": tau, "g": gamma / tau,
            "sigma_a": probe.sigma_a, "bound": bound,
            "bound_length_free": bounds.bounded_logit_gain_bound_nfree(gamma, tau),
            "lower_example_tanh_g": bounds.bounded_logit_lower_example(gamma, tau),
            "tightness": probe.sigma_a / bound if bound > 0 else math.inf,
            "margin": (bound - probe.sigma_a) / max(bound, 1e-300),
        })
    return pd.DataFrame(rows)


def bound_check(frame: pd.DataFrame, tolerance: float) -> Check:
    worst = frame.loc[frame["margin"].idxmin()]
    tight = frame.groupby("family")["tightness"].max().round(4).to_dict()
    return Check(
        name="closed_form_bound",
        claim="|S_ij| <= gamma implies sigma_a <= sqrt(2 tanh(g/2) (n-1)(1-e^{-2g})/(1+(n-1)e^{-2g})), g = gamma/tau",
        worst_margin=float(frame["margin"].min()) + tolerance,
        details={
            "margin_unit": "(bound - sigma_a) / bound, plus the rounding tolerance",
            "tolerance": tolerance,
            "matrices": len(frame),
            "worst_case": {k: (v.item() if hasattr(v, "item") else v) for k, v in worst.items()},
            "max_tightness_per_family": tight,
            "max_sigma_a": float(frame["sigma_a"].max()),
            "sigma_a_above_1_cases": int((frame["sigma_a"] > 1.0).sum()),
        },
    )


def slope_check(frame: pd.DataFrame, settings: SyntheticSettings, seed: int) -> tuple[Check, pd.DataFrame]:
    """Fitted log-log slope of mean sigma_a vs n for each (s, tau); -1/2 asserted in regime."""
    fitted = frame[frame["n"] >= settings.fit_min_length]
    rows = []
    for (s, tau), group in fitted.groupby(["logit_std", "tau"]):
        by_n = group.groupby("n")["sigma_a"]
        lengths = list(by_n.groups)
        samples = [by_n.get_group(n).to_numpy() for n in lengths]
        slope, intercept = bounds.fit_loglog_slope(lengths, [float(np.mean(x)) for x in samples])
        se = bounds.bootstrap_slope_se(lengths, samples, settings.bootstrap_draws, derive_seed(seed, "boot", s, tau))
        tolerance = max(settings.slope_tolerance_floor, 3.0 * se)
        g = s / tau
        rows.append({
            "logit_std": s, "tau": tau, "g": g, "slope": slope, "intercept": intercept,
            "bootstrap_se": se, "tolerance": tolerance, "in_small_logit_regime": g <= settings.small_logit_max,
            "margin": tolerance - abs(slope + 0.5),
        })
    slopes = pd.DataFrame(rows)
    asserted = slopes[slopes["in_small_logit_regime"]]
    check = Check(
        name="gaussian_slope",
        claim=f"i.i.d. Gaussian logits with g = s/tau <= {settings.small_logit_max}: sigma_a ~ n^(-1/2)",
        worst_margin=float(asserted["margin"].min()) if len(asserted) else -math.inf,
        details={
            "margin_unit": "tolerance - |slope + 0.5|; tolerance = max(floor, 3 bootstrap SE)",
            "fit_lengths": f"n >= {settings.fit_min_length}",
            "asserted": asserted[["logit_std", "tau", "slope", "tolerance"]].to_dict("records"),
            "reported_outside_regime": slopes[~slopes["in_small_logit_regime"]][["logit_std", "tau", "g", "slope"]].to_dict("records"),
        },
    )
    return check, slopes


def gain_law_check(frame: pd.DataFrame, settings: SyntheticSettings) -> Check:
    """Mean sigma_a against 2 sqrt((e^{g^2}-1)/n), in the small-logit regime."""
    means = frame.groupby(["n", "logit_std", "tau", "g"], as_index=False).agg(
        sigma_a=("sigma_a", "mean"), gaussian_law=("gaussian_law", "first"))
    means["rel_error"] = (means["sigma_a"] / means["gaussian_law"] - 1.0).abs()
    scope = means[(means["g"] <= settings.small_logit_max) & (means["n"] >= settings.fit_min_length)]
    worst = scope.loc[scope["rel_error"].idxmax()] if len(scope) else None
    return Check(
        name="gaussian_gain_law",
        claim="mean sigma_a = 2 sqrt((e^{g^2}-1)/n) within the relative tolerance (small-logit regime)",
        worst_margin=settings.law_rel_tolerance - float(scope["rel_error"].max()) if len(scope) else -math.inf,
        details={
            "margin_unit": "tolerance - |measured/predicted - 1|",
            "tolerance": settings.law_rel_tolerance,
            "cells": len(scope),
            "worst_cell": None if worst is None else {k: float(v) for k, v in worst.items()},
            "max_rel_error_outside_regime": float(means[means["g"] > settings.small_logit_max]["rel_error"].max())
            if (means["g"] > settings.small_logit_max).any() else None,
        },
    )


def monotone_tau_check(frame: pd.DataFrame) -> Check:
    """For each (n, s): the trial-mean sigma_a strictly increases as tau decreases."""
    means = frame.groupby(["n", "logit_std", "tau"], as_index=False)["sigma_a"].mean()
    worst = math.inf
    worst_cell: dict[str, float] = {}
    for (n, s), group in means.groupby(["n", "logit_std"]):
        ordered = group.sort_values("tau", ascending=False)["sigma_a"].to_numpy()
        if len(ordered) < 2:
            continue
        rises = ordered[1:] / ordered[:-1] - 1.0
        if rises.min() < worst:
            worst = float(rises.min())
            worst_cell = {"n": int(n), "logit_std": float(s)}
    return Check(
        name="gain_rises_as_tau_falls",
        claim="lower temperature raises sigma_a (every n and s, trial means)",
        worst_margin=worst,
        details={"margin_unit": "smallest relative increase of sigma_a between neighbouring taus",
                 "worst_cell": worst_cell},
    )


def tau_restoring_sweep(settings: SyntheticSettings, seed: int) -> pd.DataFrame:
    """Numerically solve sigma_a(n, s, tau*) = sigma_a(n_ref, s, 1) and compare with theory.

    The objective is the trial mean on fixed draws, a smooth function of log tau; brentq in a
    bracket around the Gaussian-law prediction (widened until it brackets the root).
    """
    lengths = [n for n in settings.lengths if n <= settings.tau_restore_max_length]
    trials = settings.trials

    def draws(n: int) -> list[torch.Tensor]:
        return [logits.gaussian(n, 1.0, _generator(seed, "tau", n, t)) for t in range(trials)]

    def mean_gain(units: list[torch.Tensor], g: float) -> float:
        values = [top_singular_triplet(doubly_centered(attention_from_logits(g * u)), settings.exact_max_n)[0]
                  for u in units]
        return float(np.mean(values))

    reference = draws(settings.n_ref)
    rows = []
    jobs = [(n, s) for n in lengths for s in settings.logit_std]
    for n, s in tqdm(jobs, desc="tau restoring", leave=False, mininterval=5):
        target = mean_gain(reference, s)
        units = draws(n) if n != settings.n_ref else reference
        predicted = bounds.tau_restoring_gain_gaussian(n, settings.n_ref, s)
        if n == settings.n_ref:
            rows.append(_restore_row(n, settings, s, 1.0, predicted))
            continue

        def gap(log_tau: float, units: list[torch.Tensor] = units, target: float = target, s: float = s) -> float:
            return mean_gain(units, s / math.exp(log_tau)) - target

        low, high = math.log(predicted) - 0.3, math.log(predicted) + 0.3
        for _ in range(8):  # widen until sigma(low tau) > target > sigma(high tau)
            if gap(low) > 0:
                break
            low -= 0.5
        for _ in range(8):
            if gap(high) < 0:
                break
            high += 0.5
        tau_numeric = math.exp(brentq(gap, low, high, xtol=1e-4))
        rows.append(_restore_row(n, settings, s, tau_numeric, predicted))
    return pd.DataFrame(rows)


def _restore_row(n: int, settings: SyntheticSettings, s: float, tau_numeric: float, predicted: float) -> dict:
    small = bounds.tau_restoring_gain_small_logit(n, settings.n_ref)
    return {
        "n": n, "n_ref": settings.n_ref, "logit_std": s, "tau_numeric": tau_numeric,
        "tau_gaussian_law": predicted, "tau_small_logit": small,
        "g_numeric": s / tau_numeric,
        "rel_error_gaussian_law": tau_numeric / predicted - 1.0,
        "rel_error_small_logit": tau_numeric / small - 1.0,
        "in_small_logit_regime": max(s, s / predicted) <= settings.small_logit_max,
    }


def tau_restoring_check(frame: pd.DataFrame, settings: SyntheticSettings) -> Check:
    scope = frame[frame["in_small_logit_regime"] & (frame["n"] >= settings.fit_min_length)]
    worst = float(scope["rel_error_gaussian_law"].abs().max()) if len(scope) else math.inf
    return Check(
        name="tau_restores_gain",
        claim="tau(n) = s / sqrt(ln(1 + (n/n_ref)(e^{s^2}-1))) restores sigma_a(n_ref, tau=1) at length n "
              "(-> sqrt(n_ref/n) when s^2 n/n_ref is small)",
        worst_margin=settings.tau_rel_tolerance - worst,
        details={
            "margin_unit": "tolerance - |tau_numeric/tau_predicted - 1|",
            "tolerance": settings.tau_rel_tolerance,
            "cells_asserted": len(scope),
            "max_abs_rel_error_small_logit_formula_in_regime": float(scope["rel_error_small_logit"].abs().max())
            if len(scope) else None,
            "not_asserted": frame[~frame.index.isin(scope.index)][
                ["n", "logit_std", "tau_numeric", "tau_gaussian_law", "tau_small_logit"]].to_dict("records"),
        },
    )


def run_all(
    settings: SyntheticSettings, seed: int, bound_fn: BoundFn = bounds.bounded_logit_gain_bound
) -> tuple[dict[str, pd.DataFrame], list[Check]]:
    """Every synthetic experiment; returns the frames for the CSVs and the checks."""
    tally = InequalityTally()
    gains = gaussian_grid(settings, seed, tally)
    bounded = bounded_logit_sweep(settings, seed, tally, bound_fn)
    slope, slopes = slope_check(gains, settings, seed)
    restore = tau_restoring_sweep(settings, seed)
    checks = [
        tally.check(settings.inequality_tolerance),
        bound_check(bounded, settings.inequality_tolerance),
        slope,
        gain_law_check(gains, settings),
        monotone_tau_check(gains),
        tau_restoring_check(restore, settings),
    ]
    return {"gains": gains, "bounds": bounded, "slopes": slopes, "tau_restore": restore}, checks
