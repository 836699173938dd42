"""The claims ledger: rules decide as written, measures recover known effects, the file validates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from tsdcls.figures import claims
from tsdcls.figures.claims import Estimate, evaluate_claims, load_claims, verdict

SUPERIORITY = {"kind": "superiority", "min_effect": 1.0}
NON_INFERIORITY = {"kind": "non_inferiority", "margin": 1.0}


@pytest.mark.parametrize(("rule", "est", "expected"), [
    (SUPERIORITY, Estimate(2.0, 0.5, 3.5, 5, "pp"), "supported"),
    (SUPERIORITY, Estimate(0.5, 0.1, 0.9, 5, "pp"), "inconclusive"),  # real but below the minimal effect
    (SUPERIORITY, Estimate(-2.0, -3.0, -1.0, 5, "pp"), "contradicted"),
    (SUPERIORITY, Estimate(2.0, -0.1, 4.0, 5, "pp"), "inconclusive"),
    (SUPERIORITY, Estimate(2.0, -math.inf, math.inf, 1, "pp"), "inconclusive"),
    (NON_INFERIORITY, Estimate(-0.2, -0.9, 0.5, 5, "pp"), "supported"),
    (NON_INFERIORITY, Estimate(-2.0, -2.5, -1.5, 5, "pp"), "contradicted"),
    (NON_INFERIORITY, Estimate(-0.5, -1.5, 0.5, 5, "pp"), "inconclusive"),
])
def test_rules_decide_as_written(rule: dict, est: Estimate, expected: str) -> None:
    assert verdict(rule, est) == expected


def test_ledger_validates_against_its_schema_and_names_real_measures() -> None:
    from snakemake.utils import validate

    data = yaml.safe_load((REPO / "data/claims.yaml").read_text())
    validate(data, schema=str(REPO / "workflow/schemas/claims.schema.yaml"))
    ledger = load_claims(REPO / "data/claims.yaml")
    assert {c["measure"] for c in ledger["claims"]} <= set(claims.MEASURES)
    bad = {**data, "claims": [{**data["claims"][0], "rule": {"kind": "superiority"}}]}  # no min_effect
    with pytest.raises(Exception, match="min_effect"):
        validate(bad, schema=str(REPO / "workflow/schemas/claims.schema.yaml"))


def _dcls_metrics(effect: float, seeds: int, noise: float, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for seed in range(seeds):
        shared = rng.normal(70, 3)  # seed-to-seed spread, common to both variants (paired design)
        rows.append({"family": "convnext", "variant": "dense", "kernel_count": 0, "dks": 0, "seed": seed,
                     "top1": shared + rng.normal(0, noise), "robust_top1": shared - 5})
        rows.append({"family": "convnext", "variant": "dcls_v0", "kernel_count": 24, "dks": 9, "seed": seed,
                     "top1": shared + effect + rng.normal(0, noise), "robust_top1": shared - 5 + effect})
    return pd.DataFrame(rows)


def test_paired_dcls_delta_recovers_a_known_effect() -> None:
    rng = np.random.default_rng(0)
    data = {"dcls_metrics": _dcls_metrics(effect=2.0, seeds=8, noise=0.3, rng=rng)}
    est = claims.dcls_paired_delta(data, {"family": "convnext", "variant": "dcls_v0", "baseline": "dense"}, rng)
    assert est.low < 2.0 < est.high and est.high - est.low < 1.0 and est.n == 8
    null = {"dcls_metrics": _dcls_metrics(effect=0.0, seeds=8, noise=0.3, rng=rng)}
    est = claims.dcls_paired_delta(null, {"family": "convnext", "variant": "dcls_v0", "baseline": "dense"}, rng)
    assert verdict({"kind": "superiority", "min_effect": 0.3}, est) != "supported"


def test_task_delta_is_paired_over_items() -> None:
    """Items differ a lot from each other, the variant adds +0.1 to each: a paired CI is tight."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 200)
    items = pd.DataFrame([
        {"model": "m", "variant": v, "task": "TsdclsPasskeyRetrieval", "split": "test_512", "metric": "ndcg_at_10",
         "item": f"q{i}", "value": b + (0.1 if v == "tau0.8-all" else 0.0), "gold": None}
        for v in ("tau1-all", "tau0.8-all") for i, b in enumerate(base)])
    ablation = pd.DataFrame([{"model": "m", "variant": "tau0.8-all", "task": "TsdclsPasskeyRetrieval",
                              "split": "test_512", "metric": "ndcg_at_10", "item_metric": "ndcg_at_10"}])
    data = {"ablation": ablation, "per_item": items, "headline": "tau0.8-all"}
    est = claims.tempscale_task_delta(data, {"task_group": "long"}, rng)
    assert est.value == pytest.approx(10.0) and est.high - est.low < 1e-6
    with pytest.raises(claims.NotTested):
        claims.tempscale_task_delta(data, {"task_group": "short"}, rng)
    # against another variant (a post-hoc fix) instead of tau = 1: the same pairing, its own sign
    fixed = items[items["variant"] == "tau1-all"].assign(variant="whiten-tau1-all", value=lambda f: f["value"] + 0.3)
    data_fix = {**data, "per_item": pd.concat([items, fixed], ignore_index=True)}
    est = claims.tempscale_task_delta(data_fix, {"task_group": "long", "baseline": "whiten-tau1-all"}, rng)
    assert est.value == pytest.approx(-20.0) and est.high - est.low < 1e-6
    with pytest.raises(claims.NotTested, match="mean_center-tau1-all"):
        claims.tempscale_task_delta(data, {"task_group": "long", "baseline": "mean_center-tau1-all"}, rng)


def test_every_claim_gets_a_row_even_with_no_data() -> None:
    ledger = load_claims(REPO / "data/claims.yaml")
    frame = evaluate_claims(ledger, {}, "smoke", seed=0)
    assert list(frame["id"]) == [c["id"] for c in ledger["claims"]]
    assert set(frame["verdict"]) == {"not tested"} and frame["note"].str.len().gt(0).all()


def test_smoke_run_writes_the_ledger(smoke_run) -> None:
    from tsdcls.common.io import read_csv, read_provenance

    frame = read_csv(smoke_run / "results/claims.csv")
    ledger = load_claims(REPO / "data/claims.yaml")
    assert list(frame["id"]) == [c["id"] for c in ledger["claims"]]
    assert set(frame["verdict"]) <= {"supported", "contradicted", "inconclusive", "not tested"}
    assert (frame["verdict"] != "not tested").sum() >= 8 and set(frame["scale"]) == {"smoke"}
    assert read_provenance(smoke_run / "results/claims.csv")["scale"] == "smoke"
    assert (smoke_run / "results/figures/claims_forest.png").stat().st_size > 10_000
