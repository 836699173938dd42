"""mteb's registry of task and benchmark names, readable at parse time without mteb.

``mteb_names.json`` beside this module lists every name ``mteb.get_task`` and
``mteb.get_benchmark`` accept in the pinned mteb version (benchmark aliases included);
``workflow/scripts/mteb_names.py`` regenerates it from the installed mteb and
``tests/test_mteb_names.py`` fails when the two disagree. Standard library only
(``tsdcls.common.preflight`` runs under a Python that has nothing but Snakemake).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NAMES_FILE = Path(__file__).with_name("mteb_names.json")
REGENERATE = "python workflow/scripts/mteb_names.py"


def committed_names() -> dict[str, Any]:
    """{'mteb': version, 'tasks': [...], 'benchmarks': [...]} as committed."""
    return json.loads(NAMES_FILE.read_text(encoding="utf-8"))


def installed_mteb_version() -> str | None:
    """The installed mteb's version (None without mteb), read without importing it."""
    try:
        return importlib.metadata.version("mteb")
    except importlib.metadata.PackageNotFoundError:
        return None


def unknown_name_problems(key: str, kind: str, given: Iterable[str], valid: Iterable[str], version: str,
                          installed: str | None = None) -> list[str]:
    """One line per name not in ``valid``: the closest valid names and what to do (and, when the
    installed mteb is another version than the list's, how to regenerate the list)."""
    valid = sorted(valid)
    stale = (f"; the list is mteb {version}'s but mteb {installed} is installed: regenerate it with {REGENERATE}"
             if installed and installed != version else "")
    out = []
    for name in given:
        if name in valid:
            continue
        close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
        hint = f"closest: {', '.join(close)}" if close else "no similar name"
        out.append(f"config key '{key}': {name!r} is not a {kind} of mteb {version} ({hint}); fix the name "
                   f"(all names: {REGENERATE} --list {kind}s){stale}")
    return out
