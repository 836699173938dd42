"""The workflow passes Snakemake's own linter (functions apart from rules, no absolute paths)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import copy_workflow, run_snakemake


def test_snakemake_lint_is_clean(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "lint")
    proc = run_snakemake(workdir, "--lint", configfiles=(), check=False, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Lints for" not in output, output[-4000:]
