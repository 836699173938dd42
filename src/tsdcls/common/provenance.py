"""Provenance stamped into every result file: what produced it, with which settings, where."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsdcls.common.config import config_hash

TRACKED_PACKAGES = (
    "tsdcls",
    "torch",
    "numpy",
    "pandas",
    "matplotlib",
    "transformers",
    "sentence-transformers",
    "mteb",
    "timm",
    "snakemake",
)


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@functools.cache
def git_commit() -> str:
    """The commit of the checkout this package runs from (env TSDCLS_GIT_COMMIT wins), or 'unknown'."""
    if os.environ.get("TSDCLS_GIT_COMMIT"):
        return os.environ["TSDCLS_GIT_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        commit = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe_device(device: str | None = None) -> str:
    """Human-readable device: 'cpu (N threads)' or the CUDA device name."""
    if "torch" not in sys.modules and not (device or "").startswith("cuda"):
        # a job that never loaded torch (figures, tables) does not pay its import for this line
        return f"cpu ({os.cpu_count()} cores, {platform.machine()}, torch not loaded)"
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "cpu"
    if device and device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class Provenance:
    """Start one per job; pass ``as_dict()`` to every writer in common.io."""

    stage: str
    config: Mapping[str, Any]
    seed: int
    device: str = "cpu"
    started_at: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "config_hash": config_hash(self.config),
            "seed": self.seed,
            "git_commit": git_commit(),
            "device": describe_device(self.device),
            "packages": package_versions(),
            "host": platform.node(),
            "started_at": self.started_at,
            "finished_at": _now(),
            "scale": self.config.get("scale", "unknown"),  # every job's config carries it (common.smk)
            **self.extra,
        }
