"""One look for every figure: sizes, fonts, colours, and the provenance footer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def apply_style() -> None:
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.labelsize": 9,
            "legend.fontsize": 8,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
            "savefig.bbox": "tight",
        }
    )


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.8) -> tuple[Any, Any]:
    """A figure of ``ncols x nrows`` panels, each ``width x height`` inches."""
    apply_style()
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)


def footer(fig: Any, provenance: Mapping[str, Any]) -> None:
    """Small grey line naming the run scale and commit, so a laptop plot is never mistaken."""
    scale = provenance.get("scale", "?")
    commit = str(provenance.get("git_commit", "unknown"))[:10]
    fig.text(0.99, 0.005, f"scale={scale} · commit {commit}", ha="right", va="bottom",
             fontsize=6, color="0.5")
