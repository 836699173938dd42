"""Length-collapse fixes side by side: TempScale, the temperature laws and the post-hoc fixes.

Verb ``figure-tempscale-fixes`` reads ``results/tempscale/ablation.csv`` (each variant's paired
change vs tau = 1 on every task, with its CI and test) and ``results/tempscale/fixes_collapse.csv``
(each variant's mean pairwise cosine per length bin) and writes, for every model:

* a figure: (a) collapse (mean pairwise cosine) per length bin, one line per method; (b) the
  change of every task's main score vs the untouched model (pp), long-text tasks left of the
  line, short-text tasks right of it, * = paired test p < alpha;
* a summary table (one row per method: collapse of the longest bin and its change with CI,
  the longest-minus-shortest gap, and the long- and short-task changes: mean and how many are
  significantly up / down) and a per-task table (cells "Δ [CI]*"), as markdown, LaTeX and CSV.

A reader sees which fixes remove collapse, which improve retrieval, and whether the two go
together. Group-level CIs of the headline comparisons are in the claims ledger.
"""

from __future__ import annotations

import math
import re
from typing import Any

from tsdcls.common.config import ConfigError
from tsdcls.common.io import read_csv, save_figure, write_csv

BASELINE = "tau1-all"
LONG_TASK = re.compile(r"Passkey|Needle|LongDoc|LEMB", re.IGNORECASE)
FIX_LABELS = {"mean_center": "mean-centering", "whiten": "whitening", "length_center": "length-binned centering"}
LAW_LABELS = {"power-measured": "τ(n) = (n_ref/n)^α, α measured", "log": "τ(n) = log n_ref / log n"}
# colour by method, line style by kind (fix alone dotted, fix + TempScale solid, laws dash-dot)
METHOD_COLOURS = {"tempscale": 1, "mean_center": 0, "whiten": 2, "length_center": 3,
                  "power0.5": 4, "power-measured": 5, "log": 6}  # fmt: skip


def method_label(row: Any, headline: float) -> str:
    """Readable name of one variant row (columns variant, tau_mode, tau_law, fix)."""
    if row["variant"] == BASELINE:
        return "τ=1 (untouched)"
    if row["tau_mode"] == "law":
        law = str(row["tau_law"])
        return LAW_LABELS.get(law, f"τ(n) = (n_ref/n)^{law[len('power'):]}")
    fix = str(row["fix"] or "")
    if fix:
        return FIX_LABELS.get(fix, fix) + (f" + τ={headline:g}" if float(row["tau"]) != 1.0 else "")
    return f"TempScale τ={float(row['tau']):g}"


def kind_of(row: Any) -> str:
    if row["variant"] == BASELINE:
        return "untouched"
    if row["tau_mode"] == "law":
        return "temperature law"
    if row["fix"]:
        return "fix + TempScale" if float(row["tau"]) != 1.0 else "post-hoc fix"
    return "TempScale"


def series_style(row: Any) -> dict[str, Any]:
    from tsdcls.figures.style import BASELINE_COLOR, MARKERS, PALETTE

    if row["variant"] == BASELINE:
        return {"color": BASELINE_COLOR, "linestyle": "--", "marker": "o"}
    key = str(row["tau_law"]) if row["tau_mode"] == "law" else (str(row["fix"]) or "tempscale")
    slot = METHOD_COLOURS.get(key, 7)
    linestyle = "-." if row["tau_mode"] == "law" else (":" if row["fix"] and float(row["tau"]) == 1.0 else "-")
    return {"color": PALETTE[slot], "linestyle": linestyle, "marker": MARKERS[slot % len(MARKERS)]}


def _clean(frame: Any) -> Any:
    for column in ("tau_law", "fix"):
        frame[column] = frame[column].astype(object).fillna("").astype(str) if column in frame else ""
    return frame


def shown_rows(ablation: Any, collapse: Any) -> Any:
    """The ablation rows of the variants the collapse comparison covers (its variant list)."""
    shown = list(dict.fromkeys(collapse["variant"]))
    scored = ~ablation["status"].astype(str).str.startswith("skipped") if "status" in ablation else True
    rows = ablation[ablation["variant"].isin(shown) & scored].copy()
    rows["order"] = rows["variant"].map(shown.index)
    rows["group"] = rows["task"].map(lambda t: "long" if LONG_TASK.search(str(t)) else "short")
    return rows.sort_values(["model", "order", "group", "task", "length", "split", "subset"])


def _pp(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:+.1f}"


def task_cell(record: Any) -> str:
    if record.variant == BASELINE:
        return f"{record.score:.3f}"
    star = "*" if bool(record.significant) else ""
    return f"{_pp(record.delta_vs_tau1)} [{_pp(record.delta_ci_low)}, {_pp(record.delta_ci_high)}]{star}"


def _task_column(record: Any) -> str:
    from tsdcls.figures.tempscale_tasks import SHORT_TASK

    name = SHORT_TASK.get(record.task, record.task)
    split = "" if record.split == "test" else f" {record.split.removeprefix('test_')}"
    subset = "" if record.subset in ("default", "", None) or (isinstance(record.subset, float)) else f" {record.subset}"
    return f"{record.group}: {name}{split}{subset}"


def per_task_table(rows: Any, headline: float) -> Any:
    """Rows: model x task split (long first); columns: methods; cells Δ pp [CI]* (baseline: score)."""
    import pandas as pd

    rows = rows.assign(column=[_task_column(r) for r in rows.itertuples()],
                       method=[method_label(r, headline) for _, r in rows.iterrows()])
    methods = list(dict.fromkeys(rows["method"]))
    table = []
    for (model, column), part in rows.groupby(["model", "column"], sort=False):
        record = {"model": model, "task": column}
        record.update({m: task_cell(r) for m, r in zip(part["method"], part.itertuples(), strict=True)})
        table.append(record)
    frame = pd.DataFrame(table)  # rows in shown_rows' order: long tasks first, lengths ascending
    return frame[["model", "task", *[m for m in methods if m in frame.columns]]]


def _collapse_summary(collapse: Any, model: str, variant: str) -> dict[str, float]:
    part = collapse[(collapse["model"] == model) & (collapse["variant"] == variant) & (collapse["kind"] == "window")]
    part = part.sort_values("bin_lo")
    if part.empty:
        return {}
    last, first = part.iloc[-1], part.iloc[0]
    return {
        "longest_bin": str(last["bin"]),
        "cosine_longest": float(last["mean_pairwise_cosine"]),
        "cosine_change": float(last.get("cosine_change_vs_tau1", math.nan)),
        "cosine_change_ci_low": float(last.get("cosine_change_vs_tau1_ci_low", math.nan)),
        "cosine_change_ci_high": float(last.get("cosine_change_vs_tau1_ci_high", math.nan)),
        "length_gap": float(last["mean_pairwise_cosine"] - first["mean_pairwise_cosine"]),
    }


def _task_summary(part: Any, group: str) -> dict[str, Any]:
    rows = part[part["group"] == group]
    signif = rows["significant"].astype(bool)
    return {
        f"{group}_mean_delta_pp": 100 * float(rows["delta_vs_tau1"].mean()) if len(rows) else math.nan,
        f"{group}_up": int((signif & (rows["delta_vs_tau1"] > 0)).sum()),
        f"{group}_down": int((signif & (rows["delta_vs_tau1"] < 0)).sum()),
        f"{group}_splits": int(len(rows)),
    }


def summary_frame(rows: Any, collapse: Any, headline: float) -> Any:
    """One row per model x method: collapse and task effects (machine-readable, CSV)."""
    import pandas as pd

    out = []
    for (model, variant), part in rows.groupby(["model", "variant"], sort=False):
        first = part.iloc[0]
        out.append({"model": model, "variant": variant, "method": method_label(first, headline), "kind": kind_of(first),
                    **_collapse_summary(collapse, model, variant), **_task_summary(part, "long"), **_task_summary(part, "short")})
    return pd.DataFrame(out)


def summary_table(summary: Any) -> Any:
    """The summary as display strings."""
    import pandas as pd

    def change(r: Any) -> str:
        if r.variant == BASELINE or not math.isfinite(r.cosine_change):
            return "—"
        return f"{r.cosine_change:+.3f} [{r.cosine_change_ci_low:+.3f}, {r.cosine_change_ci_high:+.3f}]"

    def tasks(r: Any, group: str) -> str:
        if r.variant == BASELINE:
            return "—"
        return (f"{getattr(r, f'{group}_mean_delta_pp'):+.1f} ({getattr(r, f'{group}_up')}↑ "
                f"{getattr(r, f'{group}_down')}↓ of {getattr(r, f'{group}_splits')})")

    return pd.DataFrame([{
        "model": r.model, "method": r.method, "kind": r.kind,
        f"cosine, {r.longest_bin} tokens": f"{r.cosine_longest:.3f}", "Δ vs τ=1 [95% CI]": change(r),
        "longest − shortest bin": f"{r.length_gap:+.3f}",
        "long tasks Δ pp (sig.)": tasks(r, "long"), "short tasks Δ pp (sig.)": tasks(r, "short"),
    } for r in summary.itertuples()])


def _collapse_panel(ax: Any, collapse: Any, model: str, headline: float) -> None:
    from tsdcls.figures.style import label_axes

    part = collapse[(collapse["model"] == model) & (collapse["kind"] == "window")]
    for variant in dict.fromkeys(part["variant"]):
        rows = part[part["variant"] == variant].sort_values("bin_lo")
        first = rows.iloc[0]
        ax.plot(rows["mean_tokens"], rows["mean_pairwise_cosine"], label=method_label(first, headline),
                markerfacecolor="white", **series_style(first))
    ax.set_xscale("log", base=2)
    label_axes(ax, x=("text length (mean of bin)", "tokens"), y=("mean pairwise cosine", None),
               title=f"(a) collapse per length · {model}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=6.5, ncol=2)


def _task_panel(fig: Any, ax: Any, rows: Any, model: str, headline: float) -> None:
    import numpy as np

    from tsdcls.figures.style import label_axes

    part = rows[(rows["model"] == model) & (rows["variant"] != BASELINE)].copy()
    part["column"] = [_task_column(r) for r in part.itertuples()]
    part = part.sort_values(["group", "task", "length", "split", "subset"])
    columns = list(dict.fromkeys(part["column"]))
    variants = list(dict.fromkeys(part.sort_values("order")["variant"]))
    grid = np.full((len(variants), len(columns)), np.nan)
    for r in part.itertuples():
        grid[variants.index(r.variant), columns.index(r.column)] = 100 * r.delta_vs_tau1
        if bool(r.significant):
            ax.text(columns.index(r.column), variants.index(r.variant), "*", ha="center", va="center", fontsize=8)
    bound = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
    image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    labels = [method_label(part[part["variant"] == v].iloc[0], headline) for v in variants]
    ax.set_yticks(range(len(variants)), labels, fontsize=7)
    ax.set_xticks(range(len(columns)), [c.split(": ", 1)[1] for c in columns], rotation=60, ha="right", fontsize=7)
    n_long = sum(c.startswith("long") for c in columns)
    if 0 < n_long < len(columns):
        ax.axvline(n_long - 0.5, color="black", linewidth=1.2)
    ax.grid(False)
    label_axes(ax, x=("task split (long-text | short-text)", None), y=("method", None),
               title="(b) Δ main score vs τ=1 (pp), * p < α paired")
    fig.colorbar(image, ax=ax, label="Δ vs τ=1 (pp)", shrink=0.8)


def fixes_figure(rows: Any, collapse: Any, headline: float) -> Any:
    from tsdcls.figures.style import new_figure

    models = list(dict.fromkeys(rows["model"]))
    fig, axes = new_figure(ncols=2, nrows=len(models), width=5.2, height=5.0)
    for index, model in enumerate(models):
        _collapse_panel(axes[index, 0], collapse, model, headline)
        _task_panel(fig, axes[index, 1], rows, model, headline)
    return fig


def run_fixes_figure(job: Any) -> None:
    """Verb ``figure-tempscale-fixes``: the side-by-side figure and tables."""
    import matplotlib.pyplot as plt

    from tsdcls.figures.style import finish
    from tsdcls.figures.tables import write_tables

    ablation, collapse = _clean(read_csv(job.input("ablation"))), _clean(read_csv(job.input("collapse")))
    if BASELINE not in set(collapse["variant"]):
        raise ConfigError(f"{job.input('collapse')}: no tau = 1 rows")
    headline = float(job.config["headline_tau"])
    rows = shown_rows(ablation, collapse)
    scale = ",".join(sorted(set(ablation["scale"].astype(str)))) if "scale" in ablation else "?"
    prov = job.prov(scale=scale, sources=[str(job.input("ablation")), str(job.input("collapse"))])
    summary = summary_frame(rows, collapse, headline)
    write_csv(job.output("summary_csv"), summary, prov)
    alpha = float(ablation["alpha"].iloc[0]) if "alpha" in ablation else 0.05
    notes = [f"Scale: {scale}. Collapse: window texts of the collapse analysis; Δ with a paired bootstrap CI over texts.",
             f"Tasks: paired Δ vs τ=1 in pp; (k↑ m↓ of N): task splits with p < {alpha:g} up / down."]
    write_tables(summary_table(summary), job.output("summary_md").with_suffix(""), prov, notes=notes,
                 caption="Length-collapse fixes side by side", label="tab:tempscale-fixes")
    write_tables(per_task_table(rows, headline), job.output("tasks_md").with_suffix(""), prov,
                 notes=[f"Cells: Δ main score vs τ=1 (pp) [{100 * (1 - alpha):g}% paired bootstrap CI], * = p < {alpha:g}; "
                        "τ=1 column: its score."], caption="Every task, every fix", label="tab:tempscale-fixes-tasks")
    fig = fixes_figure(rows, collapse, headline)
    finish(fig, prov)
    save_figure(fig, job.output("png").with_suffix(""), prov, dpi=int(job.config["dpi"]))
    plt.close(fig)
