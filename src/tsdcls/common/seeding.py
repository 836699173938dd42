"""One call that makes a run repeatable: Python, NumPy and torch RNGs, deterministic kernels."""

from __future__ import annotations

import os
import random


def seed_everything(seed: int, deterministic: bool = True, with_torch: bool = True) -> None:
    """Seed every RNG this project uses; ask torch for deterministic algorithms.

    ``with_torch=False`` (figure/table jobs) leaves torch unimported: it costs seconds per job."""
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        pass
    if not with_torch:
        return
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def derive_seed(base: int, *labels: object) -> int:
    """A stable child seed for a labelled sub-task (a task, a rank, a length bin)."""
    import hashlib

    digest = hashlib.sha256(repr((base, *labels)).encode()).hexdigest()
    return int(digest[:8], 16)
