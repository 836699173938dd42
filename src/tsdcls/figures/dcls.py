"""DCLS figures from result files only: accuracy per variant, learned kernels, accuracy vs speed.

Every verb reads CSV/JSON under results/dcls (written by the dcls stage) and never a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsdcls.common.io import read_csv, read_json, save_figure
from tsdcls.common.job import Job
from tsdcls.figures.style import distinct_colours, finish, label_axes, new_figure, series_style

VARIANT_ORDER = ["dense", "dilated", "dcls_v0", "dcls_gauss", "dcls_frozen"]
VARIANT_LABELS = {"dense": "dense", "dilated": "dilated", "dcls_v0": "DCLS-v0",
                  "dcls_gauss": "DCLS-gauss", "dcls_frozen": "DCLS frozen"}


def _stem(job: Job, name: str = "png") -> Path:
    return job.output(name).with_suffix("")


def _cell_label(row: Any) -> str:
    label = VARIANT_LABELS.get(row.variant, row.variant)
    return label if row.variant == "dense" else f"{label}\nK={row.kernel_count}, {row.dks}x{row.dks}"


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    rank = {v: i for i, v in enumerate(VARIANT_ORDER)}
    return (frame.assign(_rank=frame["variant"].map(rank).fillna(99))
            .sort_values(["family", "_rank", "kernel_count", "dks"]).drop(columns="_rank"))


def _std(values: pd.Series) -> np.ndarray:
    return np.nan_to_num(values.to_numpy(dtype=float), nan=0.0)


# --- accuracy per variant ---------------------------------------------------------------------


def accuracy_figure(ablation: pd.DataFrame, robustness: pd.DataFrame, provenance: Mapping[str, Any]) -> Any:
    """(a) clean top-1 per grid cell, mean ± std over seeds; (b) top-1 under corruption by severity."""
    table = _ordered(ablation)
    families = list(dict.fromkeys(table["family"]))
    has_robust = not robustness.empty and robustness["severity"].notna().any()
    paired = "delta_ci_low" in table and table["delta_ci_low"].notna().any()
    fig, axes = new_figure(ncols=len(families) * (2 if paired else 1) + (1 if has_robust else 0), width=3.6, height=3.0)
    panels = iter(axes[0])
    for family in families:
        ax = next(panels)
        rows = table[table["family"] == family]
        x = np.arange(len(rows))
        for xi, row in zip(x, rows.itertuples(), strict=True):
            style = series_style(row.variant)
            ax.bar(xi, row.top1_mean, yerr=_std(pd.Series([row.top1_std]))[0], color=style["color"], alpha=0.85)
        low = float(np.nanmin(rows["top1_mean"] - _std(rows["top1_std"])))
        high = float(np.nanmax(rows["top1_mean"] + _std(rows["top1_std"])))
        pad = max(1.0, 0.15 * (high - low))
        ax.set_ylim(0.0, min(100.0, high + pad))  # from 0: small seed differences are not magnified
        ax.set_xticks(x, [_cell_label(r) for r in rows.itertuples()], rotation=45, ha="right", fontsize=6)
        seeds = int(rows["n_seeds"].min())
        label_axes(ax, x="conv variant", y=("top-1 accuracy", "%"), title=f"{family}, {seeds} seed(s)")
        if paired:
            _paired_panel(next(panels), rows, family)
    if has_robust:
        ax = next(panels)
        grouped = (robustness.dropna(subset=["severity"])
                   .groupby(["family", "variant", "kernel_count", "dks", "severity"])["top1"].mean().reset_index())
        series = list(grouped.groupby(["family", "variant", "kernel_count", "dks"]))
        colours = distinct_colours(f"{variant} K={k}/{d}" if variant != "dense" else variant
                                   for (_, variant, k, d), _ in series)
        for (family, variant, k, d), part in series:
            style = series_style(variant)
            style["color"] = colours[f"{variant} K={k}/{d}" if variant != "dense" else variant]
            if family != families[0]:
                style["linestyle"] = ":"
            name = VARIANT_LABELS.get(variant, variant) + ("" if variant == "dense" else f" K={k}/{d}")
            ax.plot(part["severity"], part["top1"], label=f"{family}: {name}", **style)
        ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        label_axes(ax, x=("corruption severity", None), y=("top-1 accuracy", "%"),
                   title="corrupted val (mean of types)")
    import matplotlib as mpl

    loc = mpl.rcParams["axes.titlelocation"]
    for index, ax in enumerate(axes[0]):
        ax.set_title(f"({chr(97 + index)}) {ax.get_title(loc=loc)}", loc=loc)
    finish(fig, provenance)
    return fig


def _paired_panel(ax: Any, rows: pd.DataFrame, family: str) -> None:
    """Top-1 minus dense of the same seed per cell: mean and 95% t-interval (ablation.csv)."""
    cells = rows[rows["variant"] != "dense"].reset_index(drop=True)
    for xi, row in enumerate(cells.itertuples()):
        style = series_style(row.variant)
        low, high = row.delta_ci_low, row.delta_ci_high
        if pd.notna(low):
            ax.plot([xi, xi], [low, high], color=style["color"], linewidth=2, label="_ci")
        ax.plot([xi], [row.delta_vs_dense], "o", color=style["color"], label="_mean")
    ax.axhline(0.0, color="#333333", linewidth=0.8)
    ax.set_xticks(range(len(cells)), [_cell_label(r) for r in cells.itertuples()], rotation=45, ha="right", fontsize=6)
    seeds = int(cells["n_pairs"].min()) if len(cells) else 0
    label_axes(ax, x="conv variant", y=("top-1 minus dense", "pp"),
               title=f"{family}: paired vs dense, 95% CI ({seeds} seeds)")


def run_accuracy_figure(job: Job) -> None:
    """Verb `figure-dcls-accuracy`: inputs ablation.csv, robustness.csv."""
    ablation = read_csv(job.input("ablation"))
    robustness = read_csv(job.input("robustness")) if job.inputs.get("robustness") else pd.DataFrame()
    provenance = job.prov(scale=job.config.get("scale"))
    fig = accuracy_figure(ablation, robustness, provenance)
    save_figure(fig, _stem(job), provenance, dpi=int(job.config["dpi"]))


# --- learned kernels ----------------------------------------------------------------------------


def splat_kernel(positions: np.ndarray, weights: np.ndarray, dks: int, sigma: np.ndarray | None = None) -> np.ndarray:
    """Dense dks x dks kernel of one channel: bilinear (v0) or Gaussian splat of its taps.

    ``positions`` is (2, K) relative to the centre (row, column), as stored by kernels.json.
    For plotting only: the model's own construction is in tsdcls.dcls.kernels.
    """
    kernel = np.zeros((dks, dks))
    centre = dks // 2
    rows, cols = positions[0] + centre, positions[1] + centre
    if sigma is None:
        for r, c, w in zip(rows, cols, weights, strict=True):
            r0, c0 = int(np.floor(r)), int(np.floor(c))
            fr, fc = r - r0, c - c0
            for dr, dc, share in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                                  (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
                if 0 <= r0 + dr < dks and 0 <= c0 + dc < dks:
                    kernel[r0 + dr, c0 + dc] += w * share
        return kernel
    grid = np.arange(dks)
    for r, c, w, s_r, s_c in zip(rows, cols, weights, sigma[0], sigma[1], strict=True):
        bump = np.exp(-((grid[:, None] - r) ** 2) / (2 * s_r**2) - ((grid[None, :] - c) ** 2) / (2 * s_c**2))
        kernel += w * bump / max(bump.sum(), 1e-7)
    return kernel


def kernel_figure(snapshots: Sequence[Mapping[str, Any]], provenance: Mapping[str, Any],
                  channels: int = 2, max_layers: int = 4) -> Any:
    """One row per (run, channel): the first DCLS layer of each stage, kernel heatmap + taps."""
    rows = []
    for snap in snapshots:
        layers = _one_layer_per_stage(snap["layers"])[:max_layers]
        if not layers:
            continue
        for channel in range(min(channels, len(layers[0]["positions"][0]))):
            rows.append((snap["run"], layers, channel))
    if not rows:
        fig, axes = new_figure()
        axes[0, 0].text(0.5, 0.5, "no DCLS layers in the selected runs", ha="center", va="center")
        label_axes(axes[0, 0], x="column", y="row", title="learned kernels")
        finish(fig, provenance)
        return fig
    ncols = max(len(layers) for _, layers, _ in rows)
    fig, axes = new_figure(ncols=ncols, nrows=len(rows), width=2.1, height=2.2)
    for r, (run, layers, channel) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(layers):
                ax.set_visible(False)
                continue
            layer = layers[c]
            dks = _side(layer["dilated_kernel_size"])
            positions = np.asarray(layer["positions"])[:, channel, :]
            weights = np.asarray(layer["weights"])[channel] if layer["weights"] is not None else np.ones(positions.shape[-1])
            sigma = np.asarray(layer["sigma"])[:, channel, :] + 0.27 if layer.get("sigma") is not None else None
            if layer.get("axes") == "col,row":
                positions = positions[::-1]
                sigma = sigma[::-1] if sigma is not None else None
            kernel = splat_kernel(positions, weights, dks, sigma)
            bound = float(np.abs(kernel).max()) or 1.0
            ax.imshow(kernel, cmap="RdBu_r", vmin=-bound, vmax=bound, extent=(-0.5, dks - 0.5, dks - 0.5, -0.5))
            centre = dks // 2
            ax.scatter(positions[1] + centre, positions[0] + centre, s=6, c="k", marker="x", linewidths=0.6)
            ax.grid(False)
            title = f"{VARIANT_LABELS.get(run['variant'], run['variant'])}, {_stage_name(layer['layer'])}, ch {channel}"
            label_axes(ax, x=("column", "grid cell"), y=("row", "grid cell"))
            ax.set_title(title, fontsize=6.5)
            ax.tick_params(labelsize=6)
    fig.suptitle("kernel weight: red > 0, blue < 0, each panel scaled to its largest |weight|; "
                 "x = learned tap positions", fontsize=7)
    finish(fig, provenance)
    return fig


def _side(value: Any) -> int:
    return int(value[0]) if isinstance(value, list | tuple) else int(value)


def _stage_name(layer: str) -> str:
    parts = layer.split(".")
    return f"stage {parts[1]}" if parts[0] == "stages" and len(parts) > 1 else parts[0]


def _one_layer_per_stage(layers: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """First DCLS layer of every stage (stages.N / layerN), in model order."""
    chosen, seen = [], set()
    for layer in layers:
        parts = layer["layer"].split(".")
        stage = ".".join(parts[:2]) if parts[0] == "stages" else parts[0]
        if stage not in seen:
            seen.add(stage)
            chosen.append(layer)
    return chosen


def run_kernel_figure(job: Job) -> None:
    """Verb `figure-dcls-kernels`: inputs kernels (one or more kernels.json)."""
    paths = [Path(p) for p in str(job.input("kernels")).split()]
    snapshots = [read_json(p) for p in paths]
    provenance = job.prov(scale=job.config.get("scale"))
    fig = kernel_figure(snapshots, provenance)
    save_figure(fig, _stem(job), provenance, dpi=int(job.config["dpi"]))


# --- accuracy vs throughput ---------------------------------------------------------------------


def throughput_figure(ablation: pd.DataFrame, provenance: Mapping[str, Any]) -> Any:
    """(a) top-1 vs inference img/s, (b) training step time per grid cell."""
    table = _ordered(ablation)
    fig, axes = new_figure(ncols=2, width=3.6, height=3.0)
    ax = axes[0][0]
    families = list(dict.fromkeys(table["family"]))
    markers = ["o", "s", "^", "D"]
    for row in table.itertuples():
        style = series_style(row.variant)
        marker = markers[families.index(row.family) % len(markers)]
        label = f"{row.family}: {VARIANT_LABELS.get(row.variant, row.variant)}"
        if row.variant != "dense":
            label += f" K={row.kernel_count}/{row.dks}"
        ax.errorbar(row.img_per_s, row.top1_mean, yerr=_std(pd.Series([row.top1_std]))[0], fmt=marker,
                    color=style["color"], label=label)
    ax.legend(fontsize=7)
    label_axes(ax, x=("inference throughput", "img/s"), y=("top-1 accuracy", "%"), title="(a) accuracy vs speed")
    ax = axes[0][1]
    x = np.arange(len(table))
    ax.bar(x, table["step_time_ms"], color=[series_style(v)["color"] for v in table["variant"]])
    ax.set_xticks(x, [f"{r.family}\n{_cell_label(r)}" for r in table.itertuples()], rotation=60, ha="right", fontsize=5)
    label_axes(ax, x="grid cell", y=("training step time", "ms"), title="(b) training cost")
    finish(fig, provenance)
    return fig


def run_throughput_figure(job: Job) -> None:
    """Verb `figure-dcls-throughput`: input ablation.csv."""
    provenance = job.prov(scale=job.config.get("scale"))
    fig = throughput_figure(read_csv(job.input("ablation")), provenance)
    save_figure(fig, _stem(job), provenance, dpi=int(job.config["dpi"]))
