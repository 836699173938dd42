"""workflow/scripts/summary.py: one headline per stage from the result files, 'not run' when absent."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

from tests.conftest import REPO


def _summary():
    spec = importlib.util.spec_from_file_location("tsdcls_summary", REPO / "workflow/scripts/summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_result_files_are_named(tmp_path: Path) -> None:
    lines = _summary().stage_headlines(tmp_path)
    assert lines == [
        f"claims: not evaluated ({tmp_path}/claims.csv missing)",
        f"theory: not run ({tmp_path}/theory/checks.json missing)",
        f"tempscale collapse: not run ({tmp_path}/tempscale/collapse_similarity.csv missing)",
        f"tempscale tasks: not run ({tmp_path}/tempscale/ablation.csv missing)",
        f"tempscale fixes: not run ({tmp_path}/tables/tempscale_fixes.csv missing)",
        f"tempscale position bias: not run ({tmp_path}/tempscale/position_bias_effect.csv missing)",
        f"dcls: not run ({tmp_path}/dcls/ablation.csv missing)",
    ]


def test_headlines_read_the_files_and_count_skipped_rows(tmp_path: Path) -> None:
    from tsdcls.common.io import write_csv

    (tmp_path / "theory").mkdir()
    (tmp_path / "theory/checks.json").write_text(json.dumps({"checks": [{"name": "a", "holds": True},
                                                                       {"name": "b", "holds": False}]}))
    rows = [("tau1-all", 0.5, 0.0, False, "scored"), ("tau0.8-all", 0.6, 0.1, True, "scored"),
            ("tau0.8-all", 0.4, -0.1, False, "scored"),
            ("tau0.8-all", float("nan"), float("nan"), False, "skipped: exceeds model positions (512 tokens)")]
    frame = pd.DataFrame(rows, columns=["variant", "score", "delta_vs_tau1", "significant", "status"]).assign(
        model="m", tau_mode="fixed", fix="")
    write_csv(tmp_path / "tempscale/ablation.csv", frame, {"scale": "test"})
    lines = {line.split(":")[0]: line for line in _summary().stage_headlines(tmp_path)}
    assert lines["theory"] == "theory: 1 of 2 checks hold (failed: b)"
    effect = pd.DataFrame([{"model": "mpnet", "tau": 0.8, "bin": "8-64", "bias_to_tau_ratio": 1.234}])
    write_csv(tmp_path / "tempscale/position_bias_effect.csv", effect, {"scale": "test"})
    assert _summary().stage_headlines(tmp_path)[5].endswith("(mean over windows): mpnet τ=0.8, 8-64 tokens: 1.23")
    assert lines["tempscale tasks"] == ("tempscale tasks: vs τ = 1, m tau0.8-all: mean delta +0.00 pp over 2 rows, "
                                        "significant 1+/0- (1 rows skipped: longer than the model reads)")
