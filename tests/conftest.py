"""Shared fixtures: the repository root and one real smoke run of the whole DAG per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Lines tests want in the CI log even when they pass (printed in pytest's terminal summary).
SUMMARY_LINES: list[str] = []
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
    for name in ("workflow", "envs", "data"):  # data/: published numbers the tables cite
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


PAPER_PRESET = "workflow/presets/paper.yaml"


def paper_data_overlay(workdir: Path) -> str:
    """An overlay pointing the paper preset's ImageNet root at a small ImageFolder in ``workdir``
    (10 wnid classes, one JPEG each per split; written by the rehearsal's layout writer). The
    preset leaves the root for the user to set and the workflow checks it at parse time.
    Returns the overlay's file name, to pass after the paper preset."""
    from tsdcls.dcls.layouts import LayoutSpec, write_training_folder

    root = workdir / "imagenet-small"
    if not root.is_dir():
        write_training_folder(root, LayoutSpec(classes=10))
    (workdir / "paper-data.yaml").write_text(f"dcls:\n  data:\n    root: {root}\n")
    return "paper-data.yaml"


def run_snakemake(
    workdir: Path,
    *args: str,
    configfiles: tuple[str, ...] = (SMOKE_PRESET,),
    timeout: int = 900,
    check: bool = True,
    wrapper: list[str] | tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """Real snakemake in ``workdir``; ``configfiles`` overlay config.yaml in order (one flag)."""
    cmd = [*wrapper, *snakemake_cmd(), "--cores", "2", *args]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    proc = subprocess.run(cmd, cwd=workdir, env=workflow_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


NETWORK_TRACE = "network-trace.log"


def network_guard(workdir: Path, trace: bool = True, loopback: bool = False) -> list[str]:
    """Wrap a run so it cannot reach, and (``trace``) we can see any try to reach, the network.

    `unshare --net` gives the run a network namespace with no interface up (``loopback``: only
    `lo` up, for torchrun's local rendezvous); `strace` logs every connect() of every process
    (read by tests/test_offline.py). Either is skipped where the machine lacks it (the offline
    test then skips with the reason).
    """
    prefix: list[str] = []
    if shutil.which("scontrol") and not os.environ.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").exists():
        # The SLURM executor plugin runs `scontrol show config` whenever snakemake loads its
        # plugins, even for a local run; with no slurm.conf (the SLURM test installs the client
        # but writes its config elsewhere) slurm falls back to a DNS SRV lookup. An empty
        # config file makes scontrol fail at once instead. Not the pipeline's traffic.
        prefix += ["env", "SLURM_CONF=/dev/null"]
    if shutil.which("unshare") and subprocess.run(["unshare", "--net", "true"]).returncode == 0 and (
            not loopback or shutil.which("ip")):
        prefix += ["unshare", "--net"]
        if loopback:
            prefix += ["sh", "-c", 'ip link set lo up && exec "$@"', "network-guard"]
    if trace and shutil.which("strace"):
        prefix += ["strace", "-f", "--seccomp-bpf", "-e", "trace=connect", "-o", str(workdir / NETWORK_TRACE)]
    return prefix


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the smoke DAG once with the real snakemake; tests read (never modify) its results."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    run_snakemake(workdir, timeout=1500, wrapper=network_guard(workdir))
    return workdir


# Fixtures that run real end-to-end work (the smoke DAG, SLURM daemons): every test
# that uses one, directly or through another fixture, is `slow`, so `make test-fast` skips it
# (a few tests that start a real end-to-end subprocess carry the marker themselves).
SLOW_FIXTURES = {"smoke_run", "cluster_dir", "snakemake_only_python", "rehearsal"}


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ANN001 - pytest hook
    """Mark slow by what a test uses (one hook), not by hand."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest hook
    if SUMMARY_LINES:
        terminalreporter.section("tsdcls: what the end-to-end tests saw")
        for line in SUMMARY_LINES:
            terminalreporter.write_line(line)
