#!/usr/bin/env python3
"""Regenerate src/tsdcls/common/mteb_names.json from the installed mteb (run after bumping mteb).

    python workflow/scripts/mteb_names.py                  # rewrite the committed name list
    python workflow/scripts/mteb_names.py --check          # exit 1 when it differs from mteb
    python workflow/scripts/mteb_names.py --list tasks     # print the committed task names

The workflow checks `tempscale.tasks.hub.tasks` / `.benchmarks` against this list at parse time,
where mteb may not be installed (tsdcls.common.preflight); tests/test_mteb_names.py fails when the
list and the pinned mteb disagree.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from tsdcls.common.io import write_text  # noqa: E402
from tsdcls.common.mteb_names import NAMES_FILE, committed_names  # noqa: E402


def live_names() -> dict[str, Any]:
    """Every name mteb.get_task / mteb.get_benchmark accept (superseded, private, beta and
    aggregate tasks, benchmark aliases included); seconds, as every task class is instantiated."""
    import mteb

    logging.disable(logging.WARNING)  # mteb warns once per beta task it instantiates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tasks = mteb.get_tasks(exclude_superseded=False, exclude_private=False, exclude_beta=False)
    logging.disable(logging.NOTSET)
    benchmarks = mteb.get_benchmarks()
    return {
        "mteb": importlib.metadata.version("mteb"),
        "tasks": sorted({task.metadata.name for task in tasks}),
        "benchmarks": sorted({b.name for b in benchmarks} | {a for b in benchmarks for a in b.aliases or ()}),
    }


def differences(live: dict[str, Any], committed: dict[str, Any]) -> list[str]:
    out = [f"version: committed {committed['mteb']}, installed {live['mteb']}"] if live["mteb"] != committed["mteb"] else []
    for kind in ("tasks", "benchmarks"):
        added, gone = sorted(set(live[kind]) - set(committed[kind])), sorted(set(committed[kind]) - set(live[kind]))
        if added or gone:
            out.append(f"{kind}: {len(added)} new in mteb (e.g. {added[:3]}), {len(gone)} gone (e.g. {gone[:3]})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    parser.add_argument("--list", choices=("tasks", "benchmarks"), help="print the committed names")
    args = parser.parse_args()
    if args.list:
        print("\n".join(committed_names()[args.list]))
        return 0
    live = live_names()
    if args.check:
        problems = differences(live, committed_names())
        print(f"{NAMES_FILE}: " + ("matches mteb " + live["mteb"] if not problems else
                                   "differs from the installed mteb; rerun without --check: " + "; ".join(problems)))
        return 1 if problems else 0
    write_text(NAMES_FILE, json.dumps(live, indent=0) + "\n")
    print(f"{NAMES_FILE}: mteb {live['mteb']}, {len(live['tasks'])} tasks, {len(live['benchmarks'])} benchmark names")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
