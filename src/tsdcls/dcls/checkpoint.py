"""Checkpoints of one training run: ``last.pt`` and the one before it, ``prev.pt``, in a directory.

A checkpoint carries the run's *identity*: a hash of exactly what changes the training
trajectory (see ``train.trajectory_identity``). On resume:

* a file that does not load (truncated, corrupt) is moved aside to ``last.corrupt.pt`` with a
  warning naming it, and the run resumes from ``prev.pt`` or starts over;
* a checkpoint of another identity is not resumed from; if it belongs to a *finished* run (or
  its state is unknown) it is moved aside to ``last.<its hash>.pt``, so an unrelated config edit
  never destroys finished training;
* writing renames ``last.pt`` to ``prev.pt`` only after the new file is complete on disk, so a
  kill at any moment leaves at least one whole checkpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

LOG = logging.getLogger("tsdcls.dcls.checkpoint")
CHECKPOINT_NAME = "last.pt"
PREVIOUS_NAME = "prev.pt"
CHECKPOINT_FORMAT = 2


def aside_path(path: Path, tag: str) -> Path:
    """``last.pt`` -> ``last.<tag>.pt`` (``last.<tag>.1.pt`` ... when taken): never overwrites."""
    candidate = path.with_name(f"{path.stem}.{tag}{path.suffix}")
    index = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.{tag}.{index}{path.suffix}")
        index += 1
    return candidate


class CheckpointStore:
    """``last.pt`` + ``prev.pt`` of one run; reads are checked, writes atomic, foreign files kept."""

    def __init__(self, directory: Path | None, identity: str) -> None:
        self.directory = directory
        self.identity = identity
        self._resolved: tuple[Path, dict[str, Any]] | None = None

    @property
    def last(self) -> Path | None:
        return self.directory / CHECKPOINT_NAME if self.directory else None

    @property
    def previous(self) -> Path | None:
        return self.directory / PREVIOUS_NAME if self.directory else None

    def resolve(self) -> Path | None:
        """The newest whole checkpoint of this identity, after moving bad or foreign files aside.

        Call on one process only (rank 0): it renames files.
        """
        for path in (self.last, self.previous):
            state = self._read(path) if path is not None and path.is_file() else None
            if state is not None:
                self._resolved = (path, state)
                return path
        return None

    def load(self, path: Path) -> dict[str, Any]:
        """The checkpoint that :meth:`resolve` chose (on another rank: read it again)."""
        if self._resolved is not None and self._resolved[0] == path:
            return self._resolved[1]
        return torch.load(path, map_location="cpu", weights_only=False)

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - any unreadable file is handled the same way
            aside = aside_path(path, "corrupt")
            os.replace(path, aside)
            LOG.warning("checkpoint %s is unreadable (%s: %s); moved aside to %s", path, type(err).__name__,
                        str(err).splitlines()[0] if str(err) else "", aside.name)
            return None
        if not isinstance(state, Mapping) or "model" not in state:
            aside = aside_path(path, "corrupt")
            os.replace(path, aside)
            LOG.warning("checkpoint %s is not a training checkpoint; moved aside to %s", path, aside.name)
            return None
        theirs = str(state.get("identity") or state.get("config_hash") or "unknown")
        if state.get("format") == CHECKPOINT_FORMAT and theirs == self.identity:
            return dict(state)
        finished = state.get("finished")  # None: an older format, whose state is unknown
        if finished is not False and path.name == CHECKPOINT_NAME:
            aside = aside_path(path, theirs)
            os.replace(path, aside)
            what = "a finished run" if finished else "a run of an older checkpoint format"
            LOG.warning("checkpoint %s belongs to %s of identity %s, not this run's %s: kept as %s",
                        path, what, theirs, self.identity, aside.name)
        else:
            LOG.warning("ignoring checkpoint %s: identity %s, this run is %s (unfinished; it will be replaced)",
                        path, theirs, self.identity)
        return None

    def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` (with this identity) as ``last.pt``; the old ``last.pt`` becomes ``prev.pt``."""
        if self.last is None or self.previous is None:
            return
        self.last.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.last.with_name(f".{CHECKPOINT_NAME}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                torch.save({**state, "format": CHECKPOINT_FORMAT, "identity": self.identity}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            if self.last.exists():
                os.replace(self.last, self.previous)
            os.replace(tmp, self.last)
        finally:
            tmp.unlink(missing_ok=True)
