"""Temperature laws through the real mteb with MiniLM: queries and documents get their own taus
(from their own token counts), recorded per task split and prompt type in row_taus.csv and
carried into results/tempscale/law_taus.csv by the ablation verb."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest

from tests.test_tempscale_tasks import TINY
from tsdcls.common.lowpass import tau_for_law
from tsdcls.tempscale.ablation import parse_variant
from tsdcls.tempscale.evaluate import evaluate_variant

N_REF, TAU_MIN = 32, 0.5
OFF = {key: {**TINY[key], "enabled": False} for key in ("needle", "longdoc", "polarity", "newsgroups")}
TASKS = copy.deepcopy({**TINY, **OFF, "lee_sts": {"enabled": True, "max_pairs": 20}})
ABLATION = {
    "models": ["minilm"], "taus": [1.0], "layer_subsets": {"tau": 0.8, "subsets": []},
    "tau_laws": {"laws": ["power0.5"], "n_ref": N_REF, "tau_min": TAU_MIN, "layers": "all"},
}  # fmt: skip
CONFIG = {"tasks": TASKS, "ablation": ABLATION}


@pytest.fixture(scope="module")
def law_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    cache = tmp_path_factory.mktemp("mteb")
    scores, _items, row_taus = evaluate_variant("minilm", parse_variant("law-power0.5-all", CONFIG), CONFIG, 0, "cpu",
                                                cache, False)
    return cache, scores, row_taus


def test_queries_and_documents_get_their_own_taus(law_run) -> None:
    _cache, scores, row_taus = law_run
    passkey = row_taus[row_taus["task"] == "TsdclsPasskeyRetrieval"].set_index(["split", "prompt_type"])
    assert set(passkey.index) == {(f"test_{n}", role) for n in (64, 128) for role in ("query", "document")}
    for n in (64, 128):
        query, document = passkey.loc[(f"test_{n}", "query")], passkey.loc[(f"test_{n}", "document")]
        assert query["n_rows"] == 3 and document["n_rows"] == 6  # n_queries, n_documents
        assert query["tokens_max"] < N_REF and query["tau_min"] == query["tau_max"] == 1.0  # short queries: tau = 1
        assert document["tokens_min"] > N_REF and document["tau_max"] < 1.0
        # each document's tau is the law's at its own token count (all documents of a split are ~n tokens)
        assert tau_for_law("power", int(document["tokens_max"]), N_REF, 0.5, TAU_MIN) == pytest.approx(document["tau_min"])
        assert document["tokens_min"] <= document["tokens_mean"] <= document["tokens_max"] <= n
    assert passkey.loc[("test_128", "document"), "tau_mean"] < passkey.loc[("test_64", "document"), "tau_mean"]
    sts = row_taus[row_taus["task"] == "TsdclsLeeSTS"]
    assert set(sts["prompt_type"]) == {"none"} and (sts["n_rows"] > 0).all()  # a symmetric task: no prompt type
    assert set(row_taus["variant"]) == {"law-power0.5-all"} and set(row_taus["tau_law"]) == {"power0.5"}
    assert set(row_taus["mteb_model_name"]) == set(scores["mteb_model_name"])


def test_a_reused_task_keeps_its_row_taus(law_run) -> None:
    cache, _scores, row_taus = law_run
    again = evaluate_variant("minilm", parse_variant("law-power0.5-all", CONFIG), CONFIG, 0, "cpu", cache, False)[2]
    pd.testing.assert_frame_equal(again, row_taus)


def test_a_fixed_tau_writes_the_header_only(tmp_path: Path) -> None:
    tasks = {**TASKS, "lee_sts": {"enabled": False, "max_pairs": 20}, "passkey": {**TASKS["passkey"], "lengths": [64]}}
    config = {"tasks": tasks, "ablation": ABLATION}
    row_taus = evaluate_variant("minilm", parse_variant("tau1-all", config), config, 0, "cpu", tmp_path, False)[2]
    assert row_taus.empty and {"prompt_type", "tau_mean", "tokens_mean"} <= set(row_taus.columns)


def test_the_ablation_verb_writes_law_taus_csv(law_run, tmp_path: Path) -> None:
    from tsdcls.common.io import read_csv, read_provenance, write_csv
    from tsdcls.common.job import Job
    from tsdcls.tempscale.ablation import LAW_TAU_COLUMNS, run_aggregate

    _cache, scores, row_taus = law_run
    base = scores.assign(variant="tau1-all", tau_mode="fixed", tau_law="", tau=1.0)
    for name, frame in (("scores_0", base), ("scores_1", scores), ("row_taus_1", row_taus)):
        write_csv(tmp_path / f"{name}.csv", frame, {"stage": "test"})
    job = Job(stage="tempscale",
              config={"significance": {"test": "sign", "alpha": 0.05, "n_resamples": 50}, "scale": "test", "seed": 0},
              inputs={n: tmp_path / f"{n}.csv" for n in ("scores_0", "scores_1", "row_taus_1")},
              outputs={"ablation": tmp_path / "ablation.csv", "law_taus": tmp_path / "law_taus.csv"})  # fmt: skip
    run_aggregate(job)
    table = read_csv(tmp_path / "law_taus.csv")
    assert list(table.columns) == LAW_TAU_COLUMNS and len(table) == len(row_taus)
    documents = table[(table["task"] == "TsdclsPasskeyRetrieval") & (table["prompt_type"] == "document")]
    assert list(documents["length"]) == [64.0, 128.0] and (documents["tau_mean"] < 1.0).all()
    assert set(table["scale"]) == {"test"} and "config_hash" in read_provenance(tmp_path / "law_taus.csv")
    assert "position_bias" in read_csv(tmp_path / "ablation.csv").columns
