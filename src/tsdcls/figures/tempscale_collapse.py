"""Length-collapse figure (the TempScale paper's Figure 1 and friends), from the collapse CSVs only.

Panels per model: (a) mean pairwise cosine of a bin's embeddings vs its mean token count, tau = 1
against each TempScale tau (nested windows solid, natural paragraphs dotted); (b) the change
TempScale makes to that cosine per bin; (c) sigma_a per layer vs length at tau = 1 (solid) and
at the smallest tau (dashed).
"""

from __future__ import annotations

from typing import Any

from tsdcls.common.config import ConfigError
from tsdcls.common.io import read_csv, save_figure

SIMILARITY_COLUMNS = {"model", "tau", "kind", "bin", "bin_lo", "mean_tokens", "mean_pairwise_cosine", "n_texts"}
ATTENTION_COLUMNS = {"model", "tau", "bin", "bin_lo", "layer", "mean_tokens", "sigma_a_mean"}


def _read(path: Any, needed: set[str]) -> Any:
    frame = read_csv(path)
    missing = needed - set(frame.columns)
    if missing and len(frame):
        raise ConfigError(f"{path}: missing columns {sorted(missing)}")
    return frame


def _length_axis(ax: Any) -> None:
    """Log-2 token axis with plain tick labels (32, 64, ...)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator([8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())


def _tau_name(tau: float) -> str:
    """Legend text (τ in prose and figures; the style keys below stay ASCII ids)."""
    return f"τ={tau:g}"


def run_collapse_figure(job: Any) -> None:
    """Verb figure-tempscale-collapse: results/figures/tempscale_collapse.png/.pdf."""
    import matplotlib.pyplot as plt

    from tsdcls.figures.style import (
        distinct_colours,
        finish,
        label_axes,
        new_figure,
        ordered_colours,
        series_style,
    )

    similarity = _read(job.input("similarity"), SIMILARITY_COLUMNS)
    attention = _read(job.input("attention"), ATTENTION_COLUMNS)
    if similarity.empty:
        raise ConfigError(f"{job.input('similarity')}: no rows (config keys 'tempscale.models', 'tempscale.collapse')")
    models = list(dict.fromkeys(similarity["model"]))
    fig, axes = new_figure(ncols=3, nrows=len(models), width=3.5, height=2.9)
    for row, model in enumerate(models):
        sim = similarity[similarity["model"] == model]
        taus = sorted(set(sim["tau"]), reverse=True)
        names = {tau: "tau=1" if tau == 1.0 else f"tempscale-{tau:g}" for tau in taus}  # style keys
        colours = distinct_colours(names.values())  # one colour per tau in every panel
        ax = axes[row, 0]
        for tau in taus:
            style = {**series_style(names[tau]), "color": colours[names[tau]]}
            for kind, linestyle in (("window", style["linestyle"]), ("natural", ":")):
                part = sim[(sim["tau"] == tau) & (sim["kind"] == kind)].sort_values("bin_lo")
                if part.empty:
                    continue
                label = _tau_name(tau) + ("" if kind == "window" else " (paragraphs)")
                ax.plot(part["mean_tokens"], part["mean_pairwise_cosine"], label=label,
                        color=style["color"], marker=style["marker"], linestyle=linestyle)
        _length_axis(ax)
        label_axes(ax, ("text length", "tokens"), ("mean pairwise cosine", None), f"{model}: collapse")
        ax.legend(loc="upper left", fontsize=6.5)

        ax = axes[row, 1]
        base = sim[(sim["tau"] == 1.0) & (sim["kind"] == "window")].set_index("bin")["mean_pairwise_cosine"]
        for tau in [t for t in taus if t != 1.0]:
            part = sim[(sim["tau"] == tau) & (sim["kind"] == "window")].sort_values("bin_lo")
            style = {**series_style(names[tau]), "color": colours[names[tau]]}
            ax.plot(part["mean_tokens"], part["mean_pairwise_cosine"].to_numpy() - base.loc[part["bin"]].to_numpy(),
                    label=_tau_name(tau), color=style["color"], marker=style["marker"])
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        _length_axis(ax)
        label_axes(ax, ("text length", "tokens"), ("Δ cosine vs τ=1", None), "TempScale effect (windows)")
        if len(taus) > 2:
            ax.legend(loc="best")

        ax = axes[row, 2]
        att = attention[attention["model"] == model] if len(attention) else attention
        if len(att):
            low = min(att["tau"])
            layers = sorted(set(att["layer"]))
            for layer in layers:
                color = ordered_colours(len(layers))[layers.index(layer)]
                for tau, linestyle in ((1.0, "-"), (low, "--")):
                    part = att[(att["tau"] == tau) & (att["layer"] == layer)].sort_values("bin_lo")
                    if part.empty or (tau == low and low == 1.0):
                        continue
                    ax.plot(part["mean_tokens"], part["sigma_a_mean"], color=color, linestyle=linestyle, marker="o",
                            markersize=3, label=f"layer {layer}" if tau == 1.0 else None)
            _length_axis(ax)
            ax.legend(loc="upper left", ncol=2, fontsize=6.5, title=f"solid τ=1, dashed τ={low:g}", title_fontsize=6.5)
        label_axes(ax, ("text length", "tokens"), ("σ_a = ||(I−J)A(I−J)||₂", None), "attention high-frequency gain")
    scale = similarity.attrs.get("provenance", {}).get("scale") or job.config.get("scale", "?")
    prov = job.prov(scale=scale, sources=[str(job.input("similarity")), str(job.input("attention"))])
    finish(fig, prov)
    save_figure(fig, job.output("png").with_suffix(""), prov, dpi=int(job.config["dpi"]))
    plt.close(fig)

