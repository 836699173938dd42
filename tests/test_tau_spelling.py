"""One spelling of the temperature: "tau" in code, ids, config keys, column names and error
messages; "τ" in what readers of figures, tables, the report, the run summary and the docs see."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

WORD = re.compile(r"(?<!\\)\btau\b")  # LaTeX \tau renders as τ
# modules whose string literals end up in figures, tables, the gallery and the run summary
READER_TEXT_MODULES = [*sorted((REPO / "src/tsdcls/figures").glob("*.py")),
                       REPO / "workflow/scripts/summary.py", REPO / "workflow/scripts/update_gallery.py"]
STYLE_ID_SETS = {"BASELINE_NAMES"}  # variant names the style lookups accept, not text


def _skipped_constants(tree: ast.AST) -> set[int]:
    """Docstrings, error messages (raise ...) and style-id sets: code-side text."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        is_style_ids = isinstance(node, ast.Assign) and any(getattr(t, "id", "") in STYLE_ID_SETS for t in node.targets)
        if isinstance(node, ast.Raise) or is_style_ids:
            skip |= {id(child) for child in ast.walk(node)}
    return skip


def prose_tau_in_code(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _skipped_constants(tree)
    return [f"{path.name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and " " in node.value and WORD.search(node.value)]


def prose_tau_in_text(path: Path) -> list[str]:
    """Occurrences outside fenced blocks and inline code (``rst`` / `md`), README's generated block."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"<!-- GALLERY:BEGIN.*?<!-- GALLERY:END -->", "", text, flags=re.DOTALL)
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"``.*?``|`[^`]*`", "", text, flags=re.DOTALL)
    return [f"{path.relative_to(REPO)}: ...{text[max(0, m.start() - 30):m.end() + 30]!r}..." for m in WORD.finditer(text)]


def test_figure_and_table_text_spells_tau_as_the_greek_letter() -> None:
    found = [hit for path in READER_TEXT_MODULES for hit in prose_tau_in_code(path)]
    assert not found, "write τ in reader-facing text:\n" + "\n".join(found)


def test_docs_and_report_captions_spell_tau_as_the_greek_letter() -> None:
    paths = [REPO / "README.md", *sorted((REPO / "workflow/report").glob("*.rst")),
             *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "results.md")]  # results.md: generated
    found = [hit for path in paths for hit in prose_tau_in_text(path)]
    assert not found, "write τ in prose (tau only inside `code`):\n" + "\n".join(found)


def test_the_check_finds_prose_tau(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""doc with tau."""\nLABEL = "gain vs tau = 1"\nKEY = "tau"\nTEX = "$g=s/\\\\tau$"\n\n\n'
                      'def f():\n    raise ValueError("bad tau value")\n')
    assert [hit.split(": ", 1)[1] for hit in prose_tau_in_code(sample)] == ["'gain vs tau = 1'"]
