"""The claims ledger: every claim of data/claims.yaml, its estimate, 95% CI and verdict.

Reads only result files (the figures stage never recomputes a model). Each claim names a
``measure`` (a function below) that returns the estimate and interval of a quantity signed so that
positive is what the claim predicts; the claim's rule, fixed in data/claims.yaml before any run,
turns them into supported / contradicted / inconclusive. A claim whose inputs this run did not
produce is "not tested", with the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tsdcls.common.config import ConfigError
from tsdcls.common.io import read_csv, read_json, save_figure, write_csv, write_table
from tsdcls.common.stats import interval_mde, paired_mde

DRAWS = 2000
LEVEL = 0.95
COLUMNS = ["id", "paper", "section", "statement", "quantity", "unit", "estimate", "ci_low", "ci_high",
           "mde", "n", "rule", "verdict", "note", "scale"]
POWER = 0.8  # the minimal detectable effect (mde) is the true effect found with this power
LONG_TASK = re.compile(r"Passkey|Needle|LongDoc|LEMB", re.IGNORECASE)


@dataclass
class Estimate:
    value: float
    low: float
    high: float
    n: int
    unit: str
    note: str = ""
    mde: float = math.nan  # minimal detectable effect of the design (two-sided, LEVEL, POWER)


class NotTested(Exception):
    """The run holds no data for this claim (stage off, variant not in the grid, ...)."""


def verdict(rule: Mapping[str, Any], est: Estimate) -> str:
    """Apply a pre-registered rule to an estimate (see data/claims.yaml)."""
    kind = rule["kind"]
    if kind == "check":
        return "supported" if est.value > 0 else "contradicted"
    if not (math.isfinite(est.low) and math.isfinite(est.high)):
        return "inconclusive"
    if kind == "superiority":
        if est.low > 0 and est.value >= float(rule["min_effect"]):
            return "supported"
        return "contradicted" if est.high < 0 else "inconclusive"
    if kind == "non_inferiority":
        margin = float(rule["margin"])
        if est.low > -margin:
            return "supported"
        return "contradicted" if est.high < -margin else "inconclusive"
    raise ConfigError(f"data/claims.yaml: unknown rule kind {kind!r}")


def rule_text(rule: Mapping[str, Any]) -> str:
    if rule["kind"] == "superiority":
        return f"CI > 0 and estimate >= {rule['min_effect']:g}"
    if rule["kind"] == "non_inferiority":
        return f"CI > -{rule['margin']:g}"
    return "check holds"


def _percentile_ci(draws: np.ndarray) -> tuple[float, float]:
    alpha = (1 - LEVEL) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def _t_interval(diffs: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    if len(diffs) < 2:
        return -math.inf, math.inf
    half = stats.t.ppf(0.5 + LEVEL / 2, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
    return float(diffs.mean() - half), float(diffs.mean() + half)


# --- measures ----------------------------------------------------------------------------------


def theory_check(data: Mapping[str, Any], args: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    checks = {c["name"]: c for c in _need(data, "theory_checks")["checks"]}
    if args["check"] not in checks:
        raise NotTested(f"theory check {args['check']!r} not in results/theory/checks.json")
    check = checks[args["check"]]
    margin = float(check.get("worst_margin", math.nan))
    return Estimate(1.0 if check["holds"] else -1.0, math.nan, math.nan, 1, "holds", f"worst margin {margin:.3g}")


def _text_bootstrap(frame: pd.DataFrame, stat: Callable[[pd.DataFrame], float], rng: np.random.Generator) -> Estimate:
    texts = frame["text"].unique()
    groups = {t: g for t, g in frame.groupby("text")}
    value = stat(frame)
    draws = np.array([stat(pd.concat([groups[t] for t in rng.choice(texts, len(texts))])) for _ in range(DRAWS // 4)])
    low, high = _percentile_ci(draws)
    return Estimate(value, low, high, len(texts), "")


def sigma_length_slope(data: Mapping[str, Any], args: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    """Minus the log-log slope vs n of a gain column (sigma_a, sigma_a_nosink, typical_gain) at
    tau = 1, mean over layers, bootstrap over texts."""
    gains = _need(data, "real_gain")
    column = str(args.get("quantity", "sigma_a"))
    if column not in gains.columns:
        raise NotTested(f"real_attention_gain.csv has no column {column!r}")
    base = gains[gains["tau"] == 1.0]

    def minus_mean_slope(frame: pd.DataFrame) -> float:
        slopes = [np.polyfit(np.log(g["n"]), np.log(g[column]), 1)[0] for _, g in frame.groupby("layer")]
        return -float(np.mean(slopes))

    est = _text_bootstrap(base, minus_mean_slope, rng)
    est.unit, est.note = "negated slope", column
    return est


def sigma_tau_gain(data: Mapping[str, Any], args: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    gains = _need(data, "real_gain")
    tau = float(gains["tau"].min())
    if tau >= 1.0:
        raise NotTested("theory.real_attention.taus holds no τ < 1")
    keys = ["text", "n", "layer"]
    pairs = gains[gains["tau"] == tau].merge(gains[gains["tau"] == 1.0], on=keys, suffixes=("", "_base"))

    def mean_log_ratio(frame: pd.DataFrame) -> float:
        return float(np.mean(np.log(frame["sigma_a"] / frame["sigma_a_base"])))

    est = _text_bootstrap(pairs, mean_log_ratio, rng)
    est.unit, est.note = "log ratio", f"τ = {tau:g}"
    return est


def _collapse_bins(data: Mapping[str, Any], tau: float) -> pd.DataFrame:
    frame = _need(data, "collapse")
    rows = frame[(frame["kind"] == "window") & np.isclose(frame["tau"], tau)].sort_values("bin_lo")
    if rows.empty:
        raise NotTested(f"no window rows at τ = {tau:g} in collapse_similarity.csv")
    return rows


def _interval_difference(a: pd.Series, b: pd.Series) -> tuple[float, float, str]:
    """CI of a - b for two independent groups of texts from each side's bootstrap CI
    (conservative: the sides' intervals combined)."""
    low, high = "mean_pairwise_cosine_ci_low", "mean_pairwise_cosine_ci_high"
    if low in a.index and pd.notna(a[low]) and pd.notna(b[high]):
        return float(a[low] - b[high]), float(a[high] - b[low]), "CI from both bins' bootstrap CIs (conservative)"
    return -math.inf, math.inf, "no bootstrap CI in the collapse table"


def collapse_length_trend(data: Mapping[str, Any], args: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    """Longest minus shortest bin at tau = 1 (windows); ``pooling`` reads the attention-free
    controls instead of the encoder."""
    pooling = args.get("pooling")
    if pooling:
        frame = _need(data, "collapse_controls")
        rows = frame[(frame["kind"] == "window") & (frame["pooling"] == pooling)].sort_values("bin_lo")
        if rows.empty:
            raise NotTested(f"no {pooling} rows in collapse_controls.csv")
    else:
        rows = _collapse_bins(data, 1.0)
    first_model = rows["model"].iloc[0]
    rows = rows[rows["model"] == first_model]
    last, first = rows.iloc[-1], rows.iloc[0]
    if "length_change_ci_low" in last.index and pd.notna(last["length_change_ci_low"]):
        low, high = float(last["length_change_ci_low"]), float(last["length_change_ci_high"])
        note, n = "paired bootstrap over the documents (nested windows: one per bin of each document)", int(last["n_texts"])
    else:
        (low, high, note), n = _interval_difference(last, first), int(last["n_texts"] + first["n_texts"])
    return Estimate(float(last["mean_pairwise_cosine"] - first["mean_pairwise_cosine"]), low, high,
                    n, "cosine",
                    f"{first_model} {pooling or 'encoder'}, {first['bin']} vs {last['bin']} tokens; {note}")


def collapse_tau_reduction(data: Mapping[str, Any], args: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    """Minus the paired change of the longest bin's cosine vs tau = 1 (same texts)."""
    tau = _headline_tau(data)
    row = _collapse_bins(data, tau).iloc[-1]
    if "cosine_change_vs_tau1" not in row.index:
        raise NotTested("the collapse table has no paired change vs τ = 1")
    return Estimate(-float(row["cosine_change_vs_tau1"]), -float(row["cosine_change_vs_tau1_ci_high"]),
                    -float(row["cosine_change_vs_tau1_ci_low"]), int(row["n_texts"]), "cosine",
                    f"{row['model']} τ {tau:g}, bin {row['bin']}, paired over texts")


def _headline_tau(data: Mapping[str, Any]) -> float:
    match = re.fullmatch(r"tau([0-9.]+)-all", str(data["headline"]))
    if not match:
        raise ConfigError(f"data/claims.yaml: headline_tempscale_variant {data['headline']!r} is not 'tau<x>-all'")
    return float(match.group(1))


def _task_sampler(items: pd.DataFrame, main_metric: str, item_metric: str) -> Callable[[np.ndarray | None], float]:
    """Delta (pp) of one task split from paired items; None = the observed delta."""
    base, variant = items["value_base"].to_numpy(float), items["value"].to_numpy(float)
    if item_metric == "cosine_similarity":  # STS: Spearman of the cosines with the gold scores
        from scipy.stats import spearmanr

        gold = items["gold"].to_numpy(float)
        return lambda idx: 100 * float(
            spearmanr(variant if idx is None else variant[idx], gold if idx is None else gold[idx])[0]
            - spearmanr(base if idx is None else base[idx], gold if idx is None else gold[idx])[0])
    diff = variant - base
    return lambda idx: 100 * float(diff.mean() if idx is None else diff[idx].mean())


def tempscale_task_delta(data: Mapping[str, Any], args: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    """Headline variant minus ``args.baseline`` (default tau = 1) on the long- or short-text task
    splits, paired over items, mean over splits (a joint bootstrap over every split's items)."""
    ablation, items = _need(data, "ablation"), _need(data, "per_item")
    baseline = str(args.get("baseline", "tau1-all"))
    rows = ablation[ablation["variant"] == data["headline"]]
    for variant in (data["headline"], baseline):
        if variant not in set(items["variant"]):
            raise NotTested(f"variant {variant} is not in this run's tempscale.ablation")
    want_long = args["task_group"] == "long"
    rows = rows[rows["task"].map(lambda t: bool(LONG_TASK.search(str(t)))) == want_long]
    if rows.empty:
        raise NotTested(f"no {args['task_group']}-text tasks in this run")
    samplers, sizes = [], []
    for row in rows.itertuples():
        part = items[(items["task"] == row.task) & (items["split"] == row.split) & (items["metric"] == row.item_metric)
                     & (items["model"] == row.model)]
        paired = part[part["variant"] == data["headline"]].merge(
            part[part["variant"] == baseline][["item", "value"]], on="item", suffixes=("", "_base"))
        if len(paired) > 1:
            samplers.append(_task_sampler(paired, row.metric, row.item_metric))
            sizes.append(len(paired))
    if not samplers:
        raise NotTested("no paired per-item values")
    value = float(np.mean([s(None) for s in samplers]))
    draws = np.array([np.mean([s(rng.integers(0, n, n)) for s, n in zip(samplers, sizes, strict=True)])
                      for _ in range(DRAWS // 2)])
    low, high = _percentile_ci(draws)
    return Estimate(value, low, high, int(sum(sizes)), "pp", f"{len(samplers)} task splits, {data['headline']} vs {baseline}")


def _dcls_runs(data: Mapping[str, Any], family: str, variant: str, kernel_count: int | None) -> pd.DataFrame:
    metrics = _need(data, "dcls_metrics")
    rows = metrics[(metrics["family"] == family) & (metrics["variant"] == variant)]
    if rows.empty:
        raise NotTested(f"no {family}/{variant} runs in this run's dcls.grid")
    if variant != "dense":
        rows = rows[rows["kernel_count"] == (kernel_count if kernel_count is not None else rows["kernel_count"].max())]
    return rows


def _paired(a: pd.DataFrame, b: pd.DataFrame, column: str, note: str) -> Estimate:
    pairs = a.merge(b, on="seed", suffixes=("", "_base"))
    if pairs.empty:
        raise NotTested("no seed shared by both variants")
    diffs = (pairs[column] - pairs[f"{column}_base"]).to_numpy(float)
    low, high = _t_interval(diffs)
    sd = float(diffs.std(ddof=1)) if len(diffs) > 1 else math.nan
    mde = paired_mde(sd, len(diffs), 1 - LEVEL, POWER) if len(diffs) > 1 and sd > 0 else math.nan
    return Estimate(float(diffs.mean()), low, high, len(diffs), "pp",
                    f"{len(diffs)} paired seed(s), sd of the differences {sd:.2f}; {note}", mde)


def dcls_paired_delta(data: Mapping[str, Any], args: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    variant = _dcls_runs(data, args["family"], args["variant"], None)
    taps = int(variant["kernel_count"].iloc[0])
    baseline = _dcls_runs(data, args["family"], args["baseline"], taps)
    return _paired(variant, baseline, args.get("column", "top1"), f"{taps} taps")


def dcls_taps_delta(data: Mapping[str, Any], args: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    runs = _dcls_runs(data, args["family"], args["variant"], None)
    metrics = _need(data, "dcls_metrics")
    counts = sorted(metrics[(metrics["family"] == args["family"]) & (metrics["variant"] == args["variant"])]["kernel_count"].unique())
    if len(counts) < 2:
        raise NotTested("only one kernel count in the grid")
    fewest = _dcls_runs(data, args["family"], args["variant"], int(counts[0]))
    return _paired(runs, fewest, "top1", f"{counts[-1]} vs {counts[0]} taps")


def not_testable(data: Mapping[str, Any], args: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    raise NotTested(str(args["why"]))


MEASURES: dict[str, Callable[..., Estimate]] = {f.__name__: f for f in (
    theory_check, sigma_length_slope, sigma_tau_gain, collapse_length_trend, collapse_tau_reduction,
    tempscale_task_delta, dcls_paired_delta, dcls_taps_delta, not_testable)}


def _need(data: Mapping[str, Any], key: str) -> Any:
    if data.get(key) is None:
        raise NotTested(f"this run produced no {key.replace('_', ' ')} (stage off?)")
    return data[key]


# --- ledger ------------------------------------------------------------------------------------


def load_claims(path: Path) -> dict[str, Any]:
    ledger = yaml.safe_load(path.read_text(encoding="utf-8"))
    ids = [c["id"] for c in ledger["claims"]]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: duplicate claim ids")
    for claim in ledger["claims"]:
        if claim["measure"] not in MEASURES:
            raise ConfigError(f"{path}: claim {claim['id']}: unknown measure {claim['measure']!r} ({sorted(MEASURES)})")
    return ledger


def evaluate_claims(ledger: Mapping[str, Any], data: dict[str, Any], scale: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {**data, "headline": ledger["headline_tempscale_variant"]}
    rows = []
    for claim in ledger["claims"]:
        row = {k: claim.get(k, "") for k in ("id", "paper", "section", "statement", "quantity")}
        row.update(rule=rule_text(claim["rule"]), scale=scale)
        try:
            est = MEASURES[claim["measure"]](data, claim.get("args", {}), rng)
            mde = est.mde if math.isfinite(est.mde) else interval_mde(est.low, est.high, LEVEL, POWER)
            row.update(estimate=est.value, ci_low=est.low, ci_high=est.high, mde=mde, n=est.n, unit=est.unit,
                       verdict=verdict(claim["rule"], est), note=est.note)
        except NotTested as why:
            row.update(estimate=math.nan, ci_low=math.nan, ci_high=math.nan, mde=math.nan, n=0, unit="",
                       verdict="not tested", note=str(why))
        rows.append(row)
    return pd.DataFrame(rows)[COLUMNS]


def markdown(frame: pd.DataFrame, scale: str) -> str:
    def num(v: float) -> str:
        return "" if not math.isfinite(v) else f"{v:+.3g}"

    def estimate(r: Any) -> str:
        if r.unit == "holds":
            return "holds" if r.estimate > 0 else "fails"
        return f"{num(r.estimate)} {r.unit}".strip()

    lines = [f"# Claims ledger (scale: {scale})", "",
             "Decision rules fixed in data/claims.yaml before the run; 95% CIs. Read embedded-scale "
             "verdicts as verdicts about this run's small models and data, not about the papers' setups.", "",
             f"MDE: the smallest true effect this run's design detects with {POWER:.0%} power (paired t for seeds, "
             "else from the CI's half-width).", "",
             "| Claim | Paper | Estimate | 95% CI | MDE | n | Rule | Verdict | Note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|")

    for r in frame.itertuples():
        ci = f"[{num(r.ci_low)}, {num(r.ci_high)}]" if math.isfinite(r.ci_low) or math.isfinite(r.ci_high) else ""
        mde = f"{r.mde:.3g}" if math.isfinite(r.mde) else ""
        lines.append(f"| {cell(r.statement)} | {r.paper} {cell(r.section)} | {estimate(r)} | {ci} | {mde} | {r.n} "
                     f"| {r.rule} | **{r.verdict}** | {cell(r.note)} |")
    counts = frame["verdict"].value_counts()
    lines += ["", "Verdicts: " + ", ".join(f"{k} {v}" for k, v in counts.items()), ""]
    return "\n".join(lines)


VERDICT_COLOURS = {"supported": "#009E73", "contradicted": "#D55E00", "inconclusive": "#777777"}


def forest_figure(frame: pd.DataFrame, provenance: Mapping[str, Any]) -> Any:
    """One panel per unit: estimate and 95% CI of every tested claim, coloured by verdict."""
    from tsdcls.figures.style import finish, label_axes, new_figure

    tested = frame[(frame["verdict"] != "not tested") & (frame["unit"] != "holds")]
    units = list(dict.fromkeys(tested["unit"])) or ["none"]
    fig, axes = new_figure(ncols=len(units), width=3.4, height=0.45 * max(3, tested["unit"].value_counts().max() if len(tested) else 3) + 1)
    for ax, unit in zip(axes[0], units, strict=True):
        rows = tested[tested["unit"] == unit].reset_index(drop=True)
        for y, r in rows.iterrows():
            low = r.ci_low if math.isfinite(r.ci_low) else r.estimate
            high = r.ci_high if math.isfinite(r.ci_high) else r.estimate
            ax.plot([low, high], [y, y], color=VERDICT_COLOURS[r.verdict], linewidth=2, label="_ci")
            ax.plot([r.estimate], [y], "o", color=VERDICT_COLOURS[r.verdict], label="_est")
        ax.axvline(0, color="#333333", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [str(i) for i in rows["id"]], fontsize=7)
        label_axes(ax, x=("estimate", unit), y="claim", title=f"claims in {unit}")
    handles = [fig.axes[0].plot([], [], "o", color=c, label=v)[0] for v, c in VERDICT_COLOURS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=7)
    finish(fig, provenance)
    return fig


def _read_optional(job: Any, name: str, reader: Callable[[Path], Any]) -> Any:
    return reader(job.inputs[name]) if name in job.inputs and Path(job.inputs[name]).exists() else None


def run_claims(job: Any) -> None:
    """Verb ``claims``: results/claims.{csv,md} and the forest plot from the result files."""
    ledger = load_claims(job.input("claims"))
    items = [read_csv(p) for name, p in sorted(job.inputs.items()) if name.startswith("per_item_")]
    data = {
        "theory_checks": _read_optional(job, "theory_checks", read_json),
        "real_gain": _read_optional(job, "real_gain", read_csv),
        "collapse": _read_optional(job, "collapse", read_csv),
        "collapse_controls": _read_optional(job, "collapse_controls", read_csv),
        "ablation": _read_optional(job, "ablation", read_csv),
        "per_item": pd.concat(items, ignore_index=True) if items else None,
        "dcls_metrics": _read_optional(job, "dcls_metrics", read_csv),
    }
    scale = str(job.config.get("scale", "unknown"))
    frame = evaluate_claims(ledger, data, scale, job.seed)
    provenance = job.prov()
    write_csv(job.output("csv"), frame, provenance)
    write_table(job.output("md"), markdown(frame, scale), provenance)
    save_figure(forest_figure(frame, provenance), job.output("png").with_suffix(""), provenance,
                dpi=int(job.config["dpi"]))
