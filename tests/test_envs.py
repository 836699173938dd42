"""envs/*.yaml (for conda users) pin exactly what requirements.txt pins; rules use existing envs."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_env_files_match_requirements() -> None:
    required = _pins((REPO / "requirements.txt").read_text().splitlines())
    env_files = sorted((REPO / "envs").glob("*.yaml"))
    assert env_files
    for env_file in env_files:
        env = yaml.safe_load(env_file.read_text())
        pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
        pins = _pins(pip_section)
        assert pins, f"{env_file.name}: no pinned pip packages"
        for name, version in pins.items():
            assert name in required, f"{env_file.name}: {name} is not in requirements.txt"
            assert required[name] == version, f"{env_file.name}: {name}=={version}, requirements.txt has {required[name]}"
        assert "python=3.11" in env["dependencies"], env_file.name


def test_every_conda_directive_points_at_an_env_file() -> None:
    rule_files = sorted((REPO / "workflow/rules").glob("*.smk"))
    referenced = set()
    for rule_file in rule_files:
        for match in re.finditer(r'conda:\s*\n\s*"([^"]+)"', rule_file.read_text()):
            target = (rule_file.parent / match.group(1)).resolve()
            assert target.exists(), f"{rule_file.name}: conda env {match.group(1)} does not exist"
            referenced.add(target.name)
    assert referenced, "no rule declares a conda env"
