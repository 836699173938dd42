"""Print where a finished run left its results, how long it took, and one headline per stage.

    python workflow/scripts/summary.py [--results results] [--seconds N]

Every number is read from the run's result files; a stage whose files are missing says so.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tsdcls.common.io import read_csv


def theory_headline(path: Path) -> str:
    checks = json.loads(path.read_text())["checks"]
    failed = [c["name"] for c in checks if not c["holds"]]
    return f"{len(checks) - len(failed)} of {len(checks)} checks hold" + (
        f" (failed: {', '.join(failed)})" if failed else "")


def collapse_headline(path: Path) -> str:
    frame = read_csv(path)
    base = frame[(frame["tau"] == 1.0) & (frame["kind"] == "window")].sort_values("bin_lo")
    parts = [f"{model}: {rows['mean_pairwise_cosine'].iloc[0]:.3f} ({rows['bin'].iloc[0]} tokens) -> "
             f"{rows['mean_pairwise_cosine'].iloc[-1]:.3f} ({rows['bin'].iloc[-1]} tokens)"
             for model, rows in base.groupby("model")]
    return "mean pairwise cosine of windows at τ = 1, " + "; ".join(parts)


def tasks_headline(path: Path) -> str:
    frame = read_csv(path)
    fix = frame["fix"].astype(object).fillna("") if "fix" in frame else ""
    skipped = (frame["status"].astype(str).str.startswith("skipped") if "status" in frame
               else pd.Series(False, index=frame.index))
    rows = frame[(frame["variant"] != "tau1-all") & (frame["tau_mode"] == "fixed") & (fix == "") & ~skipped]
    parts = []
    for (model, variant), group in rows.groupby(["model", "variant"]):
        sig = group[group["significant"].astype(bool)]
        parts.append(f"{model} {variant}: mean delta {100 * group['delta_vs_tau1'].mean():+.2f} pp over "
                     f"{len(group)} rows, significant {int((sig['delta_vs_tau1'] > 0).sum())}+/"
                     f"{int((sig['delta_vs_tau1'] < 0).sum())}-")
    note = f" ({int(skipped.sum())} rows skipped: longer than the model reads)" if skipped.any() else ""
    return "vs τ = 1, " + "; ".join(parts) + note


def fixes_headline(path: Path) -> str:
    frame = read_csv(path)
    parts = [f"{r.model} {r.method}: longest-bin cosine {r.cosine_change:+.3f}, long tasks "
             f"{r.long_mean_delta_pp:+.1f} pp ({r.long_up}+/{r.long_down}-), short {r.short_mean_delta_pp:+.1f} pp"
             for r in frame.itertuples() if r.variant != "tau1-all"]
    return "vs τ = 1, " + "; ".join(parts)


def position_bias_headline(path: Path) -> str:
    frame = read_csv(path)
    parts = [f"{r.model} τ={r.tau:g}, {r.bin} tokens: {r.bias_to_tau_ratio:.2f}" for r in frame.itertuples()]
    return "embedding change from leaving the position bias unscaled / change from τ itself (mean over windows): " + "; ".join(parts)


def dcls_headline(path: Path) -> str:
    frame = read_csv(path)
    parts = []
    for row in frame.itertuples():
        std = "" if pd.isna(row.top1_std) or not math.isfinite(row.top1_std) else f" ± {row.top1_std:.1f}"
        kernel = "" if row.variant == "dense" else f" k{row.kernel_count}/d{row.dks}"
        parts.append(f"{row.family} {row.variant}{kernel} {row.top1_mean:.1f}{std} (n={row.n_seeds})")
    return "top-1 (%), mean ± std over seeds: " + "; ".join(parts)


def claims_headline(path: Path) -> str:
    frame = read_csv(path)
    counts = frame["verdict"].value_counts()
    tested = frame[frame["verdict"] != "not tested"]
    decided = ", ".join(f"{r.id} {r.verdict}" for r in tested.itertuples() if r.verdict != "inconclusive")
    return ", ".join(f"{v} {k}" for k, v in counts.items()) + (f"; decided: {decided}" if decided else "")


# (label, result file under results/, headline from that file, what a missing file means)
HEADLINES: tuple[tuple[str, str, Callable[[Path], str], str], ...] = (
    ("claims", "claims.csv", claims_headline, "not evaluated"),
    ("theory", "theory/checks.json", theory_headline, "not run"),
    ("tempscale collapse", "tempscale/collapse_similarity.csv", collapse_headline, "not run"),
    ("tempscale tasks", "tempscale/ablation.csv", tasks_headline, "not run"),
    ("tempscale fixes", "tables/tempscale_fixes.csv", fixes_headline, "not run"),
    ("tempscale position bias", "tempscale/position_bias_effect.csv", position_bias_headline, "not run"),
    ("dcls", "dcls/ablation.csv", dcls_headline, "not run"),
)


def stage_headlines(results: Path) -> list[str]:
    """One line per stage, each read from its result file; a missing file says so."""
    lines = []
    for label, relative, headline, missing in HEADLINES:
        path = results / relative
        lines.append(f"{label}: {headline(path)}" if path.exists() else f"{label}: {missing} ({path} missing)")
    return lines


def scale_line(results: Path) -> str:
    """The scale stamped on the run's claims (or any) result, so a rehearsal reads as one."""
    from tsdcls.common.io import read_provenance

    for path in (results / "claims.csv", results / "dcls/ablation.csv", results / "tempscale/ablation.csv"):
        if path.exists():
            return f"scale: {read_provenance(path).get('scale', '?')} (from {path})"
    return "scale: unknown (no result file)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--seconds", type=float, default=None, help="wall time of the run")
    args = parser.parse_args()
    results = args.results
    print("\n== tsdcls run summary ==")
    print(scale_line(results))
    if args.seconds is not None:
        print(f"run time: {int(args.seconds // 60)} min {int(args.seconds % 60)} s")
    for label, sub in (("results", ""), ("figures", "figures"), ("tables", "tables"), ("report", "report.html"),
                       ("claims", "claims.md")):
        path = results / sub if sub else results
        if path.exists():
            print(f"{label:8s} {path}")
    for line in stage_headlines(results):
        print(f"- {line}")


if __name__ == "__main__":
    main()
