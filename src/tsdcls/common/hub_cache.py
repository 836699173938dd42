"""The one Hugging Face cache that hub models and datasets are staged into and read from.

Layout is the hub client's own (``<HF_HOME>/hub/{models,datasets}--org--name/{blobs,refs,
snapshots/<revision>}``), so ``snakemake stage`` fills it with ``huggingface_hub.snapshot_download``
on a machine with internet and every compute job reads it with ``HF_HUB_OFFLINE=1``. The root is
``resources.hf_cache`` (exported as ``HF_HOME`` by workflow/rules/stage.smk), else ``HF_HOME``,
else ``~/.cache/huggingface``. Revisions are always pinned: models by ``tempscale.model_revisions``,
datasets by mteb's task metadata.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsdcls.common.offline import is_offline

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
REPO_KINDS = ("model", "dataset")


class HubEntryMissingError(FileNotFoundError):
    """A pinned hub model or dataset is not in the cache (and the run may not download it)."""


@dataclass(frozen=True)
class HubEntry:
    """One pinned repository: what ``snakemake stage`` fetches and a job later reads."""

    kind: str  # "model" or "dataset"
    repo_id: str
    revision: str

    def label(self) -> str:
        return f"{self.kind} {self.repo_id}@{self.revision}"


def is_hub_id(name: str) -> bool:
    """'org/name' (one slash, hub characters) and not an existing local path."""
    return bool(HUB_ID.match(name)) and not Path(name).exists()


def hf_home(configured: str | os.PathLike[str] | None = None) -> Path:
    """Root of the cache: the configured folder, else HF_HOME, else ~/.cache/huggingface."""
    root = configured or os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(root).expanduser().resolve()


def hub_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """The hub-client cache under the root (HF_HUB_CACHE wins when set and no root is given)."""
    if home is None and os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser().resolve()
    return hf_home(home) / "hub"


def missing_message(entry: HubEntry, cache: Path, why: str = "") -> str:
    """The one line a job prints when an entry is not staged."""
    reason = f" ({why})" if why else ""
    return (
        f"{entry.kind} '{entry.repo_id}' at revision {entry.revision} is not in the Hugging Face cache "
        f"{cache} (config key 'resources.hf_cache'){reason}; run `snakemake stage` on a machine with "
        "internet access, then rerun"
    )


def snapshot(entry: HubEntry, home: str | os.PathLike[str] | None = None, download: bool | None = None) -> Path:
    """The local snapshot folder of ``entry``; downloads it first when ``download`` (default: the
    run is online). Offline, a missing entry raises HubEntryMissingError naming it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if entry.kind not in REPO_KINDS:
        raise ValueError(f"hub entry kind {entry.kind!r} is not one of {REPO_KINDS}")
    cache = hub_dir(home)
    online = (not is_offline()) if download is None else download
    try:
        folder = snapshot_download(
            entry.repo_id, revision=entry.revision, repo_type=entry.kind, cache_dir=cache,
            local_files_only=not online,
        )  # fmt: skip
    except LocalEntryNotFoundError as err:
        why = "the run is offline: HF_HUB_OFFLINE=1 or allow_network: false" if not online else ""
        raise HubEntryMissingError(missing_message(entry, cache, why)) from err
    return Path(folder)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_record(entry: HubEntry, folder: Path) -> dict[str, Any]:
    """name, kind, revision, files (path, bytes, sha256 of the content) and total bytes."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        real = path.resolve()
        files.append({"path": path.relative_to(folder).as_posix(), "bytes": real.stat().st_size, "sha256": _sha256(real)})
    return {
        "name": entry.repo_id, "kind": entry.kind, "revision": entry.revision, "snapshot": str(folder),
        "files": files, "n_files": len(files), "bytes": sum(f["bytes"] for f in files),
    }  # fmt: skip
