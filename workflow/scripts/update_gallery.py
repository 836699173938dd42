#!/usr/bin/env python3
"""Copy a chosen few figures of a finished run into docs/gallery/ for the README.

    python workflow/scripts/update_gallery.py                 # from results/ of the default run
    python workflow/scripts/update_gallery.py --results /path/to/run/results --allow-scale smoke

Every figure's provenance (embedded in the PNG by tsdcls.common.io.save_figure) is checked:
by default only an `embedded` (or fuller) run may fill the gallery, so a smoke-test plot never
ends up in the README. docs/gallery/index.md lists each copied figure with its scale and commit.
The paper-vs-reproduced table is copied too (same scale check) into docs/results.md, and the
README's block between README_BEGIN and README_END is rewritten with the figures, the commit that
drew them and one headline per stage read from the result files (`--readme ''` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

# stem under results/figures -> one-line description for the gallery index
GALLERY = {
    "theory_attenuation": "Attention's high-frequency gain vs sequence length and τ, with the bound.",
    "tempscale_collapse": "Mean pairwise cosine of embeddings per length bin, τ = 1 vs TempScale.",
    "tempscale_passkey_needle": "Passkey / needle retrieval vs length, τ = 1 vs TempScale.",
    "tempscale_tau_sweep": "Score of every local task across the τ sweep.",
    "tempscale_fixes": "TempScale vs temperature laws vs post-hoc fixes: collapse per length and every task's change.",
    "dcls_accuracy": "Top-1 of dense, dilated and DCLS variants (mean ± std over seeds) and each one minus dense, paired by seed, with its 95% CI.",
    "dcls_kernels": "Learned DCLS kernel positions after training.",
    "claims_forest": "Every tested claim: estimate, 95% CI and the verdict of its fixed rule.",
}
FULL_SCALES = ("embedded", "embedded-full", "paper")
TABLE = "paper_vs_reproduced"
README_BEGIN = "<!-- GALLERY:BEGIN (written by workflow/scripts/update_gallery.py) -->"
README_END = "<!-- GALLERY:END -->"


def read_png_provenance(path: Path) -> dict:
    from PIL import Image

    with Image.open(path) as image:
        blob = image.text.get("provenance") if hasattr(image, "text") else None
    if not blob:
        raise ValueError(f"{path}: no provenance in the PNG (not written by save_figure?)")
    return json.loads(blob)


def read_table_provenance(path: Path) -> dict:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    prefix = "<!-- provenance: "
    if not first.startswith(prefix):
        raise ValueError(f"{path}: no provenance line (not written by tsdcls.common.io.write_table?)")
    return json.loads(first[len(prefix):].removesuffix(" -->"))


def copy_table(results: Path, dest: Path, allowed_scales: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """Copy the paper-vs-reproduced table; return its body (provenance line dropped) or None."""
    source = results / "tables" / f"{TABLE}.md"
    if not source.is_file():
        return None, [f"{source}: missing (figures stage disabled?)"]
    scale = read_table_provenance(source).get("scale", "unknown")
    if scale not in allowed_scales:
        return None, [f"{source}: scale {scale!r} not in {allowed_scales} (use --allow-scale)"]
    shutil.copy2(source, dest / source.name)
    return "\n".join(source.read_text(encoding="utf-8").splitlines()[1:]).strip(), []


def headlines(results: Path) -> list[str]:
    """One line per stage, read from the result files (workflow/scripts/summary.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tsdcls_summary", Path(__file__).with_name("summary.py"))
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    return summary.stage_headlines(results)


def run_label(dest: Path, copied: list[str]) -> str:
    """'scale embedded, commit 0123456789ab' of the copied figures (all from one run)."""
    provenances = [read_png_provenance(dest / f"{name}.png") for name in copied]
    scales = sorted({str(p.get("scale", "unknown")) for p in provenances})
    commits = sorted({str(p.get("git_commit", "unknown"))[:12] for p in provenances})
    return f"scale {', '.join(scales)}, commit `{'`, `'.join(commits)}`"


def readme_block(dest: Path, readme: Path, copied: list[str], results_md: Path, results: Path) -> str:
    """Markdown for the README: the copied figures (two per row), their run, the headlines."""
    folder = Path(os.path.relpath(dest, readme.parent)).as_posix()
    lines = [README_BEGIN, "", f"### Results gallery ({run_label(dest, copied) if copied else 'no figures'})", ""]
    for first in range(0, len(copied), 2):
        pair = copied[first:first + 2]
        lines.append("| " + " | ".join(GALLERY.get(name, name) for name in pair) + " |")
        lines.append("| " + " | ".join("---" for _ in pair) + " |")
        lines.append("| " + " | ".join(f"![{name}]({folder}/{name}.png)" for name in pair) + " |")
        lines.append("")
    lines += ["What this run measured (generated from its result files):", ""]
    lines += [f"- {line}" for line in headlines(results)]
    link = Path(os.path.relpath(results_md, readme.parent)).as_posix()
    lines += ["", f"Scale and commit of every figure: [{folder}/index.md]({folder}/index.md); the "
              f"paper-vs-reproduced tables: [{link}]({link}).", README_END]
    return "\n".join(lines)


FIXES_TABLES = ("tempscale_fixes", "tempscale_fixes_tasks")  # results/tables/<stem>.md, same run


def fixes_section(results: Path) -> list[str]:
    """The length-collapse fixes tables of the run (docs/tempscale.md defines the methods)."""
    tables = [results / "tables" / f"{stem}.md" for stem in FIXES_TABLES]
    if not all(path.is_file() for path in tables):
        return []
    body = [line for path in tables for line in (*_without_provenance(path), "")]
    return ["## Length-collapse fixes side by side", "", "Methods and fit corpus: [tempscale.md](tempscale.md).", "", *body]


def generated_section(path: Path, heading: str, intro: str = "") -> list[str]:
    """A Markdown result file of the run under ``heading`` (its own title lines demoted), or nothing."""
    if not path.is_file():
        return []
    body = [("#" + line if line.startswith("# ") else line) for line in _without_provenance(path)]
    if body and body[0].startswith("## "):
        body = body[1:]
    return [f"## {heading}", "", *([intro, ""] if intro else []), *body, ""]


def theory_section(results: Path) -> list[str]:
    """Every mathematical check of the theory stage: holds or not, and its worst margin."""
    path = results / "theory" / "checks.json"
    if not path.is_file():
        return []
    checks = json.loads(path.read_text(encoding="utf-8"))["checks"]
    rows = [f"| {c['name']} | {'holds' if c['holds'] else '**fails**'} | {float(c['worst_margin']):.3g} |"
            for c in checks]
    return ["## Theory checks", "", "From `results/theory/checks.json` (definitions: [theory.md](theory.md)); "
            "a margin is the check's slack, positive when it holds.", "",
            "| Check | Result | Worst margin |", "| --- | --- | --- |", *rows, ""]


def task_power_section(results: Path) -> list[str]:
    """Per task split: items, the tau = 1 score and the minimal detectable change of the design."""
    path = results / "tempscale" / "ablation.csv"
    if not path.is_file():
        return []
    frame = pd.read_csv(path, comment="#")
    if "mde_split" not in frame:
        return []
    base = frame[frame["variant"] == "tau1-all"].sort_values(["model", "task", "length", "split"])
    scale = 100.0 if base["score"].abs().max() <= 1.0 else 1.0
    rows = [f"| {r.model} | {r.task} | {r.split} | {int(r.n_items)} | {scale * r.score:.1f} | "
            f"{'n/a (no item changed in the sweep)' if pd.isna(r.mde_split) else f'{scale * r.mde_split:.1f}'} |"
            for r in base.itertuples()]
    return ["## TempScale task sizes and their minimal detectable effect", "",
            "From `results/tempscale/ablation.csv`: MDE = the paired change (pp) each split detects with 80% "
            "power at the run's alpha, read off the fixed-τ sweep's CIs (median).", "",
            "| Model | Task | Split | Items | τ = 1 score | MDE (pp) |", "| --- | --- | --- | --- | --- | --- |",
            *rows, ""]


def law_tau_section(results: Path) -> list[str]:
    """What each temperature law gave queries and documents: row-weighted token and tau means."""
    path = results / "tempscale" / "law_taus.csv"
    if not path.is_file():
        return []
    frame = pd.read_csv(path, comment="#")
    if frame.empty:
        return []
    frame = frame.assign(tokens=frame["tokens_mean"] * frame["n_rows"], taus=frame["tau_mean"] * frame["n_rows"])
    grouped = frame.groupby(["model", "variant", "prompt_type"], sort=True).agg(
        n_rows=("n_rows", "sum"), tokens=("tokens", "sum"), taus=("taus", "sum"),
        tokens_max=("tokens_max", "max"), tau_min=("tau_min", "min")).reset_index()
    rows = [f"| {r.model} | {r.variant} | {r.prompt_type} | {int(r.n_rows)} | {r.tokens / r.n_rows:.0f} "
            f"(max {int(r.tokens_max)}) | {r.taus / r.n_rows:.3f} (min {r.tau_min:.3f}) |" for r in grouped.itertuples()]
    return ["## Temperature laws: the τ queries and documents got", "",
            "From `results/tempscale/law_taus.csv` (every encoded row of every task split, by mteb's prompt type).", "",
            "| Model | Variant | Prompt type | Rows | Tokens, mean | τ, mean |", "| --- | --- | --- | --- | --- | --- |",
            *rows, ""]


def _without_provenance(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("<!-- provenance")]


def write_results_md(path: Path, table: str, results: Path) -> None:
    """docs/results.md: the paper-vs-reproduced table, the fixes tables and the headlines of the same run."""
    text = ["# Results of the gallery run", "",
            "Written by `workflow/scripts/update_gallery.py` from a finished run; never edited by hand.", "",
            *(f"- {line}" for line in headlines(results)), "",
            *generated_section(results / "claims.md", "Claims ledger"), table, "",
            *theory_section(results), *task_power_section(results), *law_tau_section(results),
            *generated_section(results / "tables" / "dcls_ablation.md", "DCLS ablation"), *fixes_section(results)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(text), encoding="utf-8")
    os.replace(tmp, path)


def write_readme_block(readme: Path, block: str) -> None:
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme}: markers {README_BEGIN!r} ... {README_END!r} not found")
    start = text.index(README_BEGIN)
    end = text.index(README_END) + len(README_END)
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(text[:start] + block + text[end:], encoding="utf-8")
    os.replace(tmp, readme)


def update_gallery(results: Path, dest: Path, names: list[str], allowed_scales: tuple[str, ...]) -> list[str]:
    """Copy the figures; return the problems (missing figures, wrong scale)."""
    problems, rows = [], []
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = results / "figures" / f"{name}.png"
        if not source.is_file():
            problems.append(f"{source}: missing (stage disabled or figure renamed?)")
            continue
        provenance = read_png_provenance(source)
        scale = provenance.get("scale", "unknown")
        if scale not in allowed_scales:
            problems.append(f"{source}: scale {scale!r} not in {allowed_scales} (use --allow-scale)")
            continue
        shutil.copy2(source, dest / source.name)
        commit = str(provenance.get("git_commit", "unknown"))[:12]
        rows.append(f"| ![{name}]({source.name}) | {GALLERY.get(name, name)} | {scale} | `{commit}` |")
    if rows:
        index = [
            "# Gallery",
            "",
            "Figures of a finished run, copied by `workflow/scripts/update_gallery.py`.",
            "",
            "| Figure | What it shows | Scale | Commit |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
        (dest / "index.md").write_text("\n".join(index), encoding="utf-8")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results/ of a finished run")
    parser.add_argument("--dest", type=Path, default=None, help="default: docs/gallery of this repository")
    parser.add_argument("--figures", nargs="+", default=list(GALLERY), metavar="STEM",
                        help=f"figure stems under results/figures (default: {' '.join(GALLERY)})")
    parser.add_argument("--readme", default=None,
                        help="README to update between the markers (default: the repository's README "
                             "when --dest is the default docs/gallery, else none; '' = none)")
    parser.add_argument("--results-md", type=Path, default=None,
                        help="where the tables go (default: results.md beside the gallery folder)")
    parser.add_argument("--allow-scale", action="append", default=[], metavar="SCALE",
                        help="also accept figures of this scale (e.g. smoke, for trying it out)")
    args = parser.parse_args(argv)
    repository = Path(__file__).resolve().parents[2]
    if args.readme is None:
        args.readme = "" if args.dest is not None else str(repository / "README.md")
    if args.dest is None:
        args.dest = repository / "docs" / "gallery"
    scales = FULL_SCALES + tuple(args.allow_scale)
    problems = update_gallery(args.results, args.dest, args.figures, scales)
    table, table_problems = copy_table(args.results, args.dest, scales)
    problems += table_problems
    results_md = args.results_md or args.dest.parent / "results.md"
    if table:
        write_results_md(results_md, table, args.results)
    if args.readme:
        copied = [name for name in args.figures if (args.dest / f"{name}.png").is_file()]
        block = readme_block(args.dest, Path(args.readme), copied, results_md, args.results)
        write_readme_block(Path(args.readme), block)
    for problem in problems:
        print(f"update_gallery: {problem}", file=sys.stderr)
    copied = sorted(p.name for p in args.dest.glob("*.png"))
    print(f"update_gallery: {args.dest} holds {len(copied)} figures: {', '.join(copied)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
