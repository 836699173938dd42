"""DCLS ablation aggregation: paired differences against dense of the same seed, tap shifts."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from tsdcls.dcls.ablation import _shift_columns, markdown_table, paired_vs_dense


def _runs() -> pd.DataFrame:
    rows = []
    for seed, (dense, v0) in enumerate([(80.0, 81.0), (81.0, 81.5), (82.0, 83.0)]):
        for variant, top1 in (("dense", dense), ("dcls_v0", v0)):
            rows.append({"family": "convnext", "variant": variant, "kernel_count": 24, "dks": 9, "seed": seed,
                         "top1": top1})
    rows.append({"family": "convnext", "variant": "dcls_v0", "kernel_count": 24, "dks": 9, "seed": 9,
                 "top1": 99.0})  # no dense run of seed 9: never paired
    return pd.DataFrame(rows)


def test_paired_difference_matches_scipys_paired_t_interval() -> None:
    table = paired_vs_dense(_runs()).set_index("variant")
    row = table.loc["dcls_v0"]
    reference = stats.ttest_rel([81.0, 81.5, 83.0], [80.0, 81.0, 82.0]).confidence_interval(0.95)
    assert row["n_pairs"] == 3 and row["delta_vs_dense"] == pytest.approx(2.5 / 3)
    assert row["delta_ci_low"] == pytest.approx(reference.low) and row["delta_ci_high"] == pytest.approx(reference.high)
    assert table.loc["dense", "delta_vs_dense"] == 0.0 and math.isnan(table.loc["dense", "delta_ci_low"])


def test_shift_columns_are_per_stage_and_missing_for_dense() -> None:
    assert _shift_columns({"stages.0": 0.1, "stages.1": 0.3, "all": 0.2}) == {
        "position_shift": 0.2, "position_shift_stages.0": 0.1, "position_shift_stages.1": 0.3}
    assert math.isnan(_shift_columns(None)["position_shift"])


def test_table_prints_the_paired_interval() -> None:
    from tsdcls.dcls.ablation import aggregate

    runs = _runs()[lambda f: f["seed"] < 9].assign(
        params=1000, dcls_layers=0, taps=None, top5=99.0, robust_top1=70.0, gmacs=0.1, img_per_s=10.0,
        step_time_ms=1.0, train_seconds=1.0, steps=10, position_shift=0.25)
    text = markdown_table(aggregate(runs), "test")
    assert "+0.83 [" in text and "0.25" in text
