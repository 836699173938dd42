"""Theory stage: the closed-form bound, the scaling laws, and the fail-closed check verbs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdcls.common.config import ConfigError
from tsdcls.common.io import read_csv, read_json, read_provenance, write_json
from tsdcls.common.job import Job
from tsdcls.common.lowpass import attention_from_logits, high_frequency_gain, small_logit_gain
from tsdcls.theory import bounds, logits
from tsdcls.theory.checks import run_summary, run_synthetic_checks
from tsdcls.theory.real_attention import logit_half_range
from tsdcls.theory.record import CheckFailed
from tsdcls.theory.synthetic import SyntheticSettings

FAST = settings(max_examples=40, deadline=None)

TINY_SYNTHETIC = {
    "lengths": [8, 32, 64, 128], "trials": 2, "logit_std": [0.25], "taus": [1.0, 0.8], "gammas": [1.0],
    "dim": 4, "n_ref": 32, "bound_max_length": 64, "tau_restore_max_length": 64, "bootstrap_draws": 20,
}
SYNTHETIC_OUTPUTS = ("gains", "bounds", "slopes", "tau_restore", "checks")


@FAST
@given(n=st.integers(2, 48), gamma=st.floats(0.0, 8.0), tau=st.floats(0.25, 2.0),
       family=st.sampled_from(sorted(logits.BOUNDED_FAMILIES)), seed=st.integers(0, 1000))
def test_closed_form_bound_holds_for_bounded_logits(n: int, gamma: float, tau: float, family: str, seed: int) -> None:
    scores = logits.BOUNDED_FAMILIES[family](n, gamma, torch.Generator().manual_seed(seed))
    assert float(scores.abs().max()) <= gamma * (1 + 1e-12)
    sigma = float(high_frequency_gain(attention_from_logits(scores, tau)))
    assert sigma <= bounds.bounded_logit_gain_bound(n, gamma, tau) * (1 + 1e-9) + 1e-12


@FAST
@given(n=st.integers(2, 4096), g=st.floats(0.0, 12.0))
def test_bound_shape(n: int, g: float) -> None:
    bound = bounds.bounded_logit_gain_bound(n, g)
    assert bound <= bounds.bounded_logit_gain_bound_nfree(g) * (1 + 1e-12) + 1e-15
    assert bound <= math.sqrt(2 * (n - 1)) + 1e-12
    if n >= 4:  # the attainable tanh(g) (rank-one example, n even) is never above the bound
        assert bounds.bounded_logit_lower_example(g) <= bound * (1 + 1e-12) + 1e-15


def test_bound_small_g_is_sqrt2_g() -> None:
    assert math.isclose(bounds.bounded_logit_gain_bound(10**6, 1e-4), math.sqrt(2) * 1e-4, rel_tol=1e-3)


@pytest.mark.parametrize("n, gamma", [(16, 0.3), (64, 1.5)])
def test_rank_one_sign_logits_attain_tanh(n: int, gamma: float) -> None:
    scores = logits.rank_one_sign(n, gamma, torch.Generator().manual_seed(0))
    sigma = float(high_frequency_gain(attention_from_logits(scores)))
    assert math.isclose(sigma, math.tanh(gamma), rel_tol=1e-10)


def test_two_target_attention_amplifies_high_frequencies() -> None:
    """sigma_a <= 1 is false in general: grouped peaked attention reaches ~sqrt(n/2)."""
    n = 64
    sigma = float(high_frequency_gain(attention_from_logits(logits.two_target(n, 20.0, torch.Generator().manual_seed(0)))))
    assert sigma > 0.95 * math.sqrt(n / 2)
    assert sigma <= bounds.bounded_logit_gain_bound(n, 20.0)


def test_gaussian_law_limits() -> None:
    assert math.isclose(bounds.gaussian_logit_gain(256, 1e-3), small_logit_gain(256, 1e-3), rel_tol=1e-5)
    assert math.isclose(bounds.tau_restoring_gain_gaussian(64, 64, 0.7), 1.0)
    assert math.isclose(bounds.tau_restoring_gain_gaussian(512, 64, 1e-4), math.sqrt(64 / 512), rel_tol=1e-4)


def test_fit_loglog_slope_recovers_power_law() -> None:
    lengths = [8, 32, 128, 512]
    slope, intercept = bounds.fit_loglog_slope(lengths, [3.0 * n**-0.5 for n in lengths])
    assert math.isclose(slope, -0.5, abs_tol=1e-12) and math.isclose(math.exp(intercept), 3.0, rel_tol=1e-12)


def test_logit_half_range_is_read_off_the_probabilities() -> None:
    scores = torch.tensor([[[0.0, 1.0, -2.0], [3.0, 3.0, 3.0], [0.5, -0.5, 0.0]]], dtype=torch.float64)
    assert torch.allclose(logit_half_range(attention_from_logits(scores)), torch.tensor([1.5], dtype=torch.float64))


def test_wiki_text_strips_markup() -> None:
    from tsdcls.common.wikipedia import plain_text, strip_markup

    text = plain_text(strip_markup("'''Albedo''' is the [[reflectance|diffuse reflection]] of {{cite|x}}\n\n light."))
    assert text == "Albedo is the diffuse reflection of light."


def test_wiki_dump_named_in_the_config_must_exist(tmp_path) -> None:
    from tsdcls.common.wikipedia import dump_path

    with pytest.raises(ConfigError, match="config key 'theory.real_attention.wiki_dump': .*nope.bz2 does not exist"):
        dump_path(str(tmp_path / "nope.bz2"), key="theory.real_attention.wiki_dump")


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="theory.synthetic.lengthz"):
        SyntheticSettings.from_config({**TINY_SYNTHETIC, "lengthz": [1]})
    with pytest.raises(ConfigError, match="theory.synthetic.taus"):
        SyntheticSettings.from_config({**TINY_SYNTHETIC, "taus": [0.8]})


def _synthetic_job(tmp_path: Path) -> Job:
    return Job(stage="theory", config={"synthetic": TINY_SYNTHETIC, "scale": "test"}, seed=0,
               outputs={name: tmp_path / f"{name}.out" for name in SYNTHETIC_OUTPUTS})


def test_synthetic_checks_pass_and_carry_provenance(tmp_path: Path) -> None:
    job = _synthetic_job(tmp_path)
    run_synthetic_checks(job)
    payload = read_json(job.outputs["checks"])
    assert payload["all_hold"] and {c["name"] for c in payload["checks"]} == {
        "hc_inequality", "closed_form_bound", "gaussian_slope", "gaussian_gain_law",
        "gain_rises_as_tau_falls", "tau_restores_gain"}
    assert all(c["holds"] and c["worst_margin"] >= 0 for c in payload["checks"])
    gains = read_csv(job.outputs["gains"])
    assert {"n", "logit_std", "tau", "g", "trial", "sigma_a", "gaussian_law"} <= set(gains.columns)
    assert read_provenance(job.outputs["gains"])["scale"] == "test"


def test_wrong_bound_fails_the_job_and_writes_no_checks(tmp_path: Path) -> None:
    job = _synthetic_job(tmp_path)

    def too_small(n: int, gamma: float, tau: float) -> float:
        return 0.25 * bounds.bounded_logit_gain_bound(n, gamma, tau)

    with pytest.raises(CheckFailed, match="closed_form_bound"):
        run_synthetic_checks(job, bound_fn=too_small)
    assert not job.outputs["checks"].exists()


def test_summary_verb_exits_nonzero_on_a_violated_check(tmp_path: Path) -> None:
    good = {"name": "fine", "holds": True, "worst_margin": 0.1, "details": {}}
    bad = {"name": "broken_claim", "holds": True, "worst_margin": -0.2, "details": {}}  # flag lies
    write_json(tmp_path / "a.json", {"checks": [good]}, {"stage": "test"})
    write_json(tmp_path / "b.json", {"checks": [bad]}, {"stage": "test"})
    out = tmp_path / "checks.json"
    cmd = [sys.executable, "-m", "tsdcls.cli", "theory-summary", "--config", json.dumps({"scale": "test"}),
           "--input", f"a={tmp_path / 'a.json'}", "--input", f"b={tmp_path / 'b.json'}", "--output", f"checks={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "broken_claim" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".checks.json*"))

    run_summary(Job(stage="theory", config={}, inputs={"a": tmp_path / "a.json"}, outputs={"checks": out}))
    merged = read_json(out)
    assert merged["all_hold"] and merged["checks"][0]["source"] == "a" and "provenance" in merged
