"""Aggregate the ablation grid: one row per run, then mean ± std over seeds per grid cell.

Inputs are the per-run ``metrics.json`` files of ``dcls-evaluate``; outputs are
``metrics.csv`` (one row per run), ``ablation.csv`` (one row per family x variant x kernel
count x dilated kernel size), the per-class and robustness tables in long form, and the
Markdown/LaTeX ablation table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tsdcls.common.config import ConfigError
from tsdcls.common.io import read_json, write_csv, write_table
from tsdcls.common.job import Job

GRID_KEYS = ["family", "variant", "kernel_count", "dks"]
VARIANT_ORDER = {"dense": 0, "dilated": 1, "dcls_v0": 2, "dcls_gauss": 3, "dcls_frozen": 4}
VARIANT_LABELS = {"dense": "dense (baseline)", "dilated": "dilated", "dcls_v0": "DCLS-v0 (bilinear)",
                  "dcls_gauss": "DCLS-gauss", "dcls_frozen": "DCLS frozen positions"}


def input_paths(value: Path | str) -> list[Path]:
    """A named rule input that holds a list arrives as one space-joined string."""
    return [Path(part) for part in str(value).split()]


def run_rows(metric_files: Iterable[Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """metrics (one row per run), per-class (long), robustness (long) frames."""
    runs, per_class, robust = [], [], []
    for path in metric_files:
        metrics = read_json(path)
        key = dict(metrics["run"])
        robust_top1 = [v["top1"] for v in metrics["robustness"].values()]
        runs.append({
            **key, "params": metrics["params"], "trainable_params": metrics["trainable_params"],
            "dcls_layers": metrics["dcls_layers"], "taps": metrics.get("taps_per_kernel"),
            "top1": metrics["top1"], "top5": metrics["top5"],
            "val_loss": metrics["val_loss"], "robust_top1": float(np.mean(robust_top1)) if robust_top1 else np.nan,
            "img_per_s": metrics["img_per_s"], "step_time_ms": metrics["step_time_ms"],
            "gmacs": metrics["gmacs"],
            "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs"],
            "train_images": metrics["train_images"], "val_images": metrics["val_images"],
            "final_train_loss": metrics["final_train_loss"], "weights": metrics["weights"],
            "steps": metrics.get("steps"), **_shift_columns(metrics.get("position_shift")),
        })
        for name, value in zip(metrics["class_names"], metrics["per_class_top1"], strict=True):
            per_class.append({**key, "class_name": name, "top1": value})
        for name, value in metrics["robustness"].items():
            corruption, _, severity = name.partition("@")
            robust.append({**key, "set": name, "corruption": corruption,
                           "severity": int(severity) if severity else np.nan, "top1": value["top1"],
                           "top5": value["top5"]})
    if not runs:
        raise ConfigError("config key 'dcls.grid' selects no runs: nothing to aggregate")
    frame = _sorted(pd.DataFrame(runs), [*GRID_KEYS, "seed"])
    return frame, pd.DataFrame(per_class), pd.DataFrame(robust)


def _shift_columns(shifts: dict[str, float] | None) -> dict[str, float]:
    """Mean |tap position - init| (pixels): 'position_shift' over all layers, one column per stage."""
    if not shifts:
        return {"position_shift": np.nan}
    return {"position_shift": shifts.get("all", np.nan),
            **{f"position_shift_{stage}": value for stage, value in shifts.items() if stage != "all"}}


def paired_vs_dense(runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Top-1 of every cell minus its family's dense run of the same seed (same data, same order):
    mean, sample sd and t-interval of the paired differences (NaN below two pairs)."""
    from tsdcls.common.stats import paired_t_interval

    dense = runs[runs["variant"] == "dense"][["family", "seed", "top1"]]
    pairs = runs.merge(dense, on=["family", "seed"], suffixes=("", "_dense"))
    rows = []
    for key, group in pairs.groupby(GRID_KEYS, sort=False):
        diffs = (group["top1"] - group["top1_dense"]).to_numpy(float)
        row = dict(zip(GRID_KEYS, key, strict=True), n_pairs=len(diffs), delta_vs_dense=float(diffs.mean()),
                   delta_sd=float(diffs.std(ddof=1)) if len(diffs) > 1 else np.nan,
                   delta_ci_low=np.nan, delta_ci_high=np.nan)
        if len(diffs) > 1 and key[1] != "dense":
            interval = paired_t_interval(group["top1"], group["top1_dense"], level)
            row.update(delta_ci_low=interval.low, delta_ci_high=interval.high)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*GRID_KEYS, "n_pairs", "delta_vs_dense", "delta_sd", "delta_ci_low",
                                       "delta_ci_high"])


def _sorted(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    order = frame["variant"].map(VARIANT_ORDER).fillna(99)
    return (frame.assign(_order=order).sort_values(["family", "_order", *keys[2:]])
            .drop(columns="_order").reset_index(drop=True))


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std (ddof=1; NaN for one seed) over seeds of every grid cell."""
    grouped = runs.groupby(GRID_KEYS, sort=False)
    table = grouped.agg(
        params=("params", "first"), params_min=("params", "min"), params_max=("params", "max"),
        dcls_layers=("dcls_layers", "first"), taps=("taps", "first"),
        top1_mean=("top1", "mean"), top1_std=("top1", "std"),
        top5_mean=("top5", "mean"), top5_std=("top5", "std"),
        robust_top1_mean=("robust_top1", "mean"), robust_top1_std=("robust_top1", "std"),
        n_seeds=("seed", "nunique"), gmacs=("gmacs", "first"), img_per_s=("img_per_s", "median"),
        step_time_ms=("step_time_ms", "median"), train_seconds=("train_seconds", "median"),
        steps=("steps", "first"), position_shift=("position_shift", "mean"),
    ).reset_index()
    table = table.merge(paired_vs_dense(runs), on=GRID_KEYS, how="left")
    dense = table[table["variant"] == "dense"].set_index("family")["params"]
    table["params_vs_dense"] = [
        (row.params - dense[row.family]) if row.family in dense.index else np.nan for row in table.itertuples()
    ]
    return _sorted(table, GRID_KEYS)


def per_class_summary(per_class: pd.DataFrame) -> pd.DataFrame:
    if per_class.empty:
        return per_class
    return (per_class.groupby([*GRID_KEYS, "class_name"], sort=False)["top1"]
            .agg(top1_mean="mean", top1_std="std").reset_index())


def _pm(mean: float, std: float) -> tuple[str, str]:
    if np.isnan(mean):
        return "–", "–"
    return f"{mean:.2f}", ("–" if np.isnan(std) else f"{std:.2f}")


def table_rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for row in table.itertuples():
        top1, top1_sd = _pm(row.top1_mean, row.top1_std)
        top5, top5_sd = _pm(row.top5_mean, row.top5_std)
        rob, rob_sd = _pm(row.robust_top1_mean, row.robust_top1_std)
        taps = row.kernel_count if row.taps is None or pd.isna(row.taps) else int(row.taps)
        grid = {"dilated": "fixed grid", "dcls_frozen": "frozen random"}.get(row.variant, "learned")
        kernel = "native" if row.variant == "dense" else f"{taps} in {row.dks}x{row.dks} ({grid})"
        rows.append([row.family, VARIANT_LABELS.get(row.variant, row.variant), kernel, f"{row.params:,}",
                     f"{top1} ± {top1_sd}", _paired_cell(row), f"{top5} ± {top5_sd}", f"{rob} ± {rob_sd}",
                     _shift_cell(row.position_shift), f"{row.img_per_s:,.0f}", f"{row.step_time_ms:.1f}",
                     str(row.n_seeds)])
    return rows


def _paired_cell(row: object) -> str:
    delta, low, high = (getattr(row, k, np.nan) for k in ("delta_vs_dense", "delta_ci_low", "delta_ci_high"))
    if getattr(row, "variant", "") == "dense" or pd.isna(delta):
        return "–"
    return f"{delta:+.2f}" + ("" if pd.isna(low) else f" [{low:+.2f}, {high:+.2f}]")


def _shift_cell(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.2f}"


HEADER = ["Family", "Variant", "Taps", "Params", "Top-1 (%)", "Δ vs dense, paired (95% CI)", "Top-5 (%)",
          "Robust top-1 (%)", "Taps moved (px)", "img/s", "step (ms)", "seeds"]


def markdown_table(table: pd.DataFrame, scale: str) -> str:
    lines = [f"DCLS ablation (scale: {scale}; mean ± std over seeds; Δ: paired by seed, t-interval; "
             "taps moved: mean |position - init|)", "",
             "| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(table)]
    return "\n".join(lines) + "\n"


def latex_table(table: pd.DataFrame, scale: str) -> str:
    def esc(text: str) -> str:
        return (text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%")
                .replace("±", "$\\pm$").replace("Δ", "$\\Delta$").replace("–", "--").replace("&", "\\&"))

    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             "\\begin{tabular}{lll" + "r" * (len(HEADER) - 3) + "}", "\\toprule",
             " & ".join(esc(h) for h in HEADER) + " \\\\", "\\midrule"]
    lines += [" & ".join(esc(cell) for cell in row) + " \\\\" for row in table_rows(table)]
    lines += ["\\bottomrule", "\\end{tabular}",
              f"\\caption{{DCLS ablation (scale: {esc(scale)}); mean $\\pm$ std over seeds.}}",
              "\\label{tab:dcls-ablation}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def run_ablation(job: Job) -> None:
    """Verb `dcls-ablation`: metrics.csv, ablation.csv, per_class.csv, robustness.csv, tables."""
    files = input_paths(job.input("metrics"))
    runs, per_class, robust = run_rows(files)
    table = aggregate(runs)
    scale = str(job.config.get("scale", "?"))
    provenance = job.prov(scale=scale, runs=len(runs))
    write_csv(job.output("metrics"), runs, provenance)
    write_csv(job.output("ablation"), table, provenance)
    write_csv(job.output("per_class"), per_class_summary(per_class), provenance)
    write_csv(job.output("robustness"), robust, provenance)
    write_table(job.output("table_md"), markdown_table(table, scale), provenance)
    write_table(job.output("table_tex"), latex_table(table, scale), provenance)
