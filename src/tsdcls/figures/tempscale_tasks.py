"""TempScale task figures and the ablation table, drawn from results/tempscale/ablation.csv only.

* ``figure-tempscale-passkey-needle``: passkey and needle accuracy (ndcg@1) vs document length,
  tau = 1 against every TempScale variant on all layers (filled markers: p < alpha vs tau = 1).
* ``figure-tempscale-tau-sweep``: change of each task's main score vs tau (all layers), one
  line per length.
* ``table-tempscale-ablation``: one row per model x task x split, one column per fixed-tau
  variant, cells "score (delta)" with * where the paired test is significant. The position-bias
  ablation (``tau<x>-all-biasunscaled``, MPNet/T5: bias B left unscaled) is a column of its own
  here ("τ=x, B unscaled"); the two figures show the default patch only.

Temperature laws and post-hoc fixes have their own figure and table (``tempscale_fixes``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from tsdcls.common.config import ConfigError
from tsdcls.common.io import read_csv, save_figure
from tsdcls.common.variants import BIAS_UNSCALED_SUFFIX

BASELINE = "tau1-all"
SHORT_TASK = {
    "TsdclsPasskeyRetrieval": "Passkey",
    "TsdclsNeedleRetrieval": "Needle",
    "TsdclsWikiLongDocRetrieval": "Wiki long-doc",
    "TsdclsLeeSTS": "Lee STS",
    "TsdclsPolarityClassification": "Polarity",
    "TsdclsNewsgroupsClustering": "Newsgroups",
}


def _load(job: Any) -> Any:
    frame = read_csv(job.input("ablation"))
    needed = {"model", "task", "split", "length", "variant", "tau", "layers", "tau_mode", "score", "delta_vs_tau1", "significant"}
    missing = needed - set(frame.columns)
    if missing:
        raise ConfigError(f"{job.input('ablation')}: missing columns {sorted(missing)}")
    return frame


BIAS_SUFFIX = BIAS_UNSCALED_SUFFIX  # slug suffix of the position-bias ablation (tempscale.ablation)


def temperature_rows(frame: Any) -> Any:
    """Fixed-tau rows without a post-hoc fix (laws and fixes: figures.tempscale_fixes)."""
    fix = frame["fix"].astype(object).fillna("").astype(str) if "fix" in frame else ""
    return frame[(frame["tau_mode"] == "fixed") & (fix == "")]


def default_patch_rows(frame: Any) -> Any:
    """Fixed-tau rows of the default patch: the position-bias ablation's rows left out."""
    frame = temperature_rows(frame)
    return frame[~frame["variant"].astype(str).str.endswith(BIAS_SUFFIX)]


def _label(variant: str) -> str:
    if variant == BASELINE:
        return "τ=1"
    if variant.endswith(BIAS_SUFFIX):
        return _label(variant[: -len(BIAS_SUFFIX)]) + ", B unscaled"
    tau, _, layers = variant.partition("-")
    return f"τ={tau[3:]}" + ("" if layers == "all" else f" ({layers.replace('_', ' ')})")


def _tau_of(variant: str) -> float:
    match = re.match(r"tau([0-9.]+)-", variant)
    return float(match.group(1)) if match else math.nan


def _prov(job: Any, frame: Any) -> dict[str, Any]:
    scales = sorted(set(frame["scale"].astype(str))) if "scale" in frame else ["?"]
    return job.prov(scale=",".join(scales), source=str(job.input("ablation")))


_FIXED_COLORS = (0, 1, 2, 3, 5, 6)  # palette slots


def _series_style(variant: str, variants: list[str]) -> dict[str, Any]:
    """Baseline grey dashed, fixed taus distinct colours in order."""
    from tsdcls.figures.style import MARKERS, PALETTE, series_style

    if variant == BASELINE:
        return series_style("tau=1")
    fixed = [v for v in variants if v != BASELINE]
    index = fixed.index(variant) if variant in fixed else 0
    return {
        "color": PALETTE[_FIXED_COLORS[index % len(_FIXED_COLORS)]],
        "marker": MARKERS[1 + index % (len(MARKERS) - 1)],
        "linestyle": "-",
    }


def run_passkey_needle_figure(job: Any) -> None:
    """Accuracy vs length for passkey and needle: tau = 1 vs TempScale."""
    from tsdcls.figures.style import finish, label_axes, new_figure

    frame = default_patch_rows(_load(job))
    tasks = [t for t in ("TsdclsPasskeyRetrieval", "TsdclsNeedleRetrieval") if t in set(frame["task"])]
    if not tasks:
        raise ConfigError(f"{job.input('ablation')}: no passkey or needle rows (config keys 'tempscale.tasks.passkey/needle')")
    models = sorted(set(frame["model"]))
    fig, axes = new_figure(ncols=len(tasks), nrows=len(models))
    for r, model in enumerate(models):
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            rows = frame[(frame["model"] == model) & (frame["task"] == task) & (frame["layers"] == "all")]
            order = sorted(set(rows["variant"]), key=lambda v: -_tau_of(v))
            for variant in order:
                part = rows[rows["variant"] == variant].sort_values("length")
                style = _series_style(variant, order)
                ax.plot(part["length"], part["score"], label=_label(variant), markerfacecolor="white", **style)
                sig = part[part["significant"].astype(bool)]
                ax.plot(sig["length"], sig["score"], linestyle="none", marker=style["marker"], color=style["color"])
            ax.set_xscale("log", base=2)
            lengths = sorted(set(rows["length"].dropna().astype(int)))
            ax.set_xticks(lengths, [str(n) for n in lengths])
            ax.minorticks_off()
            ax.set_ylim(-0.03, 1.03)
            label_axes(ax, x=("document length", "tokens"), y=("accuracy (ndcg@1)", None), title=f"{SHORT_TASK[task]} · {model}")
            ax.legend(loc="lower left")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    finish(fig, _prov(job, frame))
    save_figure(fig, job.output("png").with_suffix(""), _prov(job, frame), dpi=int(job.config["dpi"]))


def run_tau_sweep_figure(job: Any) -> None:
    """Score change vs tau per task (all layers), one line per length."""
    import matplotlib.pyplot as plt

    from tsdcls.figures.style import finish, label_axes, new_figure, ordered_colours

    frame = default_patch_rows(_load(job))
    sweep = frame[frame["layers"] == "all"]
    keys = sorted(set(zip(sweep["model"], sweep["task"], strict=True)))
    if not keys:
        raise ConfigError(f"{job.input('ablation')}: no fixed-tau rows on all layers")
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows)
    for index, (model, task) in enumerate(keys):
        ax = axes[index // ncols, index % ncols]
        rows = sweep[(sweep["model"] == model) & (sweep["task"] == task)]
        colours = ordered_colours(rows["split"].nunique())
        for k, (split, part) in enumerate(rows.groupby("split", sort=False)):
            part = part.sort_values("tau")
            color = colours[k]
            name = f"{int(part['length'].iloc[0])} tokens" if not math.isnan(part["length"].iloc[0]) else split
            ax.plot(part["tau"], part["delta_vs_tau1"], color=color, marker="o", markerfacecolor="white", label=name)
            sig = part[part["significant"].astype(bool)]
            ax.plot(sig["tau"], sig["delta_vs_tau1"], linestyle="none", marker="o", color=color)
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        ax.ticklabel_format(axis="y", useOffset=False)
        _min_span(ax, 0.02)
        metric = rows["metric"].iloc[0] if "metric" in rows else "score"
        label_axes(ax, x=("attention temperature τ", None), y=(f"Δ {metric} vs τ=1", None), title=f"{SHORT_TASK.get(task, task)} · {model}")
        ax.invert_xaxis()
        if rows["split"].nunique() > 1:
            ax.legend(loc="best")
    for index in range(len(keys), nrows * ncols):
        axes[index // ncols, index % ncols].set_visible(False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.text(0.01, 0.005, "filled: p < α vs τ=1 (paired) · temperature laws and fixes: tempscale_fixes figure", fontsize=6, color="0.4")
    finish(fig, _prov(job, frame))
    save_figure(fig, job.output("png").with_suffix(""), _prov(job, frame), dpi=int(job.config["dpi"]))
    plt.close(fig)


def _min_span(ax: Any, span: float) -> None:
    """Keep at least ``span`` of y range around the data, so exact zeros do not read as noise."""
    low, high = ax.get_ylim()
    if high - low < span:
        middle = (high + low) / 2
        ax.set_ylim(middle - span / 2, middle + span / 2)


def ablation_table(frame: Any) -> Any:
    """Wide table: model x task x split rows, variant columns, 'score (Δ)' cells, * = significant."""
    import pandas as pd

    frame = temperature_rows(frame)
    order = list(dict.fromkeys(frame.sort_values(["layers", "tau", "variant"], ascending=[True, False, True],
                                                 kind="stable")["variant"]))
    rows = []
    for (model, task, split), part in frame.groupby(["model", "task", "split"], sort=False):
        row = {"model": model, "task": SHORT_TASK.get(task, task), "split": split, "metric": part["metric"].iloc[0]}
        for record in part.itertuples(index=False):
            status = str(getattr(record, "status", "scored"))
            if status.startswith("skipped"):  # "skipped: exceeds model positions (512 tokens)"
                row[_label(record.variant)] = status
                continue
            cell = f"{record.score:.3f}"
            if record.variant != BASELINE:
                cell += f" ({record.delta_vs_tau1:+.3f}{'*' if record.significant else ''})"
            row[_label(record.variant)] = cell
        rows.append(row)
    table = pd.DataFrame(rows)
    return table[["model", "task", "split", "metric", *[_label(v) for v in order if _label(v) in table.columns]]]


def run_ablation_table(job: Any) -> None:
    """results/tables/tempscale_ablation.md and .tex from ablation.csv."""
    from tsdcls.figures.tables import write_tables

    frame = _load(job)
    frame = frame.sort_values(["model", "task", "length", "split"])
    alpha = float(frame["alpha"].iloc[0]) if "alpha" in frame else 0.05
    tests = ", ".join(sorted(set(frame.loc[frame["variant"] != BASELINE, "test"].astype(str))))
    notes = [
        f"Cells: score (change vs τ=1); * = paired test p < {alpha:g} ({tests}) on the same queries/pairs/experiments.",
        f"Scale: {', '.join(sorted(set(frame['scale'].astype(str))))}. Splits test_<n>: documents of n tokens.",
    ]
    write_tables(
        ablation_table(frame),
        job.output("md").with_suffix(""),
        _prov(job, frame),
        caption="TempScale ablation on mteb tasks (main score per task)",
        label="tab:tempscale-ablation",
        notes=notes,
    )
