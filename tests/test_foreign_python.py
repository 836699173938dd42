"""The workflow parses and dry-runs under a Python that has only Snakemake and its SLURM plugin
(no tsdcls, no torch): what a conda user's or a cluster module's Snakemake looks like."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PAPER_PRESET, REPO, copy_workflow, paper_data_overlay

PINS = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.startswith(("snakemake==", "snakemake-executor-plugin-slurm=="))]


@pytest.fixture(scope="session")
def snakemake_only_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the pinned Snakemake and SLURM plugin, nothing else."""
    venv = tmp_path_factory.mktemp("snakemake-only") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", *PINS],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"cannot install {PINS} into a fresh venv: {proc.stderr[-500:]}")
    return venv / "bin"


@pytest.mark.parametrize("preset", [None, "workflow/presets/paper.yaml", "workflow/presets/smoke.yaml"])
def test_dry_run_without_the_package(snakemake_only_python: Path, tmp_path: Path, preset: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{snakemake_only_python}{os.pathsep}/usr/bin{os.pathsep}/bin"
    env.setdefault("SLURM_CONF", "/dev/null")  # the plugin's `scontrol show config` (tests/conftest.py)
    missing = subprocess.run([str(snakemake_only_python / "python"), "-c", "import tsdcls"], capture_output=True,
                             env=env, cwd=tmp_path)
    assert missing.returncode != 0, "the Snakemake-only venv must not see the package"
    workdir = copy_workflow(tmp_path / "run")
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    configfiles = [preset, paper_data_overlay(workdir)] if preset == PAPER_PRESET else [preset] if preset else []
    cmd = [str(snakemake_only_python / "snakemake"), "-n", "--cores", "2", *(["--configfile", *configfiles] if configfiles else [])]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "This was a dry-run" in proc.stdout and "dcls_train" in proc.stdout and "tempscale_evaluate" in proc.stdout
