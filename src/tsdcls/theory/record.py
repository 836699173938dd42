"""One check's verdict, as written to results/theory/*checks.json."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any


class CheckFailed(RuntimeError):
    """A theory check is violated: the job must fail and write no checks file."""


@dataclass
class Check:
    """``worst_margin`` >= 0 means the claim holds (its unit is given in ``details``)."""

    name: str
    claim: str
    worst_margin: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return math.isfinite(self.worst_margin) and self.worst_margin >= 0.0

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        return {"name": body.pop("name"), "holds": self.holds, **body}


def failed(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checks (as dicts) whose claim does not hold (flag false or margin negative/NaN)."""
    return [check for check in checks if not (check.get("holds") is True and _nonnegative(check.get("worst_margin")))]


def _nonnegative(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) >= 0.0
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Cap NumPy/SciPy BLAS threads (ARPACK's mat-vecs) at the rule's ``threads``.

    Oversubscribed OpenBLAS threads spin on a shared 2-core machine: 1 thread measured ~7x less
    CPU time than 2 for the smoke checks.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - pinned in requirements.txt; keep working without it
        yield
        return
    with threadpool_limits(limits=max(1, threads)):
        yield
