"""What one Snakemake job hands to a stage function: its config section, paths, seed, device."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsdcls.common.config import ConfigError
from tsdcls.common.provenance import Provenance


@dataclass
class Job:
    """One rule's call of one stage function. ``inputs``/``outputs`` are the rule's named files."""

    stage: str
    config: dict[str, Any]
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    inputs: dict[str, Path] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.provenance = Provenance(self.stage, self.config, self.seed, self.device)

    def output(self, name: str) -> Path:
        if name not in self.outputs:
            raise ConfigError(f"rule gave no output named '{name}' (has: {sorted(self.outputs)})")
        self.outputs[name].parent.mkdir(parents=True, exist_ok=True)
        return self.outputs[name]

    def input(self, name: str) -> Path:
        if name not in self.inputs:
            raise ConfigError(f"rule gave no input named '{name}' (has: {sorted(self.inputs)})")
        return self.inputs[name]

    def prov(self, **extra: Any) -> dict[str, Any]:
        """Provenance dict for a file written now (end time = now), with optional extra fields."""
        return {**self.provenance.as_dict(), **extra}
