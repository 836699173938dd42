"""Atomic writes and provenance round-trips for every file type the pipeline writes."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from tsdcls.common import io
from tsdcls.common.config import ConfigError, config_hash, parse_stage_config, require
from tsdcls.common.provenance import Provenance

PROV = Provenance("test", {"a": 1}, seed=3).as_dict()


def test_provenance_has_required_fields() -> None:
    for key in ("config_hash", "seed", "packages", "git_commit", "device", "started_at", "finished_at"):
        assert key in PROV, key
    assert PROV["seed"] == 3
    assert PROV["packages"]["torch"].startswith("2.")
    assert PROV["config_hash"] == config_hash({"a": 1}) != config_hash({"a": 2})


def test_config_hash_ignores_key_order() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})


@pytest.mark.parametrize("writer", ["json", "csv", "md", "tex", "png", "pdf"])
def test_every_format_carries_provenance(tmp_path: Path, writer: str) -> None:
    if writer == "json":
        path = io.write_json(tmp_path / "x.json", {"value": 1}, PROV)
    elif writer == "csv":
        path = io.write_csv(tmp_path / "x.csv", pd.DataFrame({"a": [1, 2], "b": ["x#y", "z"]}), PROV)
        frame = io.read_csv(path)
        assert list(frame["b"]) == ["x#y", "z"]
        assert frame.attrs["provenance"]["seed"] == 3
    elif writer in ("md", "tex"):
        path = io.write_table(tmp_path / f"x.{writer}", "| a |\n", PROV)
    else:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        paths = io.save_figure(fig, tmp_path / "fig", PROV)
        plt.close(fig)
        path = next(p for p in paths if p.suffix == f".{writer}")
    assert io.read_provenance(path) == json.loads(json.dumps(PROV))


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_table_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.md or \.tex"):
        io.write_table(tmp_path / "x.txt", "", PROV)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="'a.b.c' is missing"):
        require({"a": {"b": {}}}, "a.b.c")
    assert require({"a": {"b": 5}}, "a.b") == 5
    with pytest.raises(ConfigError, match="JSON object"):
        parse_stage_config("[1]")


def test_atomic_write_gives_umask_mode_not_private(tmp_path: Path) -> None:
    import os
    import stat

    from tsdcls.common.io import write_text

    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
