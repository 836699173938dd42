"""Figure `theory_attenuation`: sigma_a against length, synthetic and real (reads results/ only)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from tsdcls.common.io import read_csv, save_figure
from tsdcls.common.job import Job
from tsdcls.figures.style import PALETTE, footer, new_figure


def plot_attenuation(job: Job) -> None:
    """Verb `figure-theory-attenuation`: 2x2 panels, png + pdf with provenance."""
    gains = read_csv(job.input("gains"))
    real = read_csv(job.input("real"))
    bounded = read_csv(job.input("bounds")) if "bounds" in job.inputs else None
    slopes = read_csv(job.input("slopes")) if "slopes" in job.inputs else None
    fig, axes = new_figure(ncols=2, nrows=2, width=3.8, height=3.3)
    _gaussian_panel(axes[0][0], gains, slopes)
    if bounded is not None:
        _bound_panel(axes[0][1], bounded)
    else:
        axes[0][1].set_visible(False)
    _real_panel(axes[1][0], real, "sigma_a", r"head-mean $\sigma_a$")
    _real_panel(axes[1][1], real, "realized_gain", r"$\|HC[AV]\|_F/\|HC[V]\|_F$ (head mean)")
    provenance = job.prov(
        scale=gains.attrs.get("provenance", {}).get("scale", job.config.get("scale")),
        sources={name: str(path) for name, path in job.inputs.items()},
    )
    footer(fig, provenance)
    save_figure(fig, job.output("png").with_suffix(""), provenance, dpi=int(job.config["dpi"]))


def _gaussian_panel(ax: Any, gains: pd.DataFrame, slopes: pd.DataFrame | None) -> None:
    """Trial-mean sigma_a vs n per (s, tau), with the fitted slope and 2 sqrt((e^{g^2}-1)/n)."""
    means = gains.groupby(["logit_std", "tau", "n"], as_index=False).agg(
        sigma_a=("sigma_a", "mean"), law=("gaussian_law", "first"))
    taus = sorted(means["tau"].unique(), reverse=True)
    shown_taus = [taus[0], taus[-1]] if len(taus) > 1 else taus
    for color, (s, by_s) in zip(itertools.cycle(PALETTE), means.groupby("logit_std"), strict=False):
        for tau in shown_taus:
            cell = by_s[by_s["tau"] == tau]
            solid = tau == 1.0
            label = f"s={s:g}, τ={tau:g}"
            if slopes is not None:
                fit = slopes[(slopes["logit_std"] == s) & (slopes["tau"] == tau)]
                if len(fit):
                    label += f" (slope {float(fit['slope'].iloc[0]):+.2f})"
                    n = cell["n"].to_numpy()
                    ax.plot(n, np.exp(float(fit["intercept"].iloc[0])) * n ** float(fit["slope"].iloc[0]),
                            color=color, lw=0.8, ls="-" if solid else "--", alpha=0.6)
            ax.plot(cell["n"], cell["sigma_a"], "o" if solid else "s", color=color, ms=3.5,
                    mfc=color if solid else "none", label=label)
            ax.plot(cell["n"], cell["law"], ":", color=color, lw=0.8)
    ax.plot([], [], ":", color="0.4", lw=0.8, label=r"$2\sqrt{(e^{g^2}-1)/n}$, $g=s/\tau$")
    ax.set(xscale="log", yscale="log", xlabel="sequence length n", ylabel=r"$\sigma_a$",
           title="(a) Gaussian logits N(0, s²)")
    ax.legend(fontsize=7, loc="lower left", framealpha=0.8)


def _bound_panel(ax: Any, bounded: pd.DataFrame) -> None:
    """Worst family's sigma_a vs n per gamma (tau = 1) under the closed-form bound."""
    at_one = bounded[bounded["tau"] == 1.0]
    for color, (gamma, cell) in zip(itertools.cycle(PALETTE), at_one.groupby("gamma"), strict=False):
        worst = cell.groupby("n", as_index=False).agg(sigma_a=("sigma_a", "max"), bound=("bound", "first"))
        ax.plot(worst["n"], worst["sigma_a"], "o", color=color, ms=3.5, label=f"γ={gamma:g}: max over families")
        n = np.geomspace(worst["n"].min(), worst["n"].max(), 64)
        g = float(gamma)
        r = math.exp(-2 * g)
        bound = np.sqrt(2 * math.tanh(g / 2) * (n - 1) * (1 - r) / (1 + (n - 1) * r))
        ax.plot(n, bound, "-", color=color, lw=1.0)
        ax.axhline(math.tanh(g), color=color, lw=0.6, ls=":")
    ax.plot([], [], "-", color="0.4", lw=1.0, label="closed-form bound (Thm 1)")
    ax.plot([], [], ":", color="0.4", lw=0.6, label="tanh γ (attained, rank-one)")
    ax.set(xscale="log", yscale="log", xlabel="sequence length n", ylabel=r"$\sigma_a$",
           title=r"(b) bounded logits $|S_{ij}|\leq\gamma$, τ=1")
    ax.legend(fontsize=7, loc="upper left", framealpha=0.8)


def _real_panel(ax: Any, real: pd.DataFrame, column: str, ylabel: str) -> None:
    """Text-mean per-layer curve vs token length at tau = 1 (solid) and the smallest tau (dashed)."""
    means = real.groupby(["layer", "tau", "n"], as_index=False)[column].mean()
    tau_low = float(means["tau"].min())
    for color, (layer, cell) in zip(itertools.cycle(PALETTE), means.groupby("layer"), strict=False):
        for tau, style in ((1.0, "-o"), (tau_low, "--s")):
            line = cell[cell["tau"] == tau]
            ax.plot(line["n"], line[column], style, color=color, ms=3, lw=1.0, mfc="none" if tau != 1.0 else color,
                    label=f"layer {int(layer)}" if tau == 1.0 else None)
    lengths = sorted(int(n) for n in means["n"].unique())
    ax.set(xscale="log", yscale="log", xlabel="tokens n (Wikipedia prefixes)", ylabel=ylabel,
           title=f"({'c' if column == 'sigma_a' else 'd'}) MiniLM: τ=1 solid, τ={tau_low:g} dashed")
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7, ncols=2, framealpha=0.8)
