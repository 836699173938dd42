"""The TempScale ablation grid and its aggregation into one table with paired p-values.

Grid (config ``tempscale.ablation``): for each model, a tau sweep on all layers (tau = 1 is the
baseline and must be in it), the layer subsets at one tau, and the length-adaptive tau(n).
Each (model, variant) is one Snakemake job (``tempscale-evaluate``) running every task; the
aggregation (``tempscale-ablation``) compares each variant with tau = 1 of the same model on the
same items and writes ``results/tempscale/ablation.csv``.

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

logger = logging.getLogger(__name__)

BASELINE_SLUG = "tau1-all"
SLUG_PATTERN = r"tau[0-9.]+-(all|first_half|last_half)|adaptive-(all|first_half|last_half)"


@dataclass(frozen=True)
class Variant:
    """One TempScale setting: a fixed tau on some layers, or tau(n) from each input's length."""

    slug: str  # file-name-safe id, also the Snakemake wildcard: 'tau0.9-all', 'adaptive-all'
    mode: str  # 'fixed' | 'adaptive'
    tau: float  # NaN for adaptive
    layers: str  # 'all' | 'first_half' | 'last_half'

    @property
    def is_baseline(self) -> bool:
        return self.mode == "fixed" and self.tau == 1.0


def fixed_slug(tau: float, layers: str) -> str:
    return f"tau{float(tau):g}-{layers}"


def ablation_variants(config: Mapping[str, Any]) -> list[Variant]:
    """Every variant of ``tempscale.ablation`` (baseline first), validated."""
    section = require(config, "ablation")
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
    adaptive = section.get("adaptive", {})
    if adaptive.get("enabled"):
        variants.append(Variant(f"adaptive-{adaptive.get('layers', 'all')}", "adaptive", math.nan, adaptive.get("layers", "all")))
    slugs = [v.slug for v in variants]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(f"config key 'tempscale.ablation': duplicate variants {slugs}")
    return variants


def variant_slugs(config: Mapping[str, Any]) -> list[str]:
    """Wildcard values for the rule file (``{variant}``)."""
    return [v.slug for v in ablation_variants(config)]


def model_slugs(config: Mapping[str, Any]) -> dict[str, str]:
    """File-name-safe slug -> configured model name (a hub id or a folder may hold '/')."""
    models = require(config, "ablation.models")
    slugs = {re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_"): str(name) for name in models}
    if len(slugs) != len(models):
        raise ConfigError(f"config key 'tempscale.ablation.models': names collide as file names: {models}")
    return slugs


def parse_variant(slug: str, config: Mapping[str, Any]) -> Variant:
    """The configured variant with this slug (a clear error for anything not in the grid)."""
    for variant in ablation_variants(config):
        if variant.slug == slug:
            return variant
    raise ConfigError(f"variant '{slug}' is not in config key 'tempscale.ablation' (have {variant_slugs(config)})")


def job_variant(config: Mapping[str, Any]) -> Variant:
    """The one variant an evaluation job was given (key ``variant``, set by the rule from the
    grid): a job never sees the whole grid, so adding a tau reruns only the new tau's jobs."""
    spec = require(config, "variant")
    tau = math.nan if spec.get("tau") is None else float(spec["tau"])
    variant = Variant(str(spec["slug"]), str(spec["mode"]), tau, str(spec["layers"]))
    if variant.mode not in ("fixed", "adaptive") or not re.fullmatch(SLUG_PATTERN, variant.slug):
        raise ConfigError(f"TempScale variant {spec} is not a grid variant of 'tempscale.ablation'")
    return variant


# --- aggregation ------------------------------------------------------------------------------

KEYS = ["model", "task", "split", "subset", "metric"]


def _test_for(task_type: str, section: Mapping[str, Any]) -> str:
    if task_type == "STS":
        return "bootstrap_spearman"
    return str(section["test"])


def compare_with_baseline(scores: Any, per_item: Any, significance: Mapping[str, Any], seed: int) -> Any:
    """Add baseline_score, delta_vs_tau1, p_value, test, n_items and significant to ``scores``."""
    import numpy as np
    import pandas as pd

    from tsdcls.tempscale import stats

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
        p_value, n_items = np.nan, 0
        mine = items.get((row.model, row.variant, row.task, row.split, row.subset))
        theirs = items.get((row.model, BASELINE_SLUG, row.task, row.split, row.subset))
        if mine is not None and theirs is not None:
            metric = row.item_metric
            a = mine[mine["metric"] == metric].set_index("item")
            b = theirs[theirs["metric"] == metric].set_index("item")
            common = a.index.intersection(b.index)
            n_items = len(common)
            if n_items and test == "bootstrap_spearman":
                p_value = stats.bootstrap_correlation_test(
                    b.loc[common, "gold"].to_numpy(), a.loc[common, "value"].to_numpy(),
                    b.loc[common, "value"].to_numpy(), n_resamples=n_resamples, seed=seed,
                )
            elif n_items:
                p_value = stats.paired_test(test, n_resamples=n_resamples, seed=seed)(
                    a.loc[common, "value"].to_numpy(), b.loc[common, "value"].to_numpy()
                )
        record.update(
            p_value=p_value,
            test=test if n_items else "none",
            n_items=n_items,
            significant=bool(n_items and p_value < alpha),
            alpha=alpha,
        )
        rows.append(record)
    frame = pd.DataFrame(rows)
    # an exact zero for the baseline itself (the subtraction above already gives 0.0)
    frame.loc[frame["variant"] == BASELINE_SLUG, "delta_vs_tau1"] = 0.0
    return frame


COLUMNS = [
    "model", "task", "task_type", "split", "length", "subset", "metric", "variant", "tau", "layers",
    "tau_mode", "score", "baseline_score", "delta_vs_tau1", "p_value", "significant", "test",
    "n_items", "alpha", "item_metric", "revision", "evaluation_time_s", "scale", "status",
]  # fmt: skip


def run_aggregate(job: Any) -> None:
    """Verb ``tempscale-ablation``: every evaluation's scores -> ablation.csv with p-values."""
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
    frame = frame.sort_values(["model", "task", "length", "split", "tau_mode", "layers", "tau"], ascending=[True, True, True, True, False, True, False])
    write_csv(job.output("ablation"), frame[COLUMNS], job.prov(n_evaluations=len(score_files)))
    significant = frame[(frame["variant"] != BASELINE_SLUG) & frame["significant"]]
    logger.info("%d rows, %d significant at alpha=%s", len(frame), len(significant), job.config["significance"]["alpha"])
