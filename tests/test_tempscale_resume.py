"""Resumable TempScale evaluation: a job started again reuses the tasks it already finished for the
same model variant and settings (real MiniLM, real mteb; evidence: mteb's own result files)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_tempscale_tasks import ABLATION, TINY
from tsdcls.common.io import read_csv
from tsdcls.tempscale.ablation import parse_variant
from tsdcls.tempscale.evaluate import evaluate_variant

OFF = {key: {**TINY[key], "enabled": False} for key in ("passkey", "needle", "longdoc", "polarity", "newsgroups")}


def _config(**enabled: dict) -> dict:
    tasks = copy.deepcopy({**TINY, **OFF, "lee_sts": {"enabled": False, "max_pairs": 40}})
    for key, settings in enabled.items():
        tasks[key] = {**TINY[key], **settings, "enabled": True}
    return {"tasks": tasks, "ablation": ABLATION}


def _result_files(cache: Path) -> dict[str, Path]:
    return {p.stem: p for p in (cache / "results").rglob("Tsdcls*.json")}


def _evaluate(config: dict, cache: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return evaluate_variant("minilm", parse_variant("tau1-all", config), config, 0, "cpu", cache, False)[:2]


def test_started_again_the_evaluation_reuses_finished_tasks_only(tmp_path: Path) -> None:
    cache = tmp_path / "mteb"
    # the "interrupted" job: it finished only the STS task
    scores1, items1 = _evaluate(_config(lee_sts={}), cache)
    sts = _result_files(cache)["TsdclsLeeSTS"]
    written = sts.stat().st_mtime_ns
    # started again with the full task list: STS is reused, classification computed
    scores2, items2 = _evaluate(_config(lee_sts={}, polarity={}), cache)
    files = _result_files(cache)
    assert set(files) == {"TsdclsLeeSTS", "TsdclsPolarityClassification"}
    assert files["TsdclsLeeSTS"].stat().st_mtime_ns == written, "the finished task was computed again"
    assert set(scores2["task"]) == {"TsdclsLeeSTS", "TsdclsPolarityClassification"}
    pd.testing.assert_frame_equal(scores2[scores2["task"] == "TsdclsLeeSTS"].reset_index(drop=True), scores1)
    reused_items = items2[items2["task"] == "TsdclsLeeSTS"].reset_index(drop=True)
    pd.testing.assert_frame_equal(reused_items, items1)  # per-pair scores and gold survive, ids keep their type
    assert (items1["metric"] == "cosine_similarity").sum() == 40
    # a changed setting of one task recomputes that task only
    polarity_written = files["TsdclsPolarityClassification"].stat().st_mtime_ns
    _evaluate(_config(lee_sts={"max_pairs": 30}, polarity={}), cache)
    assert sts.stat().st_mtime_ns != written
    assert files["TsdclsPolarityClassification"].stat().st_mtime_ns == polarity_written


@pytest.mark.slow  # a real end-to-end subprocess run (make test-fast skips it; make test runs it)
def test_killed_evaluation_job_started_again_computes_only_the_rest(tmp_path: Path) -> None:
    """The real CLI verb, SIGKILLed right after its first task was recorded, then run again."""
    config = {**_config(lee_sts={}, polarity={}), "seed": 0, "scale": "smoke",
              "variant": {"slug": "tau1-all", "mode": "fixed", "tau": 1.0, "layers": "all"}}
    cache, out = tmp_path / "mteb", tmp_path / "eval"
    cmd = [
        sys.executable, "-m", "tsdcls.cli", "tempscale-evaluate", "--config", json.dumps(config),
        "--output", f"scores={out / 'scores.csv'}", "--output", f"per_item={out / 'per_item.csv'}",
        "--param", 'model="minilm"', "--param", f"mteb_cache={json.dumps(str(cache))}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while not list(cache.rglob("resume-TsdclsLeeSTS.json")) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    assert not (out / "scores.csv").exists()
    first = _result_files(cache)["TsdclsLeeSTS"]
    written = first.stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing finished task TsdclsLeeSTS" in again.stderr
    assert "reusing finished task TsdclsPolarityClassification" not in again.stderr
    assert first.stat().st_mtime_ns == written
    assert set(read_csv(out / "scores.csv")["task"]) == {"TsdclsLeeSTS", "TsdclsPolarityClassification"}
