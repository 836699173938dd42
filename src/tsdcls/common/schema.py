"""JSON-schema checks of data files, one line per problem naming the key.

Used at parse time by workflow/rules/common.smk (jsonschema comes with Snakemake) and by the jobs
that read the files, so a hand edit of a data file fails before any job and never half-way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


def key_path(parts: Iterable[Any]) -> str:
    """['rows', 'E5', 0] -> 'rows.E5[0]' (the way the files' readers name keys)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_problems(data: Any, schema_path: str | Path) -> list[str]:
    """"key 'a.b[0]': message" for every violation of the schema, sorted by key."""
    from jsonschema import Draft202012Validator

    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"key '{key_path(e.absolute_path) or '<top level>'}': {e.message}" for e in errors]
