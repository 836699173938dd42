"""mteb's own hub task classes (LongEmbed + one task per type of MTEB(eng, v2)) run offline through
the real `tempscale-evaluate` verb, their data read from datasets laid out in the hub cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mteb
import pandas as pd
import pytest

from tests.hub_layout import DATASETS, model_files, write_repo
from tsdcls.common.assets import minilm_path
from tsdcls.common.config import USER_ERROR_EXIT
from tsdcls.tempscale.tasks.hub import LONGEMBED_TASKS, MTEB_ENGLISH, dataset_entry

pytestmark = pytest.mark.slow  # real snakemake / mteb end to end (make test-fast skips it)

HUB_ID = "tsdcls-test/all-MiniLM-L6-v2-hub"
REVISION = "0123456789abcdef0123456789abcdef01234567"
MTEB_PICKS = [name for name in DATASETS if not name.startswith("LEMB")]
TASKS = [*LONGEMBED_TASKS, *MTEB_PICKS]


def test_picks_cover_every_task_type_of_mteb_english() -> None:
    types = {task.metadata.type for task in mteb.get_benchmark(MTEB_ENGLISH).tasks}
    picked = {task.metadata.type for task in mteb.get_tasks(tasks=MTEB_PICKS)}
    benchmark_names = {task.metadata.name for task in mteb.get_benchmark(MTEB_ENGLISH).tasks}
    assert set(MTEB_PICKS) <= benchmark_names
    assert picked == types, f"missing types: {types - picked}"


def lay_out_cache(home: Path, tasks: list[str]) -> None:
    """The MiniLM repository and every task's dataset at mteb's pinned revision."""
    hub = home / "hub"
    write_repo(hub, "model", HUB_ID, REVISION, model_files(minilm_path()))
    done = set()
    for task in mteb.get_tasks(tasks=tasks):
        entry = dataset_entry(task)
        if entry not in done:
            builder = DATASETS.get(task.metadata.name) or DATASETS["LEMBNarrativeQARetrieval"]  # dwzhu/LongEmbed
            write_repo(hub, "dataset", entry.repo_id, entry.revision, builder())
            done.add(entry)


def evaluate_cmd(tmp_path: Path, tasks: list[str]) -> list[str]:
    off = {"enabled": False}
    config = {
        "seed": 0, "scale": "smoke", "model_revisions": {HUB_ID: REVISION},
        "tasks": {"batch_size": 8, "threads": 1, "max_seq_length": 32, "passkey": off, "needle": off, "longdoc": off,
                  "lee_sts": off, "polarity": off, "newsgroups": off, "hub": {"tasks": tasks, "benchmarks": []}},
        "ablation": {"models": [HUB_ID]},  # what the rule gives one evaluation job
        "variant": {"slug": "tau1-all", "mode": "fixed", "tau": 1.0, "layers": "all"},
    }  # fmt: skip
    return [
        sys.executable, "-m", "tsdcls.cli", "tempscale-evaluate", "--config", json.dumps(config),
        "--output", f"scores={tmp_path / 'scores.csv'}", "--output", f"per_item={tmp_path / 'per_item.csv'}",
        "--param", f"model={json.dumps(HUB_ID.replace('/', '_'))}",
        "--param", f"mteb_cache={json.dumps(str(tmp_path / 'mteb'))}",
    ]  # fmt: skip


def offline_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_hub_task_classes_evaluate_offline_from_the_cache(tmp_path: Path) -> None:
    home = tmp_path / "hf"
    lay_out_cache(home, TASKS)
    proc = subprocess.run(evaluate_cmd(tmp_path, TASKS), capture_output=True, text=True, timeout=600, env=offline_env(home))
    assert proc.returncode == 0, proc.stderr[-4000:]
    scores = pd.read_csv(tmp_path / "scores.csv", comment="#")
    for task in mteb.get_tasks(tasks=TASKS):
        rows = scores[scores["task"] == task.metadata.name]
        assert set(rows["split"]) == set(task.metadata.eval_splits), task.metadata.name
        assert set(rows["metric"]) == {task.metadata.main_score}
        assert set(rows["task_type"]) == {task.metadata.type}
        assert set(rows["revision"]) == {task.metadata.dataset["revision"]}  # mteb's pin, not a local path
        assert rows["score"].notna().all() and rows["score"].between(-1, 1).all(), rows
    # the tiny retrieval sets are built so each query names its own document's topic
    passkey = scores[scores["task"] == "LEMBPasskeyRetrieval"]
    assert (passkey["score"] > 0).all()
    assert scores["mteb_model_name"].eq(HUB_ID).all()


@pytest.mark.parametrize("task", ["LEMBNeedleRetrieval"])
def test_missing_dataset_fails_fast_naming_it_and_stage(tmp_path: Path, task: str) -> None:
    home = tmp_path / "hf"
    write_repo(home / "hub", "model", HUB_ID, REVISION, model_files(minilm_path()))  # model only
    proc = subprocess.run(evaluate_cmd(tmp_path, [task]), capture_output=True, text=True, timeout=120, env=offline_env(home))
    assert proc.returncode == USER_ERROR_EXIT, proc.stderr[-3000:]
    last = [line for line in proc.stderr.splitlines() if "config error" in line]
    assert len(last) == 1, proc.stderr[-3000:]
    entry = dataset_entry(mteb.get_task(task))
    for part in (task, entry.repo_id, entry.revision, "snakemake stage", "allow_network"):
        assert part in last[0], last[0]
    assert not (tmp_path / "scores.csv").exists()
