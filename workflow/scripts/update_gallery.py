#!/usr/bin/env python3
"""Copy a chosen few figures of a finished run into docs/gallery/ for the README.

    python workflow/scripts/update_gallery.py                 # from results/ of the default run
    python workflow/scripts/update_gallery.py --results /path/to/run/results --allow-scale smoke

Every figure's provenance (embedded in the PNG by tsdcls.common.io.save_figure) is checked:
by default only an `embedded` (or fuller) run may fill the gallery, so a smoke-test plot never
ends up in the README. docs/gallery/index.md lists each copied figure with its scale and commit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

# stem under results/figures -> one-line description for the gallery index
GALLERY = {
    "theory_attenuation": "Attention's high-frequency gain falls with length; lower tau restores it.",
    "tempscale_collapse": "Embeddings of long texts collapse together; TempScale spreads them.",
    "tempscale_passkey_needle": "Passkey / needle retrieval vs length, tau = 1 vs TempScale.",
    "tempscale_tau_sweep": "Score of every local task across the tau sweep.",
    "dcls_accuracy": "Top-1 of dense, dilated and DCLS variants (mean ± std over seeds).",
    "dcls_kernels": "Learned DCLS kernel positions after training.",
}
FULL_SCALES = ("embedded", "embedded-full", "paper")


def read_png_provenance(path: Path) -> dict:
    from PIL import Image

    with Image.open(path) as image:
        blob = image.text.get("provenance") if hasattr(image, "text") else None
    if not blob:
        raise ValueError(f"{path}: no provenance in the PNG (not written by save_figure?)")
    return json.loads(blob)


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
    parser.add_argument("--dest", type=Path, default=Path("docs/gallery"))
    parser.add_argument("--figures", nargs="+", default=list(GALLERY), metavar="STEM",
                        help=f"figure stems under results/figures (default: {' '.join(GALLERY)})")
    parser.add_argument("--allow-scale", action="append", default=[], metavar="SCALE",
                        help="also accept figures of this scale (e.g. smoke, for trying it out)")
    args = parser.parse_args(argv)
    problems = update_gallery(args.results, args.dest, args.figures,
                              FULL_SCALES + tuple(args.allow_scale))
    for problem in problems:
        print(f"update_gallery: {problem}", file=sys.stderr)
    copied = sorted(p.name for p in args.dest.glob("*.png"))
    print(f"update_gallery: {args.dest} holds {len(copied)} figures: {', '.join(copied)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
