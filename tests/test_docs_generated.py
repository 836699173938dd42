"""Hand-written docs state no measured result: results come from result files (docs/results.md
and the README's gallery block, written by update_gallery.py), benchmark measurements live in
benchmarks/RECORDS.md with their date and machine."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENERATED = {"results.md"}
MEASUREMENT = re.compile(r"^\s*(?:[*-]\s*)?(?:Measured|What the runs? showed|We measured|The run showed)\b")


def _hand_written() -> dict[Path, str]:
    texts = {p: p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").glob("*.md")) if p.name not in GENERATED}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    begin, end = readme.index("<!-- GALLERY:BEGIN"), readme.index("<!-- GALLERY:END -->")
    texts[REPO / "README.md"] = readme[:begin] + readme[end:]
    return texts


def test_hand_written_docs_report_no_measurements() -> None:
    found = [f"{path.relative_to(REPO)}:{i}: {line.strip()[:80]}"
             for path, text in _hand_written().items() for i, line in enumerate(text.splitlines(), 1)
             if MEASUREMENT.match(line)]
    assert not found, "measured results belong in generated files or benchmarks/RECORDS.md:\n" + "\n".join(found)


def test_the_docs_point_to_the_generated_results() -> None:
    docs = _hand_written()
    for name in ("dcls.md", "theory.md", "tempscale.md", "figures.md"):
        assert "results.md" in docs[REPO / "docs" / name], name
