"""Stage configuration as it reaches a job: a JSON section of the validated Snakemake config."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

# Exit status of a job stopped by a ConfigError (a config value or an input file is wrong).
# Rerunning the same job cannot help, so the SLURM profile does not retry this status; every other
# failure (a crash, preemption, a time limit) keeps Python's status 1 or the signal's 128+N.
# 78 is EX_CONFIG of sysexits.h, a status no library in this project exits with.
USER_ERROR_EXIT = 78


class ConfigError(ValueError):
    """A config value is missing or wrong; the message names the key."""


class InputError(ConfigError):
    """An input file is missing, truncated or corrupt; the message names the file and what was expected.

    A ConfigError too: the same input fails the same way on every retry.
    """


def canonical_json(section: Mapping[str, Any]) -> str:
    return json.dumps(section, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(section: Mapping[str, Any]) -> str:
    """Short, stable hash of a config section: equal hashes mean equal settings."""
    return hashlib.sha256(canonical_json(section).encode()).hexdigest()[:16]


def parse_stage_config(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--config is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ConfigError("--config must be a JSON object (a config section)")
    return value


def require(section: Mapping[str, Any], dotted_key: str) -> Any:
    """Look up ``a.b.c`` in a section; a missing key is a ConfigError naming the full key."""
    node: Any = section
    for part in dotted_key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"config key '{dotted_key}' is missing")
        node = node[part]
    return node


def reject_unknown_keys(section: Mapping[str, Any], known: Iterable[str], key: str) -> None:
    """One error naming the first key of config section ``key`` that no setting reads."""
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(f"config key '{key}.{unknown[0]}' is not a known setting (known: {', '.join(sorted(known))})")


def merge_config_files(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """config.yaml plus presets as Snakemake merges ``--configfile``: later files win, nested
    mappings merged key by key (for scripts and benchmarks that read the run's config)."""
    import yaml

    config: dict[str, Any] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            _merge_into(config, yaml.safe_load(handle) or {})
    return config


def _merge_into(target: dict[str, Any], overlay: Mapping[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value
