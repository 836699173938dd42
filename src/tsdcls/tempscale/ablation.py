"""The TempScale ablation grid and its aggregation into one table with paired p-values and CIs.

Grid (config ``tempscale.ablation``): for each model, a tau sweep on all layers (tau = 1 is the
baseline and must be in it), the layer subsets at one tau, the temperature laws tau(n)
(``tau_laws``: one tau per input from its own token count) and the post-hoc embedding fixes
(``fixes``: mean-centering, whitening, length-binned centering, each alone and, with
``with_tempscale``, at the claims ledger's headline tau) and, for the models listed in
``position_bias.models`` only (MPNet, T5: models with a relative position bias B), each tau of
``position_bias.taus`` on all layers with B left unscaled (``tau<x>-all-biasunscaled``; the
default patch divides B by tau too). Each (model, variant) is one Snakemake
job (``tempscale-evaluate``) running every task; the aggregation (``tempscale-ablation``)
compares each variant with tau = 1 of the same model on the same items and writes
``results/tempscale/ablation.csv``.

This module is imported by the rule file at parse time, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tsdcls.common.config import ConfigError, require
from tsdcls.common.variants import BIAS_UNSCALED_SUFFIX as BIAS_SUFFIX

logger = logging.getLogger(__name__)

BASELINE_SLUG = "tau1-all"
FIXES = ("mean_center", "whiten", "length_center")  # post-hoc embedding fixes (tempscale/fixes.py)
_LAYERS = "(all|first_half|last_half)"
LAW_PATTERN = r"power[0-9.]+|power-measured|log"  # names in tempscale.ablation.tau_laws.laws
BIAS_UNSCALED = "unscaled"  # Variant.bias of the position-bias ablation ('' = the patch's default, B / tau)
SLUG_PATTERN = (rf"(?:(?:{'|'.join(FIXES)})-)?tau[0-9.]+-{_LAYERS}|law-(?:{LAW_PATTERN})-{_LAYERS}"
                rf"|tau[0-9.]+-all{BIAS_SUFFIX}")
MEASURED = "power-measured"  # the exponent alpha measured by the theory stage (tau_law.csv)


@dataclass(frozen=True)
class Variant:
    """One evaluated setting: a fixed tau on some layers (optionally followed by a post-hoc
    embedding fix), or a temperature law tau(n) from each input's length."""

    slug: str  # file-name-safe id, also the Snakemake wildcard: 'tau0.9-all', 'law-log-all', 'whiten-tau1-all'
    mode: str  # 'fixed' | 'law'
    tau: float  # NaN for a law
    layers: str  # 'all' | 'first_half' | 'last_half'
    law: str = ""  # mode 'law': 'power0.5', 'power-measured' or 'log'
    fix: str = ""  # '' or one of FIXES
    bias: str = ""  # '' (relative position bias divided by tau, the patch's default) or 'unscaled'
    models: tuple[str, ...] = ()  # configured model names this variant runs on (empty: every model)

    @property
    def is_baseline(self) -> bool:
        return self.mode == "fixed" and self.tau == 1.0 and not self.fix and not self.bias

    @property
    def scale_position_bias(self) -> bool:
        return self.bias != BIAS_UNSCALED

    def applies_to(self, model: str) -> bool:
        """Whether this variant is evaluated for the configured model name ``model``."""
        return not self.models or model in self.models

    @property
    def needs_measured_alpha(self) -> bool:
        return self.law == MEASURED

    def spec(self) -> dict[str, Any]:
        """The job's ``variant`` config (JSON-safe; ``job_variant`` reads it back)."""
        spec = {"slug": self.slug, "mode": self.mode, "layers": self.layers, "law": self.law, "fix": self.fix,
                "tau": None if self.mode == "law" else self.tau}
        return {**spec, "bias": self.bias} if self.bias else spec  # other variants' specs stay as they were


def fixed_slug(tau: float, layers: str) -> str:
    return f"tau{float(tau):g}-{layers}"


def headline_tau(slug: str) -> float:
    """tau of the claims ledger's headline variant ('tau<x>-all')."""
    match = re.fullmatch(r"tau([0-9.]+)-all", str(slug))
    if not match or float(match.group(1)) == 1.0:
        raise ConfigError(f"data/claims.yaml: headline_tempscale_variant {slug!r} is not 'tau<x>-all' with x != 1")
    return float(match.group(1))


def _fixed_variants(section: Mapping[str, Any]) -> list[Variant]:
    taus = [float(t) for t in section["taus"]]
    if 1.0 not in taus:
        raise ConfigError("config key 'tempscale.ablation.taus' must contain 1.0 (the baseline every delta uses)")
    variants = [Variant(fixed_slug(t, "all"), "fixed", t, "all") for t in sorted(set(taus), reverse=True)]
    subsets = section.get("layer_subsets", {})
    for layers in subsets.get("subsets", []):
        tau = float(subsets["tau"])
        if tau == 1.0:
            raise ConfigError("config key 'tempscale.ablation.layer_subsets.tau' must differ from 1.0")
        if layers != "all":
            variants.append(Variant(fixed_slug(tau, layers), "fixed", tau, layers))
    return variants


def _law_variants(section: Mapping[str, Any]) -> list[Variant]:
    laws = section.get("tau_laws") or {}
    layers = str(laws.get("layers", "all"))
    variants = []
    for law in laws.get("laws", []):
        if not re.fullmatch(LAW_PATTERN, str(law)):
            raise ConfigError(f"config key 'tempscale.ablation.tau_laws.laws': {law!r} is not power<exponent>, "
                              f"{MEASURED} or log")
        variants.append(Variant(f"law-{law}-{layers}", "law", math.nan, layers, law=str(law)))
    return variants


def _fix_variants(section: Mapping[str, Any], headline: float | None) -> list[Variant]:
    fixes = section.get("fixes") or {}
    methods = list(fixes.get("methods", []))
    if not methods:
        return []
    taus = [1.0]
    if fixes.get("with_tempscale"):
        if headline is None:
            raise ConfigError("config key 'tempscale.ablation.fixes.with_tempscale' needs the headline tau of data/claims.yaml")
        taus.append(headline)
    return [Variant(f"{fix}-{fixed_slug(tau, 'all')}", "fixed", tau, "all", fix=fix) for tau in taus for fix in methods]


def _bias_variants(section: Mapping[str, Any]) -> list[Variant]:
    """tau on all layers with the relative position bias left unscaled, for the listed models only."""
    bias = section.get("position_bias") or {}
    models = tuple(str(m) for m in bias.get("models") or [])
    if not models:
        return []
    unknown = [m for m in models if m not in [str(n) for n in section["models"]]]
    if unknown:
        raise ConfigError(f"config key 'tempscale.ablation.position_bias.models': {unknown} not in "
                          f"'tempscale.ablation.models' ({list(section['models'])})")
    taus = [float(t) for t in bias.get("taus") or []]
    if not taus or 1.0 in taus:
        raise ConfigError("config key 'tempscale.ablation.position_bias.taus' needs at least one tau != 1.0 "
                          "(at tau = 1 scaling the bias changes nothing)")
    return [Variant(fixed_slug(t, "all") + BIAS_SUFFIX, "fixed", t, "all", bias=BIAS_UNSCALED, models=models)
            for t in sorted(set(taus), reverse=True)]


def ablation_variants(config: Mapping[str, Any], headline: float | None = None) -> list[Variant]:
    """Every variant of ``tempscale.ablation`` (baseline first), validated. ``headline`` is the
    claims ledger's headline tau, at which ``fixes.with_tempscale`` combines each fix with TempScale."""
    section = require(config, "ablation")
    variants = (_fixed_variants(section) + _law_variants(section) + _fix_variants(section, headline)
                + _bias_variants(section))
    slugs = [v.slug for v in variants]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(f"config key 'tempscale.ablation': duplicate variants {slugs}")
    return variants


def side_by_side_variants(config: Mapping[str, Any], headline: float | None) -> list[Variant]:
    """What the fixes comparison shows: tau = 1 first, the headline tau, every law and every fix
    (the position-bias ablation is not a fix: it is in ablation.csv only)."""
    return [v for v in ablation_variants(config, headline) if not v.bias and (
        v.is_baseline or v.mode == "law" or v.fix or (v.layers == "all" and v.tau == headline))]


def variant_slugs(config: Mapping[str, Any], headline: float | None = None) -> list[str]:
    """Wildcard values for the rule file (``{variant}``)."""
    return [v.slug for v in ablation_variants(config, headline)]


def model_slugs(config: Mapping[str, Any]) -> dict[str, str]:
    """File-name-safe slug -> configured model name (a hub id or a folder may hold '/')."""
    models = require(config, "ablation.models")
    slugs = {re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_"): str(name) for name in models}
    if len(slugs) != len(models):
        raise ConfigError(f"config key 'tempscale.ablation.models': names collide as file names: {models}")
    return slugs


def ablation_grid(config: Mapping[str, Any], headline: float | None = None) -> list[tuple[str, Variant]]:
    """Every evaluated (model slug, variant) cell: each variant for the models it applies to."""
    variants = ablation_variants(config, headline)
    return [(slug, v) for slug, name in model_slugs(config).items() for v in variants if v.applies_to(name)]


def parse_variant(slug: str, config: Mapping[str, Any], headline: float | None = None) -> Variant:
    """The configured variant with this slug (a clear error for anything not in the grid)."""
    for variant in ablation_variants(config, headline):
        if variant.slug == slug:
            return variant
    raise ConfigError(f"variant '{slug}' is not in config key 'tempscale.ablation' (have {variant_slugs(config, headline)})")


def job_variant(config: Mapping[str, Any]) -> Variant:
    """The one variant an evaluation job was given (key ``variant``, set by the rule from the
    grid): a job never sees the whole grid, so adding a tau reruns only the new tau's jobs."""
    spec = require(config, "variant")
    tau = math.nan if spec.get("tau") is None else float(spec["tau"])
    variant = Variant(str(spec["slug"]), str(spec["mode"]), tau, str(spec["layers"]),
                      law=str(spec.get("law") or ""), fix=str(spec.get("fix") or ""), bias=str(spec.get("bias") or ""))
    valid = (variant.mode == "law") == bool(variant.law) and variant.fix in ("", *FIXES)
    valid = valid and variant.bias in ("", BIAS_UNSCALED) and variant.slug.endswith(BIAS_SUFFIX) == bool(variant.bias)
    if variant.mode not in ("fixed", "law") or not valid or not re.fullmatch(SLUG_PATTERN, variant.slug):
        raise ConfigError(f"TempScale variant {spec} is not a grid variant of 'tempscale.ablation'")
    return variant


# --- aggregation ------------------------------------------------------------------------------

KEYS = ["model", "task", "split", "subset", "metric"]


def _test_for(task_type: str, section: Mapping[str, Any]) -> str:
    if task_type == "STS":
        return "bootstrap_spearman"
    return str(section["test"])


def paired_comparison(test: str, variant: Any, baseline: Any, n_resamples: int, seed: int, level: float) -> tuple[float, float, float]:
    """(p-value, CI low, CI high) of variant - baseline on the same items (frames indexed by
    item with columns value, gold). STS: Spearman with the gold scores; else the mean item score."""
    from tsdcls.common.stats import paired_bootstrap_ci
    from tsdcls.tempscale import stats

    x, y = variant["value"].to_numpy(float), baseline["value"].to_numpy(float)
    if test == "bootstrap_spearman":
        gold = baseline["gold"].to_numpy(float)
        p_value = stats.bootstrap_correlation_test(gold, x, y, n_resamples=n_resamples, seed=seed)
        return (p_value, *stats.bootstrap_correlation_ci(gold, x, y, n_resamples=n_resamples, seed=seed, level=level))
    p_value = stats.paired_test(test, n_resamples=n_resamples, seed=seed)(x, y)
    if len(x) < 2:
        return p_value, math.nan, math.nan
    interval = paired_bootstrap_ci(x, y, draws=n_resamples, level=level, seed=seed)
    return p_value, interval.low, interval.high


def compare_with_baseline(scores: Any, per_item: Any, significance: Mapping[str, Any], seed: int) -> Any:
    """Add baseline_score, delta_vs_tau1 (with a paired 1 - alpha CI), p_value, test, n_items and
    significant to ``scores``."""
    import numpy as np
    import pandas as pd

    alpha = float(significance["alpha"])
    n_resamples = int(significance["n_resamples"])
    base = scores[scores["variant"] == BASELINE_SLUG].set_index(KEYS)["score"]
    missing = set(scores["model"]) - {k[0] for k in base.index}
    if missing:
        raise ConfigError(f"no tau = 1 baseline ('{BASELINE_SLUG}') scores for models {sorted(missing)}")
    items = {key: frame for key, frame in per_item.groupby(["model", "variant", "task", "split", "subset"])}
    rows = []
    for row in scores.itertuples(index=False):
        record = row._asdict()
        key = (row.model, row.task, row.split, row.subset, row.metric)
        record["baseline_score"] = float(base.get(key, np.nan))
        record["delta_vs_tau1"] = record["score"] - record["baseline_score"]
        test = _test_for(row.task_type, significance)
        p_value, low, high, n_items = np.nan, np.nan, np.nan, 0
        mine = items.get((row.model, row.variant, row.task, row.split, row.subset))
        theirs = items.get((row.model, BASELINE_SLUG, row.task, row.split, row.subset))
        if mine is not None and theirs is not None:
            a = mine[mine["metric"] == row.item_metric].set_index("item")
            b = theirs[theirs["metric"] == row.item_metric].set_index("item")
            common = a.index.intersection(b.index)
            n_items = len(common)
            if n_items:
                p_value, low, high = paired_comparison(test, a.loc[common], b.loc[common], n_resamples, seed, 1 - alpha)
        record.update(
            delta_ci_low=low, delta_ci_high=high, p_value=p_value, test=test if n_items else "none",
            n_items=n_items, significant=bool(n_items and p_value < alpha), alpha=alpha,
        )
        rows.append(record)
    frame = pd.DataFrame(rows)
    # an exact zero for the baseline itself (the subtraction above already gives 0.0)
    frame.loc[frame["variant"] == BASELINE_SLUG, ["delta_vs_tau1", "delta_ci_low", "delta_ci_high"]] = 0.0
    return frame


def split_mde(frame: Any, alpha: float, power: float = 0.8) -> Any:
    """Minimal detectable change of each task split (score units): (z_{1-a/2} + z_power) x the
    paired SE, the SE read off each fixed-tau sweep row's CI and the median taken over the sweep
    (one design figure per split, not one per variant: a variant identical to tau = 1 has a
    zero-width CI); NaN where every sweep CI has zero width (no item changed under any tau)."""
    import pandas as pd

    from tsdcls.common.stats import interval_mde

    bias = frame["position_bias"].astype(str) if "position_bias" in frame else ""
    sweep = frame[(frame["variant"] != BASELINE_SLUG) & (frame["tau_mode"] == "fixed")
                  & (frame["fix"].astype(str).isin(["", "nan"])) & (bias != BIAS_UNSCALED)]
    mde = pd.Series(interval_mde(sweep["delta_ci_low"], sweep["delta_ci_high"], 1 - alpha, power), index=sweep.index)
    per_split = mde.groupby([sweep[k] for k in SPLIT_KEYS]).median()
    per_split = per_split.where(per_split > 0)  # no item changed under any sweep tau: MDE undefined
    keys = list(zip(*(frame[k] for k in SPLIT_KEYS), strict=True))
    return [float(per_split.get(key, float("nan"))) for key in keys]


SPLIT_KEYS = ["model", "task", "split", "subset"]
COLUMNS = [
    "model", "task", "task_type", "split", "length", "subset", "metric", "variant", "tau", "layers",
    "tau_mode", "tau_law", "fix", "position_bias", "score", "baseline_score", "delta_vs_tau1", "delta_ci_low", "delta_ci_high",
    "mde_split", "p_value", "significant", "test",
    "n_items", "alpha", "item_metric", "revision", "evaluation_time_s", "scale", "status",
]  # fmt: skip


LAW_TAU_COLUMNS = [
    "model", "variant", "tau_law", "layers", "position_bias", "task", "split", "length", "subset", "prompt_type",
    "n_rows", "tokens_mean", "tokens_min", "tokens_max", "tau_mean", "tau_min", "tau_max", "mteb_model_name", "scale",
]  # fmt: skip


def law_tau_table(frames: list[Any], scale: str) -> Any:
    """Every temperature-law evaluation's row_taus.csv in one table: per model, law, task split
    and prompt type (query / document / none) the token counts and the taus the law gave."""
    import pandas as pd

    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=LAW_TAU_COLUMNS)
    frame = pd.concat(frames, ignore_index=True)
    frame["length"] = [_split_length(s) for s in frame["split"].astype(str)]
    frame["scale"] = scale
    for column in ("tau_law", "position_bias"):
        frame[column] = frame[column].astype(object).fillna("") if column in frame else ""
    frame = frame.sort_values(["model", "variant", "task", "length", "split", "subset", "prompt_type"], kind="stable")
    return frame[LAW_TAU_COLUMNS]


def _split_length(split: str) -> float:
    """n of a long-context split 'test_<n>', else NaN."""
    prefix, _, tail = split.rpartition("_")
    return float(tail) if prefix and tail.isdigit() else math.nan


def run_aggregate(job: Any) -> None:
    """Verb ``tempscale-ablation``: every evaluation's scores -> ablation.csv with p-values, and
    the temperature laws' row_taus.csv files (inputs row_taus_*) -> law_taus.csv."""
    import pandas as pd

    from tsdcls.common.io import read_csv, write_csv
    from tsdcls.tempscale.tasks import SCORED

    score_files = sorted(path for name, path in job.inputs.items() if name.startswith("scores_"))
    item_files = sorted(path for name, path in job.inputs.items() if name.startswith("per_item_"))
    if not score_files:
        raise ConfigError("tempscale-ablation: no evaluation scores given (inputs scores_*)")
    scores = pd.concat([read_csv(p) for p in score_files], ignore_index=True)
    if "status" not in scores:  # scores.csv written before skipped splits were recorded
        scores["status"] = SCORED
    per_item = pd.concat([read_csv(p) for p in item_files], ignore_index=True) if item_files else pd.DataFrame(
        columns=["model", "variant", "task", "split", "subset", "metric", "item", "value", "gold"]
    )
    frame = compare_with_baseline(scores, per_item, job.config["significance"], seed=job.seed)
    frame["scale"] = job.config.get("scale", "unknown")
    for column in ("tau_law", "fix", "position_bias"):  # empty strings come back from a CSV as NaN
        frame[column] = frame[column].astype(object).fillna("") if column in frame else ""
    frame["mde_split"] = split_mde(frame, float(job.config["significance"]["alpha"]))
    frame = frame.sort_values(["model", "task", "length", "split", "tau_mode", "fix", "layers", "tau", "position_bias"],
                              ascending=[True, True, True, True, True, True, True, False, True], kind="stable")
    write_csv(job.output("ablation"), frame[COLUMNS], job.prov(n_evaluations=len(score_files)))
    if "law_taus" in job.outputs:
        tau_files = sorted(path for name, path in job.inputs.items() if name.startswith("row_taus_"))
        law_taus = law_tau_table([read_csv(p) for p in tau_files], job.config.get("scale", "unknown"))
        write_csv(job.output("law_taus"), law_taus, job.prov(n_evaluations=len(tau_files)))
    significant = frame[(frame["variant"] != BASELINE_SLUG) & frame["significant"]]
    logger.info("%d rows, %d significant at alpha=%s", len(frame), len(significant), job.config["significance"]["alpha"])
