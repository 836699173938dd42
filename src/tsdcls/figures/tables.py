"""Markdown and LaTeX tables for every stage, without pandas' optional `tabulate` dependency.

Each renderer takes a pandas DataFrame whose cells are already what the reader should see
(strings, or numbers formatted with ``float_format``), so a table says the same thing in both
formats. ``write_tables`` writes the ``.md`` and ``.tex`` pair atomically with provenance.

    from tsdcls.figures.tables import write_tables
    write_tables(frame, "results/tables/dcls_ablation", job.prov(), caption="DCLS ablation")
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tsdcls.common.io import write_table

MISSING = "–"
ALIGNMENTS = ("left", "right", "center")

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_UNICODE_TO_LATEX = {
    "±": r"$\pm$",
    "→": r"$\rightarrow$",
    "Δ": r"$\Delta$",
    "τ": r"$\tau$",
    "σ": r"$\sigma$",
    "×": r"$\times$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "–": "--",
    "—": "---",
    "·": r"$\cdot$",
}


def format_cell(value: Any, float_format: str = "{:.2f}") -> str:
    """One cell as text: NaN/None become a dash, floats use ``float_format``, ints stay exact."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING
        return float_format.format(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        return format_cell(value.item(), float_format)
    text = str(value)
    return text if text.strip() else MISSING


def _cells(frame: Any, float_format: str) -> tuple[list[str], list[list[str]]]:
    headers = [str(column) for column in frame.columns]
    rows = [[format_cell(value, float_format) for value in row] for row in frame.itertuples(index=False)]
    return headers, rows


def _alignments(frame: Any, align: Sequence[str] | Mapping[str, str] | None) -> list[str]:
    """Numbers right, text left, unless ``align`` says otherwise (per column or by name)."""
    columns = [str(column) for column in frame.columns]
    if isinstance(align, Mapping):
        chosen = [align.get(column, "") for column in columns]
    elif align is not None:
        if len(align) != len(columns):
            raise ValueError(f"align has {len(align)} entries for {len(columns)} columns")
        chosen = list(align)
    else:
        chosen = [""] * len(columns)
    result = []
    for column, wanted in zip(frame.columns, chosen, strict=True):
        if not wanted:
            kind = getattr(frame[column].dtype, "kind", "O")
            wanted = "right" if kind in "iuf" else "left"
        if wanted not in ALIGNMENTS:
            raise ValueError(f"alignment {wanted!r} of column {column!r} not in {ALIGNMENTS}")
        result.append(wanted)
    return result


def _escape_markdown(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def to_markdown(
    frame: Any,
    *,
    caption: str | None = None,
    align: Sequence[str] | Mapping[str, str] | None = None,
    float_format: str = "{:.2f}",
    notes: Sequence[str] = (),
) -> str:
    """A GitHub-flavoured Markdown table (padded so the plain text reads as a table too)."""
    headers, rows = _cells(frame, float_format)
    headers = [_escape_markdown(h) for h in headers]
    rows = [[_escape_markdown(c) for c in row] for row in rows]
    aligns = _alignments(frame, align)
    widths = [max([3, len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if how == "right" else cell.center(width) if how == "center" else cell.ljust(width)
            for cell, width, how in zip(cells, widths, aligns, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule_cells = []
    for width, how in zip(widths, aligns, strict=True):
        dashes = "-" * width
        if how == "right":
            dashes = dashes[:-1] + ":"
        elif how == "center":
            dashes = ":" + dashes[1:-1] + ":"
        rule_cells.append(dashes)
    parts = []
    if caption:
        parts += [f"**{_escape_markdown(caption)}**", ""]
    parts += [line(headers), "| " + " | ".join(rule_cells) + " |", *(line(row) for row in rows)]
    if notes:
        parts += ["", *(f"{note}" for note in notes)]
    return "\n".join(parts) + "\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few Unicode symbols our tables use to math macros."""
    escaped = "".join(_LATEX_SPECIALS.get(char, char) for char in text)
    for char, macro in _UNICODE_TO_LATEX.items():
        escaped = escaped.replace(char, macro)
    return escaped


def to_latex(
    frame: Any,
    *,
    caption: str | None = None,
    label: str | None = None,
    align: Sequence[str] | Mapping[str, str] | None = None,
    float_format: str = "{:.2f}",
    notes: Sequence[str] = (),
) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}`` in the document)."""
    headers, rows = _cells(frame, float_format)
    spec = "".join({"left": "l", "right": "r", "center": "c"}[how] for how in _alignments(frame, align))
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        if not re.fullmatch(r"[A-Za-z0-9:_\-.]+", label):
            raise ValueError(f"LaTeX label {label!r} may hold only letters, digits and :_-.")
        lines.append(rf"\label{{{label}}}")
    lines += [
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in headers) + r" \\",
        r"\midrule",
        *(" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if notes:
        lines.append(r"\par\smallskip\footnotesize " + r" \\ ".join(latex_escape(n) for n in notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_tables(
    frame: Any,
    stem: str | os.PathLike[str],
    provenance: Mapping[str, Any],
    *,
    caption: str | None = None,
    label: str | None = None,
    align: Sequence[str] | Mapping[str, str] | None = None,
    float_format: str = "{:.2f}",
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``stem.md`` and ``stem.tex`` (atomic, with provenance) from one DataFrame."""
    stem = Path(stem)
    options = {"caption": caption, "align": align, "float_format": float_format, "notes": notes}
    md = write_table(stem.with_suffix(".md"), to_markdown(frame, **options), provenance)
    tex = write_table(stem.with_suffix(".tex"), to_latex(frame, label=label, **options), provenance)
    return md, tex


def to_html(frame: Any, *, caption: str | None = None, float_format: str = "{:.2f}",
            notes: Sequence[str] = ()) -> str:
    """A plain HTML ``<table>`` (for the Snakemake report, which shows HTML but not Markdown)."""
    from html import escape

    headers, rows = _cells(frame, float_format)
    aligns = _alignments(frame, None)
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead>")
    parts.append("<tbody>")
    for row in rows:
        cells = "".join(f'<td style="text-align:{how}">{escape(cell)}</td>'
                        for cell, how in zip(row, aligns, strict=True))
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</tbody></table>")
    parts += [f"<p class=\"note\">{escape(note)}</p>" for note in notes]
    return "\n".join(parts) + "\n"


HTML_STYLE = (
    "body{font-family:sans-serif;font-size:13px;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 0.3em}"
    "th,td{border-bottom:1px solid #ccc;padding:3px 8px;vertical-align:top}"
    "th{background:#f2f2f2;text-align:left}caption{font-weight:bold;text-align:left;padding:4px 0}"
    ".note{color:#555;font-size:12px;margin:0.2em 0 1.2em}"
)


def html_page(title: str, body: str, provenance: Mapping[str, Any]) -> str:
    """A self-contained HTML page; provenance in a leading comment that read_provenance finds."""
    import json
    from html import escape

    blob = json.dumps(dict(provenance), default=str)
    return (
        f"<!DOCTYPE html>\n<!-- provenance: {blob} -->\n<html><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{HTML_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
