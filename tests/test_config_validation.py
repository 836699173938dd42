"""Bad configs fail at DAG-build time with the key named; presets and the default validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PAPER_PRESET, REPO, copy_workflow, paper_data_overlay, run_snakemake


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("config"))


def _dry_run_with(workdir: Path, overlay: dict, name: str) -> tuple[int, str]:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(overlay))
    proc = run_snakemake(
        workdir, "-n", configfiles=("workflow/presets/smoke.yaml", str(path)), check=False, timeout=120
    )
    return proc.returncode, proc.stdout + proc.stderr


BAD_CONFIGS = [
    ({"theory": {"enabeld": True}}, "'enabeld' was unexpected"),
    ({"sed": 1}, "'sed' was unexpected"),
    ({"seed": "zero"}, "'zero' is not of type 'integer'"),
    ({"seed": -1}, "-1 is less than the minimum of 0"),
    ({"device": "tpu"}, "'tpu' does not match"),
    ({"theory": {"synthetic": {"lengths": [1, 8]}}}, "1 is less than the minimum of 2"),
    ({"figures": {"dpi": 10}}, "10 is less than the minimum of 50"),
]


def _merged(*overlays: dict) -> dict:
    """config.yaml with overlays merged the way Snakemake merges --configfile files."""
    def merge(base: dict, overlay: dict) -> dict:
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in overlays:
        config = merge(config, overlay)
    return config


@pytest.mark.parametrize(("overlay", "expected"), BAD_CONFIGS)
def test_schema_rejects_bad_config(overlay: dict, expected: str) -> None:
    """The schema itself, in-process (what common.smk runs at parse time)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    smoke = yaml.safe_load((REPO / "workflow/presets/smoke.yaml").read_text())
    validate(_merged(smoke), schema=str(REPO / "workflow/schemas/config.schema.yaml"))  # the good one passes
    with pytest.raises(WorkflowError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        validate(_merged(smoke, overlay), schema=str(REPO / "workflow/schemas/config.schema.yaml"))


def test_bad_config_fails_before_any_job(workdir: Path) -> None:
    """One case end to end: the real snakemake stops at parse time and names the key."""
    overlay, expected = BAD_CONFIGS[0]
    code, output = _dry_run_with(workdir, overlay, "bad")
    assert code != 0
    assert expected in output
    assert "Error validating config file" in output
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "workflow/presets").glob("*.yaml")))
def test_presets_and_default_validate(workdir: Path, preset: str, tmp_path: Path) -> None:
    configfiles = (f"workflow/presets/{preset}",)
    if configfiles[0] == PAPER_PRESET:
        configfiles += (paper_data_overlay(workdir),)
    if preset == "rehearsal.yaml":  # an overlay of the paper preset, on the data its script writes
        configfiles, workdir = (PAPER_PRESET, *configfiles), copy_workflow(tmp_path / "rehearsal")
        script = [sys.executable, "workflow/scripts/write_rehearsal_data.py", "--configfile", "config.yaml", *configfiles]
        written = subprocess.run(script, cwd=workdir, capture_output=True, text=True, timeout=300)
        assert written.returncode == 0, written.stderr[-3000:]
    proc = run_snakemake(workdir, "-n", configfiles=configfiles, check=False, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_each_stage_can_be_switched_off(workdir: Path) -> None:
    stages = ["theory", "tempscale", "dcls", "figures"]
    code, output = _dry_run_with(workdir, {s: {"enabled": False} for s in stages}, "off")
    assert code == 0, output[-3000:]
    from tests.test_rerun_triggers import planned_jobs

    assert planned_jobs(output) == {("all", "")}, output[-3000:]  # nothing but the empty target


# --- checks against the file system, before any job (tsdcls.common.preflight) -------------------
PREFLIGHT_CASES = [
    ({"dcls": {"data": {"root": "/nonexistent"}}}, "config key 'dcls.data.root': /nonexistent is not a folder"),
    ({"tempscale": {"models": ["minilmm"]}}, "config key 'tempscale.models': model 'minilmm' is neither"),
    ({"tempscale": {"ablation": {"models": ["./no/such/folder"]}}},
     "config key 'tempscale.ablation.models': model './no/such/folder' folder does not exist"),
    ({"tempscale": {"ablation": {"position_bias": {"taus": [0.8], "models": ["minilm"]}}}},
     "config key 'tempscale.ablation.position_bias.models': model 'minilm' (model_type bert) has no relative position bias"),
    ({"resources": {"rules": {"dcls_train": {"gpus": 2}}}}, "'resources.rules.dcls_train.gpus' asks for 2 GPU(s)"),
    ({"dcls": {"data": {"dataset": "imagefolder", "root": "/tmp"}}}, "config key 'dcls.data.root': /tmp/train does not exist"),
    ({"tempscale": {"tasks": {"hub": {"tasks": ["LEMBPaskeyRetrieval"]}}}},
     "config key 'tempscale.tasks.hub.tasks': 'LEMBPaskeyRetrieval' is not a task of mteb 2.26.24 (closest: LEMBPasskeyRetrieval"),
    ({"tempscale": {"tasks": {"hub": {"benchmarks": ["MTEB(eng,v2)"]}}}},
     "config key 'tempscale.tasks.hub.benchmarks': 'MTEB(eng,v2)' is not a benchmark of mteb 2.26.24 (closest: MTEB(eng, v2)"),
]


@pytest.mark.parametrize(("overlay", "expected"), PREFLIGHT_CASES)
def test_preflight_names_the_key(overlay: dict, expected: str) -> None:
    from tsdcls.common.preflight import problems

    smoke = yaml.safe_load((REPO / "workflow/presets/smoke.yaml").read_text())
    found = problems(_merged(smoke, overlay))
    assert any(expected in line for line in found) and all(line.startswith("config key '") for line in found), found
    assert not problems(_merged(smoke)), "the smoke preset itself must pass"


def test_preflight_rejects_a_wrong_data_root_before_any_job(workdir: Path) -> None:
    code, output = _dry_run_with(workdir, PREFLIGHT_CASES[0][0], "root")
    assert code != 0 and PREFLIGHT_CASES[0][1] in output
    assert not (workdir / "results").exists()


def test_a_broken_published_numbers_file_fails_before_any_job(tmp_path: Path) -> None:
    """data/published_numbers.yaml is checked against its JSON schema while the workflow parses."""
    workdir = copy_workflow(tmp_path / "run")
    published = workdir / "data/published_numbers.yaml"
    data = yaml.safe_load(published.read_text())
    data["dcls_convnext"][0]["top1_dcls"] = "82.5%"
    published.write_text(yaml.safe_dump(data))
    proc = run_snakemake(workdir, "-n", configfiles=("workflow/presets/smoke.yaml",), check=False, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "data/published_numbers.yaml problems, found before any job started" in output
    assert "key 'dcls_convnext[0].top1_dcls': '82.5%' is not of type 'number'" in output
    assert not (workdir / "results").exists()


def test_measured_alpha_law_without_the_theory_stage_fails_before_any_job(workdir: Path) -> None:
    """'power-measured' reads alpha from the theory stage: with theory off the run stops at parse time."""
    overlay = {"theory": {"enabled": False}, "tempscale": {"ablation": {"tau_laws": {"laws": ["power-measured"]}}}}
    code, output = _dry_run_with(workdir, overlay, "measured")
    assert code != 0
    assert "'tempscale.ablation.tau_laws.laws' has 'power-measured'" in output and "theory.enabled is false" in output
    code, output = _dry_run_with(workdir, {"theory": {"enabled": False}}, "theory-off")  # the smoke laws need no theory
    assert code == 0, output[-2000:]


def test_measured_alpha_law_needs_every_ablation_models_alpha(workdir: Path) -> None:
    """One model's alpha is never applied to another: an ablation model the theory stage does not
    measure stops the run at parse time, naming the key that adds it."""
    laws = {"tau_laws": {"laws": ["power-measured"]}}
    overlay = {"tempscale": {"ablation": {"models": ["minilm", "mpnet"], **laws}}}
    code, output = _dry_run_with(workdir, overlay, "alpha-missing")
    assert code != 0 and "theory.real_attention.alpha_models" in output and "['mpnet']" in output
    overlay["theory"] = {"real_attention": {"alpha_models": ["mpnet"]}}
    code, output = _dry_run_with(workdir, overlay, "alpha-measured")
    assert code == 0, output[-2000:]
