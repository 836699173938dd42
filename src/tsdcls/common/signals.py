"""SIGTERM/SIGINT as a flag that long loops poll, so a stopped job ends at a safe point.

A job that Snakemake (or SLURM) stops must not write its final outputs afterwards: the loop sees
:attr:`StopFlag.requested`, saves what lets a retry resume, and raises :class:`Terminated`; the
CLI turns that into exit status 128 + signal number without writing any output.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class Terminated(Exception):  # noqa: N818 - it is a request, not an error of the code
    """The job was asked to stop by a signal; nothing final was written."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; no final output written")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopFlag:
    """Context manager recording SIGTERM/SIGINT instead of dying mid-step (main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def raise_if_requested(self) -> None:
        if self.signum is not None:
            raise Terminated(self.signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
