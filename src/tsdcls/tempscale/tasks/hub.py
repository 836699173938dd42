"""Hub tasks for online users: LongEmbed and MTEB English, by mteb task or benchmark name.

Offline, these fail fast with a ConfigError naming ``allow_network`` and the task, before any
hub client is touched: no download attempt, no retry loop, no hang.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tsdcls.common.config import ConfigError
from tsdcls.common.offline import is_offline

LONGEMBED_TASKS = (
    "LEMBNarrativeQARetrieval",
    "LEMBQMSumRetrieval",
    "LEMBWikimQARetrieval",
    "LEMBSummScreenFDRetrieval",
    "LEMBPasskeyRetrieval",
    "LEMBNeedleRetrieval",
)
MTEB_ENGLISH = "MTEB(eng, v2)"


def require_network(what: str, allow_network: bool) -> None:
    """Raise at once when ``what`` needs the hub but the run is offline."""
    if not allow_network or is_offline():
        raise ConfigError(
            f"config key 'allow_network' is false (or HF_HUB_OFFLINE is set) but {what} loads its "
            "data from the Hugging Face hub. Use the local Tsdcls* tasks offline, or run with "
            "allow_network: true (the paper preset) on a machine with internet access."
        )


def check_hub_access(names: Sequence[str], allow_network: bool) -> None:
    """Fail at once, naming ``allow_network`` and the task, when hub tasks are asked offline."""
    for name in names:
        require_network(f"hub task '{name}' (config key 'tempscale.tasks.hub')", allow_network)


def hub_tasks(task_names: Sequence[str], benchmark_names: Sequence[str], allow_network: bool) -> list[Any]:
    """mteb task objects for hub task names and benchmark names (e.g. 'MTEB(eng, v2)')."""
    if not task_names and not benchmark_names:
        return []
    check_hub_access([*task_names, *benchmark_names], allow_network)
    import mteb

    tasks: list[Any] = []
    if task_names:
        try:
            tasks += list(mteb.get_tasks(tasks=list(task_names)))
        except (KeyError, ValueError) as err:
            raise ConfigError(f"config key 'tempscale.tasks.hub.tasks': {err}") from err
    for name in benchmark_names:
        try:
            tasks += list(mteb.get_benchmark(name).tasks)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"config key 'tempscale.tasks.hub.benchmarks': {err}") from err
    return tasks
