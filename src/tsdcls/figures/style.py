"""One look for every figure: sizes, fonts, colours, labelled axes, and the provenance footer.

Typical use in a stage's plotting verb::

    fig, axes = new_figure(ncols=2)
    ax = axes[0, 0]
    ax.plot(n, gain, label="tau = 1", **series_style("tau=1.0"))
    label_axes(ax, x=("sequence length n", "tokens"), y=("high-frequency gain", None), title="(a)")
    finish(fig, job.prov(), note="dotted: bound")  # footer below all; raises on unlabelled axes
    save_figure(fig, stem, job.prov())  # tsdcls.common.io: png + pdf

Colours come from the Okabe-Ito palette (colour-blind safe); ``series_style`` gives the same
colour and marker to the same variant name in every figure (dense vs DCLS, tau = 1 vs TempScale).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
# Baselines are always grey-black and drawn first, so "the paper's method vs its baseline" reads
# the same way in every figure.
BASELINE_NAMES = frozenset({
    "dense", "baseline", "tau=1", "tau=1.0", "tau1", "tau_1", "tau = 1", "tau1-all", "none",
})
BASELINE_COLOR = "#333333"
# Fixed colours for the variants that appear in several stages' figures.
KNOWN_COLORS = {
    "dcls_gauss": PALETTE[1], "dcls": PALETTE[1], "tempscale": PALETTE[1],
    "dcls_v0": PALETTE[0], "dilated": PALETTE[2], "dcls_frozen": PALETTE[3],
    "adaptive": PALETTE[4], "length_adaptive": PALETTE[4],
}

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "lines.linewidth": 1.6,
    "lines.markersize": 4.5,
    "errorbar.capsize": 2.5,
    "pdf.fonttype": 42,  # embed TrueType: text stays text in the PDF
    "ps.fonttype": 42,
    "image.cmap": "viridis",
}


def apply_style() -> None:
    """Set the shared rcParams (idempotent; every new_figure calls it)."""
    plt.rcParams.update(STYLE)


def new_figure(
    ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.8, **subplot_kw: Any
) -> tuple[Any, Any]:
    """A figure of ``ncols x nrows`` panels, each ``width x height`` inches; axes is 2-D always.

    Constrained layout keeps titles, tick labels and axis labels of a panel grid from overlapping
    (pass ``layout=None`` to place things by hand)."""
    apply_style()
    subplot_kw.setdefault("layout", "constrained")
    return plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **subplot_kw
    )


def axis_label(quantity: str, unit: str | None = None) -> str:
    """'quantity (unit)'; unit None for dimensionless quantities (say so rather than omit it)."""
    return f"{quantity} ({unit})" if unit else quantity


def label_axes(
    ax: Any,
    x: tuple[str, str | None] | str,
    y: tuple[str, str | None] | str,
    title: str | None = None,
) -> None:
    """Label both axes as 'quantity (unit)'; pass (quantity, None) for a dimensionless one."""
    ax.set_xlabel(axis_label(*x) if isinstance(x, tuple) else x)
    ax.set_ylabel(axis_label(*y) if isinstance(y, tuple) else y)
    if title:
        ax.set_title(title)


def _key(name: str) -> str:
    return str(name).strip().lower().replace(" ", "")


def is_baseline(name: str) -> bool:
    return _key(name) in {_key(b) for b in BASELINE_NAMES}


def color_for(name: str) -> str:
    """The same colour for the same variant name in every figure (stable across runs)."""
    if is_baseline(name):
        return BASELINE_COLOR
    key = _key(name)
    if key in KNOWN_COLORS:
        return KNOWN_COLORS[key]
    # stable hash (Python's hash() is salted per process); skip black, used for baselines.
    return PALETTE[zlib.crc32(key.encode()) % (len(PALETTE) - 1)]


def series_style(name: str) -> dict[str, Any]:
    """Colour, marker and line style for one named series (baselines dashed)."""
    key = _key(name)
    return {
        "color": color_for(name),
        "marker": MARKERS[zlib.crc32(key.encode()) % len(MARKERS)] if not is_baseline(name) else "o",
        "linestyle": "--" if is_baseline(name) else "-",
    }


FOOTER_GID = "tsdcls-footer"
MIN_LEGEND_PT = 6.5


def footer(fig: Any, provenance: Mapping[str, Any], note: str | None = None) -> None:
    """Small grey line naming the run scale and commit, so a laptop plot is never mistaken.

    Placed just below everything already drawn (tick labels, axis labels), so it never overlaps
    them; save_figure's tight bounding box grows to include it. ``note`` (e.g. "filled: p < 0.05")
    goes on the same line, left-aligned."""
    scale = provenance.get("scale", "?")
    commit = str(provenance.get("git_commit", "unknown"))[:10]
    bottom = 0.0
    try:
        fig.canvas.draw()  # settle the layout engine before measuring
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        bottom = min(0.0, box.y0 / fig.get_figheight())
    except Exception:  # noqa: BLE001 - measuring is a nicety; the footer must still appear
        bottom = 0.0
    fig.text(0.99, bottom - 0.01, f"scale={scale} · commit {commit}", ha="right", va="top",
             fontsize=6, color="0.5", gid=FOOTER_GID)
    if note:
        fig.text(0.01, bottom - 0.01, note, ha="left", va="top", fontsize=6, color="0.35")


def figure_problems(fig: Any) -> list[str]:
    """What breaks the shared look: unlabelled axes, several labelled series without a legend."""
    problems = []
    for index, ax in enumerate(_visible_axes(fig.axes)):
        titles = [ax.get_title(loc) for loc in ("left", "center", "right")]
        name = next((t for t in titles if t), f"axes {index}")
        if not ax.get_xlabel():
            problems.append(f"{name}: x axis has no label")
        if not ax.get_ylabel():
            problems.append(f"{name}: y axis has no label")
        labelled = [h for h in ax.get_legend_handles_labels()[1] if not h.startswith("_")]
        if len(labelled) > 1 and ax.get_legend() is None and not fig.legends:
            problems.append(f"{name}: {len(labelled)} labelled series but no legend")
        problems += [f"{name}: {p}" for p in _shared_colours(ax)]
    for legend in [ax.get_legend() for ax in fig.axes] + list(fig.legends):
        sizes = [text.get_fontsize() for text in legend.get_texts()] if legend else []
        if sizes and min(sizes) < MIN_LEGEND_PT:
            problems.append(f"legend text {min(sizes):g} pt < {MIN_LEGEND_PT} pt (unreadable at page size)")
    return problems


def _shared_colours(ax: Any) -> list[str]:
    """Two labelled line series of one panel in one colour and one line style cannot be told
    apart (a colour may be shared when the line style encodes a second variable)."""
    owner: dict[tuple[str, str], str] = {}
    out = []
    for line in ax.get_lines():
        label = str(line.get_label())
        if label.startswith("_"):
            continue
        key = (matplotlib.colors.to_hex(line.get_color()), str(line.get_linestyle()))
        if key in owner and owner[key] != label:
            out.append(f"series {owner[key]!r} and {label!r} share colour {key[0]} and line style")
        owner.setdefault(key, label)
    return out


def distinct_colours(names: Iterable[str]) -> dict[str, str]:
    """One colour per series of a panel: each name's usual colour unless an earlier series took
    it, then the next free palette colour (baselines keep theirs)."""
    taken: set[str] = set()
    out = {}
    for name in names:
        colour = color_for(name)
        if colour in taken:
            colour = next((c for c in PALETTE[:-1] if c not in taken), colour)
        taken.add(colour)
        out[name] = colour
    return out


def ordered_colours(count: int) -> list[str]:
    """Colours of ``count`` ordered series (layers, lengths): the palette while it suffices (its
    last colour, the baseline grey, left out), an ordered colour map beyond, so none repeats."""
    if count < len(PALETTE):
        return list(PALETTE[:count])
    cmap = matplotlib.colormaps["viridis"]
    return [matplotlib.colors.to_hex(cmap(i / max(count - 1, 1))) for i in range(count)]


def _visible_axes(axes: Iterable[Any]) -> list[Any]:
    # colorbars are axes too; they carry their own label
    return [ax for ax in axes if ax.get_visible() and ax.axison and not hasattr(ax, "_colorbar")
            and ax.get_label() != "<colorbar>"]


def finish(fig: Any, provenance: Mapping[str, Any], *, strict: bool = True,
           note: str | None = None) -> list[str]:
    """Add the footer (and ``note``) and check the figure; ``strict`` raises on problems."""
    footer(fig, provenance, note)
    problems = figure_problems(fig)
    if problems and strict:
        raise ValueError("figure does not follow the shared style: " + "; ".join(problems))
    return problems
