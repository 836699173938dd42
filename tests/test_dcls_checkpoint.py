"""CheckpointStore on small real files: which checkpoint a run resumes from, and what is kept aside."""

from __future__ import annotations

from pathlib import Path

import torch

from tsdcls.dcls.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME, CheckpointStore


def _state(step: int, finished: bool = False) -> dict:
    return {"model": {"w": torch.full((2,), float(step))}, "global_step": step, "finished": finished}


def test_save_rotates_last_into_prev_and_resolve_prefers_last(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "abc")
    store.save(_state(1))
    store.save(_state(2))
    assert torch.load(tmp_path / PREVIOUS_NAME, weights_only=False)["global_step"] == 1
    assert store.resolve() == tmp_path / CHECKPOINT_NAME
    assert store.load(tmp_path / CHECKPOINT_NAME)["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME, PREVIOUS_NAME]  # no temp file left


def test_killed_between_the_two_renames_resumes_from_prev(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "abc")
    store.save(_state(1))
    store.save(_state(2))
    # a third save killed after renaming last.pt to prev.pt, before its own file took the name
    (tmp_path / CHECKPOINT_NAME).replace(tmp_path / PREVIOUS_NAME)
    fresh = CheckpointStore(tmp_path, "abc")
    assert fresh.resolve() == tmp_path / PREVIOUS_NAME
    assert fresh.load(tmp_path / PREVIOUS_NAME)["global_step"] == 2


def test_unfinished_foreign_checkpoint_is_ignored_finished_one_kept(tmp_path: Path) -> None:
    CheckpointStore(tmp_path, "old").save(_state(3, finished=False))
    assert CheckpointStore(tmp_path, "new").resolve() is None
    assert (tmp_path / CHECKPOINT_NAME).exists()  # unfinished: left to be replaced, not multiplied
    CheckpointStore(tmp_path, "old").save(_state(4, finished=True))
    assert CheckpointStore(tmp_path, "new").resolve() is None
    assert torch.load(tmp_path / "last.old.pt", weights_only=False)["global_step"] == 4
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_no_directory_means_no_checkpoints(tmp_path: Path) -> None:
    store = CheckpointStore(None, "abc")
    store.save(_state(1))
    assert store.resolve() is None and not any(tmp_path.iterdir())
