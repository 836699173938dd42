"""Atomic writes that carry provenance, so no result is ever half-written or anonymous."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

PROVENANCE_PREFIX = "# provenance: "


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); results get the usual umask-based mode
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(
    path: str | os.PathLike[str], payload: Mapping[str, Any], provenance: Mapping[str, Any]
) -> Path:
    """Write ``payload`` as JSON with a top-level ``provenance`` key."""
    body = dict(payload)
    body["provenance"] = dict(provenance)
    return write_text(path, json.dumps(body, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_csv(path: str | os.PathLike[str], frame: Any, provenance: Mapping[str, Any]) -> Path:
    """Write a pandas DataFrame as CSV whose first line is ``# provenance: {json}``."""
    header = PROVENANCE_PREFIX + json.dumps(dict(provenance), default=_json_default) + "\n"
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(header)
        frame.to_csv(handle, index=False)
    return Path(path)


def read_csv(path: str | os.PathLike[str]) -> Any:
    """Read a CSV written by :func:`write_csv` (or a plain one); provenance goes to ``.attrs``."""
    import pandas as pd

    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
    if first.startswith(PROVENANCE_PREFIX):
        frame = pd.read_csv(path, skiprows=1)
        frame.attrs["provenance"] = json.loads(first[len(PROVENANCE_PREFIX) :])
        return frame
    return pd.read_csv(path)


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Provenance of any result file this package writes (JSON, CSV, Markdown, LaTeX, PNG, PDF)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_json(path)["provenance"]
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            return json.loads(image.text["provenance"])
    if suffix == ".pdf":
        raw = path.read_bytes()
        start = raw.index(b"tsdcls-provenance:") + len(b"tsdcls-provenance:")
        end = raw.index(b":end-provenance", start)
        return json.loads(_pdf_unescape(raw[start:end].decode("latin-1")))
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            for prefix in (PROVENANCE_PREFIX, "<!-- provenance: ", "% provenance: "):
                if line.startswith(prefix):
                    return json.loads(line[len(prefix) :].removesuffix("\n").removesuffix(" -->"))
    raise ValueError(f"{path}: no provenance found")


def write_table(
    path: str | os.PathLike[str], text: str, provenance: Mapping[str, Any]
) -> Path:
    """Write a Markdown (.md) or LaTeX (.tex) table with provenance in a leading comment."""
    blob = json.dumps(dict(provenance), default=_json_default)
    suffix = Path(path).suffix.lower()
    if suffix == ".md":
        header = f"<!-- provenance: {blob} -->\n"
    elif suffix == ".tex":
        header = f"% provenance: {blob}\n"
    else:
        raise ValueError(f"{path}: tables are written as .md or .tex, not {suffix!r}")
    return write_text(path, header + text)


def save_figure(fig: Any, stem: str | os.PathLike[str], provenance: Mapping[str, Any], dpi: int = 150) -> list[Path]:
    """Save a matplotlib figure as ``stem.png`` (``dpi``, config key ``figures.dpi``) and
    ``stem.pdf``, provenance in their metadata."""
    blob = json.dumps(dict(provenance), default=_json_default)
    stem = Path(stem)
    written = []
    for suffix, metadata in (
        (".png", {"provenance": blob}),
        (".pdf", {"Keywords": f"tsdcls-provenance:{blob}:end-provenance"}),
    ):
        target = stem.with_suffix(suffix)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=suffix[1:], metadata=metadata, bbox_inches="tight", dpi=dpi)
        written.append(target)
    return written


def _pdf_unescape(text: str) -> str:
    return text.replace("\\(", "(").replace("\\)", ")").replace("\\\\", "\\")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
