"""Theory outputs of the shared smoke DAG run (tests/conftest.py::smoke_run): read, never rerun."""

from __future__ import annotations

from pathlib import Path

from tsdcls.common.io import read_csv, read_json, read_provenance

EXPECTED_CHECKS = {
    "hc_inequality", "closed_form_bound", "gaussian_slope", "gaussian_gain_law", "gain_rises_as_tau_falls",
    "tau_restores_gain", "real_closed_form_bound",
}  # only mathematics gates a run: the real-attention trends are data (summary/slopes CSVs)


def test_theory_checks_all_hold(smoke_run: Path) -> None:
    payload = read_json(smoke_run / "results/theory/checks.json")
    assert payload["all_hold"] is True
    assert {check["name"] for check in payload["checks"]} == EXPECTED_CHECKS
    for check in payload["checks"]:
        assert check["holds"] is True and check["worst_margin"] >= 0, check["name"]
        assert isinstance(check["details"], dict) and check["details"], check["name"]
    provenance = payload["provenance"]
    assert provenance["stage"] == "theory" and provenance["scale"] == "smoke"
    assert set(provenance["sources"]) == {"synthetic", "real"}


def test_theory_tables_have_documented_columns(smoke_run: Path) -> None:
    results = smoke_run / "results/theory"
    columns = {
        "synthetic_gain.csv": {"n", "logit_std", "tau", "g", "trial", "sigma_a", "gaussian_law", "small_logit_law"},
        "bound_check.csv": {"n", "family", "gamma", "tau", "sigma_a", "bound", "tightness", "margin"},
        "synthetic_slopes.csv": {"logit_std", "tau", "slope", "bootstrap_se", "tolerance"},
        "tau_restore.csv": {"n", "n_ref", "logit_std", "tau_numeric", "tau_gaussian_law", "tau_small_logit"},
        "real_attention_gain.csv": {"text", "title", "n", "layer", "tau", "sigma_a", "realized_gain",
                                    "sigma_a_nosink", "top_key_share", "sink_mass", "typical_gain"},
        "real_attention_slopes.csv": {"quantity", "layer", "tau", "estimate", "ci_low", "ci_high", "n_texts"},
        "real_attention_summary.csv": {"quantity", "layer", "n", "tau", "estimate", "ci_low", "ci_high", "n_texts"},
        "tau_law.csv": {"model", "layer", "quantity", "estimate", "ci_low", "ci_high", "small_logit_alpha", "n_ref"},
    }
    for name, expected in columns.items():
        frame = read_csv(results / name)
        assert expected <= set(frame.columns), name
        assert len(frame) > 0 and frame.attrs["provenance"]["scale"] == "smoke", name
    real = read_csv(results / "real_attention_gain.csv")
    assert (real["realized_gain"] <= real["sigma_a"] + 1e-9).all()  # gain on actual inputs <= worst case
    assert (real["typical_gain"] <= real["sigma_a"] + 1e-9).all()  # RMS singular value <= the largest
    for name in ("real_attention_slopes.csv", "real_attention_summary.csv", "tau_law.csv"):
        table = read_csv(results / name)
        assert (table["ci_low"] <= table["estimate"] + 1e-9).all() and (table["estimate"] <= table["ci_high"] + 1e-9).all()
    law = read_csv(results / "tau_law.csv")
    assert "all" in set(law["layer"].astype(str)) and (law["small_logit_alpha"] == 0.5).all()


def test_theory_figure_exists_with_provenance(smoke_run: Path) -> None:
    for suffix in (".png", ".pdf"):
        path = smoke_run / f"results/figures/theory_attenuation{suffix}"
        assert path.stat().st_size > 10_000
        assert read_provenance(path)["scale"] == "smoke"
