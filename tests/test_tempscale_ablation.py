"""The ablation grid, the paired significance tests (known answers), and the smoke run's
ablation.csv, figures and tables."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsdcls.common.config import ConfigError
from tsdcls.tempscale import stats
from tsdcls.tempscale.ablation import (
    BASELINE_SLUG,
    SLUG_PATTERN,
    ablation_variants,
    compare_with_baseline,
    job_variant,
    model_slugs,
    parse_variant,
    side_by_side_variants,
)

# --- paired tests: known answers ----------------------------------------------------------------


@pytest.mark.parametrize("test", stats.TESTS)
def test_identical_scores_give_p_one(test: str) -> None:
    scores = np.random.default_rng(0).random(40)
    assert stats.paired_test(test, n_resamples=500)(scores, scores.copy()) == 1.0


@pytest.mark.parametrize("test", stats.TESTS)
def test_a_clear_shift_gives_a_small_p(test: str) -> None:
    rng = np.random.default_rng(1)
    base = rng.random(60)
    shifted = base + 0.2 + 0.01 * rng.random(60)
    assert stats.paired_test(test, n_resamples=2000, seed=0)(shifted, base) < 0.01


def test_sign_test_exact_values() -> None:
    # 10 wins, 0 losses: p = 2 * (1/2)^10; ties are dropped; one win, one loss: p = 1
    assert stats.sign_test([1] * 10 + [0] * 5, [0] * 10 + [0] * 5) == pytest.approx(2 / 1024)
    assert stats.sign_test([1, 0], [0, 1]) == 1.0
    # 0/1 per-query ndcg@1 with 3 discordant pairs all one way: 2 * 1/8
    assert stats.sign_test([1, 1, 1, 0, 1], [0, 0, 0, 0, 1]) == pytest.approx(0.25)


def test_exact_permutation_test_matches_enumeration() -> None:
    # diffs (1, 2, 3): |sum| = 6 reached only by all-positive and all-negative of 8 patterns
    assert stats.permutation_test([1, 2, 3], [0, 0, 0]) == pytest.approx(2 / 8)


def test_correlation_bootstrap_known_answers() -> None:
    rng = np.random.default_rng(2)
    gold = rng.random(200)
    noisy = gold + 0.05 * rng.standard_normal(200)
    assert stats.bootstrap_correlation_test(gold, noisy, noisy.copy()) == 1.0
    assert stats.bootstrap_correlation_test(gold, noisy, rng.random(200), n_resamples=500) < 0.01


def test_paired_tests_reject_unpaired_input() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        stats.sign_test([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="unknown paired test"):
        stats.paired_test("t-test")


# --- the grid ----------------------------------------------------------------------------------

GRID = {
    "ablation": {
        "models": ["minilm", "sentence-transformers/all-mpnet-base-v2"],
        "taus": [0.9, 1.0, 0.8],
        "layer_subsets": {"tau": 0.8, "subsets": ["first_half", "last_half"]},
        "tau_laws": {"laws": ["power0.5", "power-measured", "log"], "n_ref": 128, "tau_min": 0.5},
        "fixes": {"methods": ["mean_center", "whiten"], "with_tempscale": True},
    }
}


def test_grid_has_baseline_first_sweep_subsets_laws_and_fixes() -> None:
    slugs = [v.slug for v in ablation_variants(GRID, headline=0.8)]
    assert slugs == ["tau1-all", "tau0.9-all", "tau0.8-all", "tau0.8-first_half", "tau0.8-last_half",
                     "law-power0.5-all", "law-power-measured-all", "law-log-all",
                     "mean_center-tau1-all", "whiten-tau1-all", "mean_center-tau0.8-all", "whiten-tau0.8-all"]
    assert all(re.fullmatch(SLUG_PATTERN, slug) for slug in slugs)
    assert parse_variant("tau1-all", GRID, 0.8).is_baseline
    assert not parse_variant("mean_center-tau1-all", GRID, 0.8).is_baseline
    assert math.isnan(parse_variant("law-log-all", GRID, 0.8).tau)
    assert parse_variant("law-power-measured-all", GRID, 0.8).needs_measured_alpha
    shown = [v.slug for v in side_by_side_variants(GRID, 0.8)]
    assert shown == ["tau1-all", "tau0.8-all", *slugs[5:]]


def test_job_variant_round_trips_every_grid_variant() -> None:
    for variant in ablation_variants(GRID, headline=0.8):
        back = job_variant({"variant": variant.spec()})
        assert back.slug == variant.slug and back.fix == variant.fix and back.law == variant.law
    with pytest.raises(ConfigError, match="not a grid variant"):
        job_variant({"variant": {**ablation_variants(GRID, 0.8)[-1].spec(), "fix": "pca"}})


def test_fixes_with_tempscale_need_the_headline() -> None:
    with pytest.raises(ConfigError, match="headline"):
        ablation_variants(GRID)
    with pytest.raises(ConfigError, match="tau_laws.laws"):
        ablation_variants({"ablation": {**GRID["ablation"], "tau_laws": {"laws": ["cubic"]}}}, 0.8)
    assert model_slugs(GRID) == {"minilm": "minilm", "sentence-transformers_all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2"}


def test_grid_errors_name_the_config_key() -> None:
    no_baseline = {"ablation": {**GRID["ablation"], "taus": [0.9]}}
    with pytest.raises(ConfigError, match="tempscale.ablation.taus"):
        ablation_variants(no_baseline)
    with pytest.raises(ConfigError, match="tempscale.ablation"):
        parse_variant("tau0.7-all", GRID, 0.8)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    common = {"model": "m", "task": "T", "task_type": "Retrieval", "split": "test_64", "subset": "default",
              "metric": "ndcg_at_1", "item_metric": "ndcg_at_1"}  # fmt: skip
    scores = pd.DataFrame([
        {**common, "variant": BASELINE_SLUG, "score": 0.5},
        {**common, "variant": "tau0.8-all", "score": 1.0},
    ])  # fmt: skip
    items = []
    for variant, values in ((BASELINE_SLUG, [1, 0] * 10), ("tau0.8-all", [1] * 20)):
        items += [{"model": "m", "variant": variant, "task": "T", "split": "test_64", "subset": "default",
                   "metric": "ndcg_at_1", "item": f"q{i}", "value": v, "gold": np.nan} for i, v in enumerate(values)]  # fmt: skip
    return scores, pd.DataFrame(items)


def test_compare_with_baseline_pairs_items() -> None:
    scores, items = _frames()
    out = compare_with_baseline(scores, items, {"test": "sign", "alpha": 0.05, "n_resamples": 200}, seed=0)
    base = out[out["variant"] == BASELINE_SLUG].iloc[0]
    assert base["delta_vs_tau1"] == 0.0 and base["p_value"] == 1.0 and not base["significant"]
    row = out[out["variant"] == "tau0.8-all"].iloc[0]
    assert row["delta_vs_tau1"] == pytest.approx(0.5) and row["n_items"] == 20
    assert row["p_value"] == pytest.approx(2 / 2**10) and row["significant"]  # 10 discordant, all wins
    # paired bootstrap CI of the mean item difference: differences are 0/1, mean 0.5, so the
    # interval lies inside (0, 1) and covers 0.5; the baseline's own interval is exactly zero
    assert 0.0 < row["delta_ci_low"] < 0.5 < row["delta_ci_high"] < 1.0
    assert base["delta_ci_low"] == base["delta_ci_high"] == 0.0


def test_missing_baseline_is_an_error() -> None:
    scores, items = _frames()
    with pytest.raises(ConfigError, match="baseline"):
        compare_with_baseline(scores[scores["variant"] != BASELINE_SLUG], items, {"test": "sign", "alpha": 0.05, "n_resamples": 200}, 0)


# --- the smoke run -----------------------------------------------------------------------------


def _deep_merge(base: dict, overlay: dict) -> dict:
    """Snakemake's --configfile overlay: nested dicts merge, everything else replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def test_smoke_ablation_csv(smoke_run: Path) -> None:
    import yaml

    from tsdcls.common.io import read_csv, read_provenance

    frame = read_csv(smoke_run / "results/tempscale/ablation.csv")
    default = yaml.safe_load((smoke_run / "config.yaml").read_text())["tempscale"]
    preset = _deep_merge(default, yaml.safe_load((smoke_run / "workflow/presets/smoke.yaml").read_text())["tempscale"])
    variants = {v.slug for v in ablation_variants(preset, headline=0.8)}
    assert set(frame["variant"]) == variants and len(variants) >= 3
    tasks = preset["tasks"]
    splits = len(tasks["passkey"]["lengths"]) + len(tasks["needle"]["lengths"]) + len(tasks["longdoc"]["lengths"]) + 3
    assert len(frame) == splits * len(variants)  # every task x split x variant, nothing else
    baseline = frame[frame["variant"] == BASELINE_SLUG]
    assert (baseline["delta_vs_tau1"] == 0.0).all() and (baseline["p_value"] == 1.0).all()
    assert frame["p_value"].between(0, 1).all() and (frame["n_items"] > 0).all()
    assert np.allclose(frame["delta_vs_tau1"], frame["score"] - frame["baseline_score"])
    assert set(frame["scale"]) == {"smoke"}
    assert read_provenance(smoke_run / "results/tempscale/ablation.csv")["stage"] == "tempscale"


def test_smoke_figures_and_tables(smoke_run: Path) -> None:
    from tsdcls.common.io import read_provenance

    for stem in ("tempscale_passkey_needle", "tempscale_tau_sweep"):
        for suffix in (".png", ".pdf"):
            path = smoke_run / "results/figures" / f"{stem}{suffix}"
            assert path.stat().st_size > 1000 and read_provenance(path)["scale"] == "smoke"
    table = (smoke_run / "results/tables/tempscale_ablation.md").read_text()
    assert "Passkey" in table and "τ=0.8" in table and "law" not in table and "center" not in table
    assert "\\begin{tabular}" in (smoke_run / "results/tables/tempscale_ablation.tex").read_text()


def test_smoke_fixes_side_by_side(smoke_run: Path) -> None:
    """The fixes comparison covers exactly the shown variants, baseline first, in every output."""
    import yaml

    from tsdcls.common.io import read_csv, read_provenance

    default = yaml.safe_load((smoke_run / "config.yaml").read_text())["tempscale"]
    preset = _deep_merge(default, yaml.safe_load((smoke_run / "workflow/presets/smoke.yaml").read_text())["tempscale"])
    shown = [v.slug for v in side_by_side_variants(preset, 0.8)]
    assert any("law" in v for v in shown) and any("center" in v for v in shown)
    collapse = read_csv(smoke_run / "results/tempscale/fixes_collapse.csv")
    assert list(dict.fromkeys(collapse["variant"])) == shown
    base = collapse[collapse["variant"] == BASELINE_SLUG]
    assert np.allclose(base["cosine_change_vs_tau1"], 0.0)
    # the baseline rows are the collapse analysis' own tau = 1 windows: same texts, same numbers
    analysis = read_csv(smoke_run / "results/tempscale/collapse_similarity.csv")
    analysis = analysis[(analysis["tau"] == 1.0) & (analysis["kind"] == "window")].set_index("bin")
    assert np.allclose(base.set_index("bin")["mean_pairwise_cosine"], analysis.loc[base["bin"], "mean_pairwise_cosine"], atol=1e-6)
    summary = read_csv(smoke_run / "results/tables/tempscale_fixes.csv")
    assert list(summary["variant"]) == shown and set(summary["kind"]) >= {"untouched", "post-hoc fix", "temperature law"}
    tasks = (smoke_run / "results/tables/tempscale_fixes_tasks.md").read_text()
    assert "long: Passkey" in tasks and "short: Lee STS" in tasks
    for suffix in (".png", ".pdf"):
        assert read_provenance(smoke_run / f"results/figures/tempscale_fixes{suffix}")["scale"] == "smoke"


def test_bootstrap_spearman_rows_match_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    gold = np.round(rng.random(300), 1)  # many ties, like the Lee ratings
    values = gold + rng.random(300)
    index = rng.integers(0, 300, size=(4, 300))
    ours = stats._spearman_rows(gold, values, index)
    assert np.allclose(ours, [spearmanr(gold[i], values[i])[0] for i in index])


def test_skipped_splits_stay_in_the_ablation_and_its_table() -> None:
    from tsdcls.figures.tempscale_tasks import ablation_table

    scores, items = _frames()
    scores["status"], scores["length"] = "scored", 64.0
    reason = "skipped: exceeds model positions (512 tokens)"
    skipped = scores.assign(split="test_1024", length=1024.0, score=np.nan, status=reason)
    out = compare_with_baseline(pd.concat([scores, skipped], ignore_index=True), items,
                                {"test": "sign", "alpha": 0.05, "n_resamples": 200}, seed=0)
    rows = out[out["split"] == "test_1024"]
    assert len(rows) == 2 and (rows["status"] == reason).all()
    assert rows["delta_vs_tau1"].drop(rows.index[rows["variant"] == BASELINE_SLUG]).isna().all()
    assert not rows["significant"].any() and (rows["n_items"] == 0).all()
    table = ablation_table(out.assign(tau=1.0, layers="all", tau_mode="fixed"))
    assert (table.loc[table["split"] == "test_1024"].drop(columns=["model", "task", "split", "metric"]) == reason).all(axis=None)


def test_split_mde_is_the_sweeps_median_half_width_times_the_power_factor() -> None:
    import pandas as pd
    from scipy import stats

    from tsdcls.tempscale.ablation import split_mde

    rows = [  # one split: tau = 1, two fixed taus (half-widths 0.05 and 0.15), a law and a fix (ignored)
        {"variant": "tau1-all", "tau_mode": "fixed", "fix": "", "delta_ci_low": 0.0, "delta_ci_high": 0.0},
        {"variant": "tau0.9-all", "tau_mode": "fixed", "fix": "", "delta_ci_low": -0.05, "delta_ci_high": 0.05},
        {"variant": "tau0.8-all", "tau_mode": "fixed", "fix": "", "delta_ci_low": -0.10, "delta_ci_high": 0.20},
        {"variant": "law-log-all", "tau_mode": "law", "fix": "", "delta_ci_low": -9.0, "delta_ci_high": 9.0},
        {"variant": "whiten-tau1-all", "tau_mode": "fixed", "fix": "whiten", "delta_ci_low": -9.0, "delta_ci_high": 9.0},
    ]
    frame = pd.DataFrame([{"model": "m", "task": "T", "split": "s", "subset": "default", **r} for r in rows])
    z = stats.norm.ppf(0.975)
    expected = (z + stats.norm.ppf(0.8)) / z * 0.10  # median of 0.05 and 0.15
    assert split_mde(frame, 0.05) == pytest.approx([expected] * len(rows))
    unchanged = frame.assign(delta_ci_low=0.0, delta_ci_high=0.0)
    assert all(math.isnan(v) for v in split_mde(unchanged, 0.05))  # zero-width CIs: undefined, not 0
