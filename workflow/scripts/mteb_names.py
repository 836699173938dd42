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
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from tsdcls.common.io import write_text  # noqa: E402
from tsdcls.common.mteb_names import NAMES_FILE, committed_names, live_names  # noqa: E402


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
        same = live == committed_names()
        print(f"{NAMES_FILE}: {'matches' if same else 'differs from'} mteb {live['mteb']}")
        return 0 if same else 1
    write_text(NAMES_FILE, json.dumps(live, indent=0) + "\n")
    print(f"{NAMES_FILE}: mteb {live['mteb']}, {len(live['tasks'])} tasks, {len(live['benchmarks'])} benchmark names")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
