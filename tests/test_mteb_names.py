"""The committed mteb name list (parse-time check of hub task names) is mteb's own registry."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REPO
from tsdcls.common import mteb_names


def test_committed_list_equals_the_pinned_mteb_registry() -> None:
    """Fails when mteb is bumped without `python workflow/scripts/mteb_names.py`."""
    pin = re.search(r"^mteb==(\S+)", (REPO / "requirements.txt").read_text(), re.MULTILINE).group(1)
    committed = mteb_names.committed_names()
    assert committed["mteb"] == pin, "regenerate with: python workflow/scripts/mteb_names.py"
    live = mteb_names.live_names()
    assert live["mteb"] == pin
    assert set(committed["tasks"]) == set(live["tasks"]), sorted(set(committed["tasks"]) ^ set(live["tasks"]))[:10]
    assert set(committed["benchmarks"]) == set(live["benchmarks"])
    assert {"LEMBPasskeyRetrieval", "LEMBNeedleRetrieval"} <= set(committed["tasks"])
    assert {"MTEB(eng, v2)", "MTEB(eng)"} <= set(committed["benchmarks"])  # a name and an alias


def test_another_installed_mteb_version_is_read_directly(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = {**mteb_names.committed_names(), "mteb": "0.0.1", "tasks": ["OnlyThisTask"]}
    (tmp_path / "names.json").write_text(json.dumps(stale))
    monkeypatch.setattr(mteb_names, "NAMES_FILE", tmp_path / "names.json")
    known = mteb_names.known_names()
    assert known["mteb"] == mteb_names.installed_mteb_version() and "LEMBPasskeyRetrieval" in known["tasks"]


def test_unknown_names_get_the_closest_valid_ones() -> None:
    lines = mteb_names.unknown_name_problems("tempscale.tasks.hub.tasks", "task", ["LEMBPaskeyRetrieval", "STS12"],
                                             ["LEMBPasskeyRetrieval", "STS12", "STS13"], "9.9")
    assert lines == [
        "config key 'tempscale.tasks.hub.tasks': 'LEMBPaskeyRetrieval' is not a task of mteb 9.9 (closest: "
        "LEMBPasskeyRetrieval); fix the name (all names: workflow/scripts/mteb_names.py --list tasks)"
    ]
