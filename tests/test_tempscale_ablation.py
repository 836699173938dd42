"""The ablation grid, the paired significance tests (known answers), and the smoke run's
ablation.csv, figures and tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsdcls.common.config import ConfigError
from tsdcls.tempscale import stats
from tsdcls.tempscale.ablation import (
    BASELINE_SLUG,
    ablation_variants,
    compare_with_baseline,
    model_slugs,
    parse_variant,
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
        "adaptive": {"enabled": True, "n_ref": 128, "exponent": 0.5, "tau_min": 0.5},
    }
}


def test_grid_has_baseline_first_sweep_subsets_and_adaptive() -> None:
    slugs = [v.slug for v in ablation_variants(GRID)]
    assert slugs == ["tau1-all", "tau0.9-all", "tau0.8-all", "tau0.8-first_half", "tau0.8-last_half", "adaptive-all"]
    assert parse_variant("tau1-all", GRID).is_baseline
    assert math.isnan(parse_variant("adaptive-all", GRID).tau)
    assert model_slugs(GRID) == {"minilm": "minilm", "sentence-transformers_all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2"}


def test_grid_errors_name_the_config_key() -> None:
    no_baseline = {"ablation": {**GRID["ablation"], "taus": [0.9]}}
    with pytest.raises(ConfigError, match="tempscale.ablation.taus"):
        ablation_variants(no_baseline)
    with pytest.raises(ConfigError, match="tempscale.ablation"):
        parse_variant("tau0.7-all", GRID)


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
    variants = {v.slug for v in ablation_variants(preset)}
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
    assert "Passkey" in table and "τ=0.8" in table and "adaptive" in table
    assert "\\begin{tabular}" in (smoke_run / "results/tables/tempscale_ablation.tex").read_text()


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
