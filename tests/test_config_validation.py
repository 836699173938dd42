"""Bad configs fail at DAG-build time with the key named; presets and the default validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_workflow, run_snakemake


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


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        ({"theory": {"enabeld": True}}, "'enabeld' was unexpected"),
        ({"sed": 1}, "'sed' was unexpected"),
        ({"seed": "zero"}, "'zero' is not of type 'integer'"),
        ({"seed": -1}, "-1 is less than the minimum of 0"),
        ({"device": "tpu"}, "'tpu' does not match"),
        ({"theory": {"synthetic": {"lengths": [1, 8]}}}, "1 is less than the minimum of 2"),
    ],
)
def test_bad_config_fails_before_any_job(workdir: Path, overlay: dict, expected: str) -> None:
    code, output = _dry_run_with(workdir, overlay, "bad")
    assert code != 0
    assert expected in output
    assert "Error validating config file" in output
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "workflow/presets").glob("*.yaml")))
def test_presets_and_default_validate(workdir: Path, preset: str) -> None:
    proc = run_snakemake(
        workdir, "-n", configfiles=(f"workflow/presets/{preset}",), check=False, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_each_stage_can_be_switched_off(workdir: Path) -> None:
    stages = ["theory", "tempscale", "dcls", "figures"]
    code, output = _dry_run_with(workdir, {s: {"enabled": False} for s in stages}, "off")
    assert code == 0, output[-3000:]
    assert "Nothing to be done" in output or "total                1" in output or "all" in output
    for rule in ("theory_synthetic", "figure_theory_attenuation"):
        assert rule not in output
