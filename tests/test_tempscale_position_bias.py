"""The MPNet relative-position-bias ablation: its grid variants (listed models only), their mteb
names and revisions, the parse-time errors and the ablation table's column (the patch itself is
tested against reference attention in tests/test_tempscale_patch.py)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tsdcls.common.config import ConfigError
from tsdcls.tempscale.ablation import (
    SLUG_PATTERN,
    ablation_grid,
    ablation_variants,
    job_variant,
    parse_variant,
    side_by_side_variants,
)

MPNET = "sentence-transformers/all-mpnet-base-v2"
GRID = {
    "ablation": {
        "models": ["minilm", MPNET],
        "taus": [1.0, 0.8],
        "layer_subsets": {"tau": 0.8, "subsets": []},
        "tau_laws": {"laws": ["log"], "n_ref": 128, "tau_min": 0.5},
        "fixes": {"methods": []},
        "position_bias": {"taus": [0.8, 0.9], "models": [MPNET]},
    }
}


def test_bias_variants_run_on_the_listed_models_only() -> None:
    variants = ablation_variants(GRID, headline=0.8)
    bias = [v for v in variants if v.bias]
    assert [v.slug for v in bias] == ["tau0.9-all-biasunscaled", "tau0.8-all-biasunscaled"]
    assert all(re.fullmatch(SLUG_PATTERN, v.slug) for v in variants)
    assert all(not v.scale_position_bias and v.tau in (0.8, 0.9) and v.layers == "all" for v in bias)
    cells = {(m, v.slug) for m, v in ablation_grid(GRID, 0.8)}
    assert ("minilm", "tau0.8-all-biasunscaled") not in cells
    assert {("sentence-transformers_all-mpnet-base-v2", v.slug) for v in bias} <= cells
    assert len(cells) == 2 * 3 + 2  # tau1, tau0.8, law-log for both; the bias variants for MPNet
    # not a fix and not the headline TempScale: kept out of the fixes comparison
    assert [v.slug for v in side_by_side_variants(GRID, 0.8)] == ["tau1-all", "tau0.8-all", "law-log-all"]
    assert not parse_variant("tau0.8-all-biasunscaled", GRID, 0.8).is_baseline


def test_bias_variant_specs_round_trip_and_leave_other_specs_alone() -> None:
    for variant in ablation_variants(GRID, headline=0.8):
        back = job_variant({"variant": variant.spec()})
        assert (back.slug, back.bias, back.tau) == (variant.slug, variant.bias, variant.tau)
        assert ("bias" in variant.spec()) == bool(variant.bias)  # existing jobs keep their params
    spec = parse_variant("tau0.8-all-biasunscaled", GRID, 0.8).spec()
    with pytest.raises(ConfigError, match="not a grid variant"):
        job_variant({"variant": {**spec, "bias": ""}})
    with pytest.raises(ConfigError, match="not a grid variant"):
        job_variant({"variant": {**parse_variant("tau0.8-all", GRID, 0.8).spec(), "bias": "unscaled"}})


def test_bias_config_errors_name_the_key() -> None:
    other = {"ablation": {**GRID["ablation"], "position_bias": {"taus": [0.8], "models": ["mpnet"]}}}
    with pytest.raises(ConfigError, match=r"tempscale\.ablation\.position_bias\.models.*not in 'tempscale\.ablation\.models'"):
        ablation_variants(other, 0.8)
    one = {"ablation": {**GRID["ablation"], "position_bias": {"taus": [1.0], "models": [MPNET]}}}
    with pytest.raises(ConfigError, match=r"tempscale\.ablation\.position_bias\.taus"):
        ablation_variants(one, 0.8)
    off = {"ablation": {**GRID["ablation"], "position_bias": {"taus": [0.8], "models": []}}}
    assert not any(v.bias for v in ablation_variants(off, 0.8))


def test_a_model_without_a_position_bias_is_refused_at_parse_time(tmp_path) -> None:
    from tsdcls.common.preflight import position_bias_problems

    found = position_bias_problems({"position_bias": {"taus": [0.8], "models": ["minilm", "mpnet", MPNET]}})
    assert found == ["config key 'tempscale.ablation.position_bias.models': model 'minilm' (model_type bert) has no "
                     "relative position bias to leave unscaled; list only models with one (mpnet, t5, mt5, umt5)"]
    folder = tmp_path / "my-roberta"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "roberta"}')
    assert "model_type roberta" in position_bias_problems({"position_bias": {"models": [str(folder)]}})[0]
    assert position_bias_problems({"position_bias": {"models": ["BAAI/bge-m3"]}}) == []  # a hub id: checked by the job


def test_schema_accepts_the_key_and_rejects_a_typo() -> None:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from tests.conftest import REPO
    from tests.test_config_validation import _merged

    schema = str(REPO / "workflow/schemas/config.schema.yaml")
    validate(_merged({"tempscale": {"ablation": {"position_bias": {"taus": [0.8], "models": ["mpnet"]}}}}),
             schema=schema)
    with pytest.raises(WorkflowError, match="'model' was unexpected"):
        validate(_merged({"tempscale": {"ablation": {"position_bias": {"taus": [0.8], "models": [], "model": []}}}}),
                 schema=schema)


def test_load_variant_names_and_checks_the_bias_variant() -> None:
    """Real MPNet: the unscaled-bias variant has its own mteb name; MiniLM (no bias) is refused."""
    from tsdcls.tempscale.evaluate import load_variant, variant_revision

    config = {"tasks": {"max_seq_length": 64, "batch_size": 8}, "ablation": GRID["ablation"]}
    variant = parse_variant("tau0.8-all-biasunscaled", GRID, 0.8)
    model, name, settings = load_variant(MPNET, variant, config, "cpu")
    assert name == f"{MPNET}-tempscale-tau0.8-all-biasunscaled" and model.tempscale["position_bias"] == "unscaled"
    scaled_model, scaled_name, _ = load_variant(MPNET, parse_variant("tau0.8-all", GRID, 0.8), config, "cpu")
    assert scaled_name == f"{MPNET}-tempscale-tau0.8-all" and scaled_model.tempscale["position_bias"] == "scaled"
    assert variant_revision(MPNET, variant, settings) != variant_revision(MPNET, parse_variant("tau0.8-all", GRID, 0.8), settings)
    with pytest.raises(ConfigError, match=r"position_bias\.models': model 'minilm' \(BertModel"):
        load_variant("minilm", variant, config, "cpu")


def test_ablation_table_shows_the_bias_column_and_the_figures_leave_it_out() -> None:
    from tsdcls.figures.tempscale_tasks import ablation_table, default_patch_rows

    rows = []
    for model, variants in (("mpnet", ["tau1-all", "tau0.8-all", "tau0.8-all-biasunscaled"]), ("minilm", ["tau1-all", "tau0.8-all"])):
        for variant in variants:
            rows.append({"model": model, "task": "TsdclsLeeSTS", "split": "test", "metric": "cosine_spearman",
                         "variant": variant, "tau": 1.0 if variant == "tau1-all" else 0.8, "layers": "all",
                         "tau_mode": "fixed", "fix": "", "score": 0.5, "delta_vs_tau1": 0.0, "significant": False,
                         "status": "scored"})  # fmt: skip
    frame = pd.DataFrame(rows)
    table = ablation_table(frame)
    assert list(table.columns)[-3:] == ["τ=1", "τ=0.8", "τ=0.8, B unscaled"]
    assert pd.isna(table.set_index("model").loc["minilm", "τ=0.8, B unscaled"])  # a dash in the .md
    assert set(default_patch_rows(frame)["variant"]) == {"tau1-all", "tau0.8-all"}


def test_the_cheap_measurement_compares_the_bias_choice_with_tau(tmp_path) -> None:
    """The verb on real MPNet (two short windows per bin): both changes are there and differ."""
    from tsdcls.common.io import read_csv, read_provenance
    from tsdcls.common.job import Job
    from tsdcls.tempscale.position_bias import measure, run_position_bias_effect

    cfg = {"enabled": True, "model": "mpnet", "tau": 0.8, "windows_per_bin": 2, "bins": [[8, 32], [64, 96]],
           "sources": ["wikipedia", "shakespeare"], "batch_size": 2}  # fmt: skip
    job = Job(stage="tempscale", config={"scale": "test", "seed": 0, "position_bias_effect": cfg},
              outputs={"effect": tmp_path / "effect.csv"})
    run_position_bias_effect(job)
    frame = read_csv(tmp_path / "effect.csv")
    assert list(frame["bin"]) == ["8-32", "64-96"] and (frame["n_texts"] == 2).all()
    for column in ("change_tau", "change_tau_unscaled", "change_bias"):
        assert (frame[column] > 1e-3).all() and (frame[column] < 2).all()
    assert (frame["change_tau"] != frame["change_tau_unscaled"]).all()
    assert (frame["bias_to_tau_ratio_min"] <= frame["bias_to_tau_ratio"]).all()
    assert read_provenance(tmp_path / "effect.csv")["cpu_seconds"] > 0
    with pytest.raises(ConfigError, match=r"position_bias_effect\.model': model 'minilm' has no relative position bias"):
        measure("minilm", cfg, 0, "cpu")
