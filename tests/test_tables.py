"""Markdown/LaTeX table rendering and the published-numbers data file (no snakemake run)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tsdcls.common.config import ConfigError
from tsdcls.common.io import read_provenance
from tsdcls.figures import paper_compare
from tsdcls.figures.tables import format_cell, latex_escape, to_latex, to_markdown, write_tables

REPO = Path(__file__).resolve().parents[1]


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"model": ["ConvNeXt-T", "a|b"], "top1": [82.1, float("nan")], "params": [28, 50]}
    )


def test_markdown_table_shape_alignment_and_escaping() -> None:
    text = to_markdown(_frame(), caption="Top-1")
    lines = text.splitlines()
    assert lines[0] == "**Top-1**"
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 4  # header, rule, two rows
    # every row has the same number of (unescaped) cells
    counts = {len(re.split(r"(?<!\\)\|", line)) for line in table}
    assert counts == {5}
    rule = table[1]
    cells = [c.strip() for c in rule.strip("|").split("|")]
    assert cells[0].startswith("-") and not cells[0].endswith(":")  # text left
    assert cells[1].endswith(":") and cells[2].endswith(":")  # numbers right
    assert "a\\|b" in text
    assert "82.10" in text and "–" in table[3]  # NaN -> dash


def test_latex_table_escapes_specials_and_is_balanced() -> None:
    frame = pd.DataFrame({"task_name": ["50% & up", "x_1 ± 0.2 → τ"], "score": [1.0, 2.5]})
    tex = to_latex(frame, caption="A caption_with_underscore", label="tab:demo")
    assert r"50\% \& up" in tex
    assert r"x\_1 $\pm$ 0.2 $\rightarrow$ $\tau$" in tex
    assert r"\begin{tabular}{lr}" in tex and tex.count(r"\\") >= 3
    assert tex.count("{") == tex.count("}")
    assert r"\label{tab:demo}" in tex
    with pytest.raises(ValueError, match="label"):
        to_latex(frame, label="bad label{")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_table_compiles(tmp_path: Path) -> None:
    body = to_latex(_frame(), caption="Demo", notes=["n = 2 seeds"])
    doc = "\\documentclass{article}\\usepackage{booktabs}\\usepackage[T1]{fontenc}\\begin{document}\n"
    (tmp_path / "t.tex").write_text(doc + body + "\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-halt-on-error", "t.tex"], cwd=tmp_path, capture_output=True)
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_format_cell_values() -> None:
    assert format_cell(None) == "–"
    assert format_cell(math.nan) == "–"
    assert format_cell(3) == "3"
    assert format_cell(0.12345, "{:.3f}") == "0.123"
    assert format_cell(True) == "yes"
    assert latex_escape("a_b") == r"a\_b"


def test_write_tables_is_atomic_pair_with_provenance(tmp_path: Path) -> None:
    md, tex = write_tables(_frame(), tmp_path / "tables" / "demo", {"scale": "smoke", "seed": 3})
    assert md.name == "demo.md" and tex.name == "demo.tex"
    assert read_provenance(md)["scale"] == "smoke"
    assert read_provenance(tex)["seed"] == 3
    assert not list((tmp_path / "tables").glob(".*tmp"))


def test_published_numbers_file_is_valid_and_carries_sources() -> None:
    data = paper_compare.load_published(REPO / "data" / "published_numbers.yaml")
    models = {row["model"]: row for row in data["dcls_convnext"]}
    assert (models["ConvNeXt-T"]["top1_dense"], models["ConvNeXt-T"]["top1_dcls"]) == (82.1, 82.5)
    assert (models["ConvNeXt-B"]["flops_g_dense"], models["ConvNeXt-B"]["flops_g_dcls"]) == (15.4, 16.5)
    gains = {(g["benchmark"], g["source"]): g["gain_pct"] for g in data["tempscale_average_gain"]}
    assert gains[("MTEB", "tempscale_arxiv_v1")] == 0.53
    assert gains[("LongEmbed", "tempscale_acl2025")] == 1.10
    assert data["longembed_baselines"]["rows"]["E5-Base"][-1] == 41.0
    for source in data["sources"].values():
        assert source["arxiv"] and source["table"]


PUBLISHED_CASES = [  # (edit of the committed file, key the error must name): schema, then cross-references
    (lambda d: d["dcls_convnext"][0].update(top1_dcls="82.5%"), r"dcls_convnext\[0\]\.top1_dcls"),
    (lambda d: d["dcls_convnext"][1].pop("params_m"), r"key 'dcls_convnext\[1\]': 'params_m' is a required"),
    (lambda d: d["sources"]["dcls_iclr2023"].update(table_checked="yes"), r"sources\.dcls_iclr2023\.table_checked"),
    (lambda d: d.update(surprise=1), "surprise"),
    (lambda d: d["tempscale_average_gain"][1].update(source="nowhere"), r"tempscale_average_gain\[1\]\.source"),
    (lambda d: d["longembed_baselines"]["rows"].update({"BGE-Base": [1.0, 2.0]}), r"longembed_baselines\.rows\.BGE-Base"),
]


@pytest.mark.parametrize(("edit", "pattern"), PUBLISHED_CASES)
def test_published_numbers_errors_name_the_key(tmp_path: Path, edit, pattern: str) -> None:
    bad = yaml.safe_load((REPO / "data" / "published_numbers.yaml").read_text())
    edit(bad)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=pattern) as err:
        paper_compare.load_published(path)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{path}: key '")


def test_published_numbers_schema_checks_the_committed_file() -> None:
    """The schema the workflow applies at parse time: the committed file passes, a bad one does not."""
    from tsdcls.common.schema import schema_problems

    schema = REPO / "workflow/schemas/published_numbers.schema.yaml"
    good = yaml.safe_load((REPO / "data" / "published_numbers.yaml").read_text())
    assert schema_problems(good, schema) == []
    good["longembed_baselines"]["rows"]["E5-Base"][0] = 380.0
    assert schema_problems(good, schema) == ["key 'longembed_baselines.rows.E5-Base[0]': 380.0 is greater than the maximum of 100"]


def _job(tmp_path: Path, inputs: dict[str, Path], runs: dict | None = None):
    from tsdcls.common.job import Job

    outputs = {name: tmp_path / "out" / f"paper_vs_reproduced.{ext}"
               for name, ext in (("markdown", "md"), ("latex", "tex"), ("html", "html"))}
    return Job(stage="figures", config={"scale": "smoke", "runs": runs or {}},
               inputs={"published": REPO / "data" / "published_numbers.yaml", **inputs}, outputs=outputs)


def test_paper_vs_reproduced_reads_both_stages(tmp_path: Path) -> None:
    from tsdcls.common.io import write_csv

    dcls = pd.DataFrame({
        "family": ["convnext", "convnext"], "variant": ["dense", "dcls_v0"],
        "kernel_count": [float("nan"), 8.0], "dks": [float("nan"), 5.0], "params": [10000, 9800],
        "top1_mean": [0.800, 0.812], "top1_std": [0.010, 0.004], "n_seeds": [2, 2],
    })
    tempscale = pd.DataFrame({
        "model": ["minilm"] * 4, "task": ["TsdclsPasskeyRetrieval"] * 2 + ["TsdclsLeeSTS"] * 2,
        "variant": ["tau1-all", "tau0.8-all"] * 2, "tau": [1.0, 0.8] * 2,
        "layers": ["all"] * 4, "score": [0.50, 0.56, 0.70, 0.69],
        "delta_vs_tau1": [0.0, 0.06, 0.0, -0.01], "p_value": [1.0, 0.01, 1.0, 0.6],
        "significant": [False, True, False, False], "status": ["scored"] * 4,
    })
    skipped = tempscale.iloc[:2].assign(score=float("nan"), delta_vs_tau1=float("nan"), p_value=float("nan"),
                                        status="skipped: exceeds model positions (512 tokens)")
    tempscale = pd.concat([tempscale, skipped], ignore_index=True)  # counted nowhere below
    write_csv(tmp_path / "dcls.csv", dcls, {"scale": "smoke"})
    write_csv(tmp_path / "ts.csv", tempscale, {"scale": "smoke"})
    runs = {"dcls": {"data": {"dataset": "fashion_mnist", "image_size": 32}, "train": {"epochs": 1},
                     "families": {"convnext": {"arch": "convnext_atto", "kwargs": {"dims": [8, 64]}}}}}
    job = _job(tmp_path, {"dcls": tmp_path / "dcls.csv", "tempscale": tmp_path / "ts.csv"}, runs)
    paper_compare.run_paper_vs_reproduced(job)
    md = job.outputs["markdown"].read_text()
    assert "fashion_mnist 32px" in md and "convnext_atto" in md and "1 epoch" in md and "2 seeds" in md
    dcls_row = next(line for line in md.splitlines() if "this run (smoke)" in line and "dcls_v0" in line)
    assert "80.0 ± 1.0" in dcls_row and "81.2 ± 0.4" in dcls_row and "+1.2" in dcls_row
    gain_row = next(line for line in md.splitlines() if "tau0.8-all" in line and "this run's tasks" in line)
    assert "+2.50" in gain_row and "1/0 of 2" in gain_row  # mean of +6 and -1 points
    passkey_row = next(line for line in md.splitlines() if "| τ = 1" in line and "minilm" in line)
    assert "50.0" in passkey_row
    assert "82.1" in md and "ImageNet-1k" in md  # the paper rows sit beside this run's
    tex = job.outputs["latex"].read_text()
    assert tex.count(r"\begin{table}") == 3 and tex.count("{") == tex.count("}")
    assert read_provenance(job.outputs["markdown"])["scale"] == "smoke"
    assert read_provenance(job.outputs["html"])["scale"] == "smoke"


def test_paper_vs_reproduced_marks_missing_stages_not_run(tmp_path: Path) -> None:
    job = _job(tmp_path, {})
    paper_compare.run_paper_vs_reproduced(job)
    md = job.outputs["markdown"].read_text()
    rows = [line for line in md.splitlines() if line.startswith("| this run (smoke)")]
    assert len(rows) == 3 and all("not run" in row for row in rows)
    assert "83.7" in md
