"""mteb's registry of task and benchmark names, readable at parse time without mteb.

``mteb_names.json`` beside this module lists every name ``mteb.get_task`` and
``mteb.get_benchmark`` accept in the pinned mteb version (benchmark aliases included);
``workflow/scripts/mteb_names.py`` regenerates it and ``tests/test_mteb_names.py`` fails when
the installed mteb no longer matches it. Standard library only (``tsdcls.common.preflight``).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NAMES_FILE = Path(__file__).with_name("mteb_names.json")


def committed_names() -> dict[str, Any]:
    """{'mteb': version, 'tasks': [...], 'benchmarks': [...]} as committed."""
    return json.loads(NAMES_FILE.read_text(encoding="utf-8"))


def installed_mteb_version() -> str | None:
    try:
        return importlib.metadata.version("mteb")
    except importlib.metadata.PackageNotFoundError:
        return None


def live_names() -> dict[str, Any]:
    """The same lists read from the installed mteb (seconds: every task class is instantiated)."""
    import logging
    import warnings

    import mteb

    logging.disable(logging.WARNING)  # mteb warns once per beta task it instantiates
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tasks = mteb.get_tasks(exclude_superseded=False, exclude_private=False, exclude_beta=False)
    finally:
        logging.disable(logging.NOTSET)
    benchmarks = mteb.get_benchmarks()
    return {
        "mteb": importlib.metadata.version("mteb"),
        "tasks": sorted({task.metadata.name for task in tasks}),
        "benchmarks": sorted({b.name for b in benchmarks} | {a for b in benchmarks for a in b.aliases or ()}),
    }


def known_names() -> dict[str, Any]:
    """The committed lists, or the installed mteb's own when its version differs from them."""
    names = committed_names()
    installed = installed_mteb_version()
    if installed is not None and installed != names["mteb"]:
        return live_names()
    return names


def unknown_name_problems(key: str, kind: str, given: Iterable[str], valid: Iterable[str], version: str) -> list[str]:
    """One line per name not in ``valid``, with the closest valid names and what to do."""
    valid = sorted(valid)
    out = []
    for name in given:
        if name in valid:
            continue
        close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
        hint = f"closest: {', '.join(close)}" if close else "no similar name"
        out.append(f"config key '{key}': {name!r} is not a {kind} of mteb {version} ({hint}); fix the name "
                   f"(all names: workflow/scripts/mteb_names.py --list {kind}s)")
    return out
