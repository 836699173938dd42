"""`snakemake figures` rebuilds every figure and table from results/ without any model job,
plus the shared figure style's checks.

The end-to-end test copies the finished smoke run (mtimes and .snakemake/ metadata kept by
copytree's copy2), deletes every file a figure_*/table_* rule made, and runs the real snakemake.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import types
from pathlib import Path

import pytest

from tests.conftest import run_snakemake
from tsdcls.figures import style

PLOT_RULE = re.compile(r"^(figure|table)_\w+$")


def _rules_run(log: str) -> list[str]:
    """Rule names of the jobs snakemake started, from its log ('rule x:' / 'localrule x:')."""
    return re.findall(r"^\s*(?:local)?rule (\w+):\s*$", log, re.M)


def _summary(workdir: Path) -> list[dict[str, str]]:
    """`snakemake --summary`: one row per output file with the rule that makes it."""
    proc = run_snakemake(workdir, "--summary", timeout=300)
    lines = [line for line in proc.stdout.splitlines() if "\t" in line]
    return list(csv.DictReader(io.StringIO("\n".join(lines)), delimiter="\t"))


def test_figures_target_rebuilds_plots_without_model_jobs(smoke_run: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    shutil.copytree(smoke_run, workdir, symlinks=True)  # copy2: mtimes kept, so nothing is stale

    # Before anything is deleted, the figures target is up to date (no rerun trigger fires).
    dry = run_snakemake(workdir, "figures", "--dry-run", timeout=300)
    assert not _rules_run(dry.stdout + dry.stderr), dry.stdout[-3000:]

    rows = _summary(workdir)
    plot_files = sorted(row["output_file"] for row in rows if PLOT_RULE.match(row["rule"]))
    assert any(p.endswith(".png") for p in plot_files), "the smoke DAG drew no figure"
    assert "results/tables/paper_vs_reproduced.md" in plot_files
    model_files = [row["output_file"] for row in rows if not PLOT_RULE.match(row["rule"])]
    before = {p: (workdir / p).stat().st_mtime_ns for p in model_files if (workdir / p).is_file()}
    for path in plot_files:
        (workdir / path).unlink(missing_ok=True)

    proc = run_snakemake(workdir, "figures", timeout=600)
    log = proc.stdout + proc.stderr
    ran = _rules_run(log)
    assert ran, log[-3000:]
    not_plots = sorted({rule for rule in ran if not PLOT_RULE.match(rule) and rule != "figures"})
    assert not not_plots, f"model/evaluation jobs ran: {not_plots}"
    for path in plot_files:
        target = workdir / path
        assert target.is_file() and target.stat().st_size > 0, f"{path} not rebuilt"
        if path.endswith(".png"):
            assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    after = {p: (workdir / p).stat().st_mtime_ns for p in before}
    assert after == before, "a model/evaluation output was rewritten"


def test_style_flags_unlabelled_axes_and_missing_legend() -> None:
    fig, axes = style.new_figure(ncols=2)
    left, right = axes[0]
    left.plot([1, 2], [1, 2], label="tau = 1", **style.series_style("tau = 1"))
    left.plot([1, 2], [2, 3], label="tau = 0.8", **style.series_style("tau = 0.8"))
    style.label_axes(left, x=("sequence length", "tokens"), y=("gain", None), title="(a)")
    problems = style.figure_problems(fig)
    assert any("(a): 2 labelled series but no legend" in p for p in problems)
    assert any("axes 1: x axis has no label" in p for p in problems)
    with pytest.raises(ValueError, match="shared style"):
        style.finish(fig, {"scale": "smoke"})
    left.legend()
    style.label_axes(right, x="epoch", y=("top-1 accuracy", "%"))
    assert right.get_ylabel() == "top-1 accuracy (%)"
    assert style.finish(fig, {"scale": "smoke", "git_commit": "abc"}) == []
    assert any("scale=smoke" in text.get_text() for text in fig.texts)


def test_style_colours_are_stable_and_baselines_grey() -> None:
    assert style.color_for("dense") == style.BASELINE_COLOR == style.color_for("tau = 1")
    assert style.series_style("dense")["linestyle"] == "--"
    assert style.color_for("dcls_gauss") == style.color_for("DCLS_GAUSS")
    assert style.color_for("some new variant") == style.color_for("some new variant")
    assert style.color_for("some new variant") in style.PALETTE


def _load_gallery() -> types.ModuleType:
    """workflow/scripts/update_gallery.py as a module (a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "update_gallery", Path(__file__).resolve().parents[1] / "workflow" / "scripts" / "update_gallery.py"
    )
    gallery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery)
    return gallery


def test_update_gallery_copies_only_full_scale_figures(tmp_path: Path) -> None:
    from tsdcls.common.io import save_figure, write_table

    gallery = _load_gallery()
    figures = tmp_path / "results" / "figures"
    for stem, scale in (("theory_attenuation", "embedded"), ("dcls_accuracy", "smoke")):
        fig, axes = style.new_figure()
        style.label_axes(axes[0, 0], x=("n", "tokens"), y=("gain", None))
        save_figure(fig, figures / stem, {"scale": scale, "git_commit": "0123456789abcdef"})
    write_table(tmp_path / "results" / "tables" / "paper_vs_reproduced.md", "# t\n", {"scale": "embedded"})
    dest = tmp_path / "gallery"
    args = ["--results", str(tmp_path / "results"), "--dest", str(dest),
            "--figures", "theory_attenuation", "dcls_accuracy", "dcls_kernels"]
    assert gallery.main(args) == 1  # one smoke figure refused, one figure missing
    assert sorted(p.name for p in dest.glob("*.png")) == ["theory_attenuation.png"]
    index = (dest / "index.md").read_text()
    assert "| embedded | `0123456789ab` |" in index
    assert gallery.main([*args[:-1], "--allow-scale", "smoke"]) == 0
    assert sorted(p.name for p in dest.glob("*.png")) == ["dcls_accuracy.png", "theory_attenuation.png"]


def test_update_gallery_writes_readme_block_with_the_table(tmp_path: Path) -> None:
    from tsdcls.common.io import save_figure, write_table

    gallery = _load_gallery()
    results = tmp_path / "results"
    fig, axes = style.new_figure()
    style.label_axes(axes[0, 0], x=("n", "tokens"), y=("gain", None))
    save_figure(fig, results / "figures" / "theory_attenuation", {"scale": "embedded", "git_commit": "abc"})
    table = "# Paper vs reproduced\n\n## DCLS\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    write_table(results / "tables" / "paper_vs_reproduced.md", table, {"scale": "embedded"})
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{gallery.README_BEGIN}\nold\n{gallery.README_END}\noutro\n")
    dest = tmp_path / "docs" / "gallery"
    args = ["--results", str(results), "--dest", str(dest), "--readme", str(readme), "--figures", "theory_attenuation"]
    assert gallery.main(args) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "\nold\n" not in text
    assert "![theory_attenuation](docs/gallery/theory_attenuation.png)" in text
    assert "scale embedded, commit `abc`" in text  # the run that drew the gallery
    assert "[docs/results.md](docs/results.md)" in text and "| 1 | 2 |" not in text
    assert "- theory: not run" in text  # headlines come from the result files (none here)
    results_md = (tmp_path / "docs" / "results.md").read_text()
    assert "# Paper vs reproduced" in results_md and "| 1 | 2 |" in results_md
    assert "provenance" not in text.split(gallery.README_BEGIN)[1] and "provenance:" not in results_md
    assert (dest / "paper_vs_reproduced.md").is_file()
    # a smoke-scale table is refused, and the README keeps its block
    write_table(results / "tables" / "paper_vs_reproduced.md", table, {"scale": "smoke"})
    assert gallery.main(args) == 1


def test_results_md_carries_the_ledger_theory_checks_and_task_power(tmp_path: Path) -> None:
    import json

    import pandas as pd

    from tsdcls.common.io import write_table

    gallery = _load_gallery()
    results = tmp_path / "results"
    write_table(results / "claims.md", "# Claims ledger (scale: embedded)\n\n| Claim | Verdict |\n| --- | --- |\n"
                "| x | **supported** |\n", {"scale": "embedded"})
    (results / "theory").mkdir(parents=True)
    (results / "theory" / "checks.json").write_text(json.dumps({"checks": [
        {"name": "hc_inequality", "holds": True, "worst_margin": 0.25, "details": {}},
        {"name": "closed_form_bound", "holds": False, "worst_margin": -0.5, "details": {}}]}))
    (results / "tempscale").mkdir()
    pd.DataFrame([{"model": "minilm", "task": "Passkey", "split": "test_256", "length": 256, "variant": "tau1-all",
                   "n_items": 40, "score": 0.5, "mde_split": 0.123, "tau_mode": "fixed", "fix": "",
                   "delta_vs_tau1": 0.0, "significant": False}]).to_csv(results / "tempscale" / "ablation.csv")
    pd.DataFrame([{"model": "minilm", "variant": "law-log-all", "prompt_type": p, "n_rows": n, "tokens_mean": t,
                   "tokens_max": t + 2, "tau_mean": tau, "tau_min": tau} for p, n, t, tau in
                  (("query", 10, 12, 1.0), ("document", 30, 200, 0.8), ("document", 10, 400, 0.6))]
                 ).to_csv(results / "tempscale" / "law_taus.csv")
    path = tmp_path / "results.md"
    gallery.write_results_md(path, "# Paper vs reproduced\n", results)
    text = path.read_text()
    assert "## Claims ledger" in text and "| x | **supported** |" in text and "# Claims ledger" not in text.replace("## Claims", "")
    assert "| hc_inequality | holds | 0.25 |" in text and "| closed_form_bound | **fails** | -0.5 |" in text
    assert "| minilm | Passkey | test_256 | 40 | 50.0 | 12.3 |" in text
    assert "| minilm | law-log-all | query | 10 | 12 (max 14) | 1.000 (min 1.000) |" in text
    assert "| minilm | law-log-all | document | 40 | 250 (max 402) | 0.750 (min 0.600) |" in text  # row-weighted
