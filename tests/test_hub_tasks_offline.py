"""Hub tasks (LongEmbed, MTEB English) fail fast and clearly when the run is offline and their
datasets are not in the Hugging Face cache (the cache-served path: test_hub_tasks_cache.py)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import pytest

from tsdcls.common.config import USER_ERROR_EXIT, ConfigError
from tsdcls.tempscale.tasks.hub import LONGEMBED_TASKS, MTEB_ENGLISH, hub_tasks


@pytest.mark.parametrize("task", [LONGEMBED_TASKS[0], "LEMBPasskeyRetrieval"])
def test_hub_task_offline_raises_naming_allow_network_and_task(task: str) -> None:
    import mteb  # noqa: F401  # the check reads mteb's task metadata: time it warm, not mteb's import

    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        hub_tasks([task], [], allow_network=False)
    assert time.perf_counter() - start < 1.0
    assert "allow_network" in str(err.value)
    assert task in str(err.value)


def test_hub_benchmark_offline_raises() -> None:
    with pytest.raises(ConfigError, match="allow_network"):
        hub_tasks([], [MTEB_ENGLISH], allow_network=False)


def test_hub_switch_on_but_hub_offline_env_still_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """allow_network: true does not help when HF_HUB_OFFLINE is set: no doomed download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="LEMBQMSumRetrieval"):
        hub_tasks(["LEMBQMSumRetrieval"], [], allow_network=True)


def test_no_hub_tasks_is_not_an_error() -> None:
    assert hub_tasks([], [], allow_network=False) == []


def test_cli_evaluation_with_hub_task_offline_fails_in_under_20_cpu_s(tmp_path) -> None:
    """The real CLI verb: exit code USER_ERROR_EXIT (no retry), a config error naming allow_network
    and the task, in < 20 s of CPU (no download attempt, no retry loop), and no output file written."""
    config = {
        "seed": 0,
        "scale": "smoke",
        "tasks": {
            "batch_size": 8, "threads": 1, "max_seq_length": None,
            "passkey": {"enabled": False}, "needle": {"enabled": False}, "longdoc": {"enabled": False},
            "lee_sts": {"enabled": False}, "polarity": {"enabled": False}, "newsgroups": {"enabled": False},
            "hub": {"tasks": ["LEMBNarrativeQARetrieval"], "benchmarks": []},
        },
        "ablation": {"models": ["minilm"]},  # what the rule gives one evaluation job
        "variant": {"slug": "tau1-all", "mode": "fixed", "tau": 1.0, "layers": "all"},
    }  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    scores = tmp_path / "scores.csv"
    cmd = [
        sys.executable, "-m", "tsdcls.cli", "tempscale-evaluate", "--config", json.dumps(config),
        "--output", f"scores={scores}", "--output", f"per_item={tmp_path / 'per_item.csv'}",
        "--param", 'model="minilm"',
        "--param", f"mteb_cache={json.dumps(str(tmp_path / 'mteb'))}",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == USER_ERROR_EXIT, proc.stderr[-2000:]
    assert "allow_network" in proc.stderr and "LEMBNarrativeQARetrieval" in proc.stderr
    # CPU seconds, not wall time: on an idle machine they are the wall time, on a shared one
    # the wall clock measures the neighbours (the timeout above still bounds any hang)
    # 20 s: naming the missing dataset and revision reads mteb's task metadata (importing mteb,
    # with torch and transformers, is ~10 CPU s here); a download attempt or retry loop is far more
    assert cpu < 20.0, f"took {cpu:.1f} CPU s ({elapsed:.1f} s wall)"
    print(f"offline hub failure after {cpu:.1f} CPU s, {elapsed:.1f} s wall")
    assert not scores.exists()
