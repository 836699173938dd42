"""The committed mteb name list (parse-time check of hub task names) is mteb's own registry."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO
from tsdcls.common import mteb_names


def test_committed_list_equals_the_pinned_mteb_registry() -> None:
    """Fails when mteb is bumped without `python workflow/scripts/mteb_names.py`."""
    pin = re.search(r"^mteb==(\S+)", (REPO / "requirements.txt").read_text(), re.MULTILINE).group(1)
    committed = mteb_names.committed_names()
    assert committed["mteb"] == pin == mteb_names.installed_mteb_version(), "regenerate: python workflow/scripts/mteb_names.py"
    proc = subprocess.run([sys.executable, "workflow/scripts/mteb_names.py", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert {"LEMBPasskeyRetrieval", "LEMBNeedleRetrieval"} <= set(committed["tasks"])
    assert {"MTEB(eng, v2)", "MTEB(eng)"} <= set(committed["benchmarks"])  # a name and an alias


def test_unknown_names_get_the_closest_valid_ones() -> None:
    lines = mteb_names.unknown_name_problems("tempscale.tasks.hub.tasks", "task", ["LEMBPaskeyRetrieval", "STS12"],
                                             ["LEMBPasskeyRetrieval", "STS12", "STS13"], "9.9")
    assert lines == [
        "config key 'tempscale.tasks.hub.tasks': 'LEMBPaskeyRetrieval' is not a task of mteb 9.9 (closest: "
        "LEMBPasskeyRetrieval); fix the name (all names: python workflow/scripts/mteb_names.py --list tasks)"
    ]
    stale = mteb_names.unknown_name_problems("k", "task", ["New"], ["Old"], "9.9", installed="10.0")
    assert stale[0].endswith("the list is mteb 9.9's but mteb 10.0 is installed: regenerate it with "
                             "python workflow/scripts/mteb_names.py")
