"""Keep every job off the network: hub libraries read only local files."""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def enforce_offline(allow_network: bool = False) -> dict[str, str]:
    """Set the hub libraries' offline switches (unless ``allow_network``); return what was set."""
    if allow_network:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        return {}
    os.environ.update(OFFLINE_ENV)
    return dict(OFFLINE_ENV)


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
