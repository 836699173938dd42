"""Resumable TempScale evaluation: a job started again reuses the tasks it already finished for the
same model variant and settings (real MiniLM, real mteb; evidence: mteb's own result files)."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd

from tests.test_tempscale_tasks import ABLATION, TINY
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
    return evaluate_variant("minilm", parse_variant("tau1-all", config), config, 0, "cpu", cache, False)


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
