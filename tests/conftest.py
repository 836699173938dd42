"""Shared fixtures: the repository root and one real smoke run of the whole DAG per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE_PRESET = "workflow/presets/smoke.yaml"


def snakemake_cmd() -> list[str]:
    """The venv's snakemake, run with the venv first on PATH so rules find its python."""
    return [str(Path(sys.executable).parent / "snakemake")]


def workflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("TSDCLS_GIT_COMMIT", _git_commit())
    return env


def _git_commit() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def copy_workflow(dest: Path) -> Path:
    """A fresh working directory holding the workflow (the package itself is installed -e)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("workflow", "envs"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def run_snakemake(workdir: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*snakemake_cmd(), "--cores", "2", "--configfile", SMOKE_PRESET, *args]
    proc = subprocess.run(cmd, cwd=workdir, env=workflow_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the smoke DAG once with the real snakemake; tests read (never modify) its results."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    run_snakemake(workdir, timeout=1200)
    return workdir
