"""Stage once, compute offline: every hub model and dataset the config names, at pinned revisions.

``hub_entries(tempscale_config)`` lists them (parse time: the ``stage`` rule's message shows the
list, so ``snakemake -n stage`` says what would be fetched). Verb ``hub-stage`` (rule ``stage``,
a local rule for the login node) fetches each into ``resources.hf_cache`` with
``huggingface_hub.snapshot_download`` and writes a manifest (name, kind, revision, files with
bytes and sha256). Run offline (HF_HUB_OFFLINE=1, or ``allow_network: false``) the same job only
checks the cache and writes the manifest, or fails naming every missing entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tsdcls.common import hub_cache
from tsdcls.common.assets import OFFLINE_ALIASES
from tsdcls.common.config import ConfigError
from tsdcls.common.offline import is_offline


def model_entries(config: Mapping[str, Any]) -> list[hub_cache.HubEntry]:
    """Hub models of tempscale.models and tempscale.ablation.models, each at its pinned revision."""
    names = [*config.get("models", []), *config.get("ablation", {}).get("models", [])]
    revisions = config.get("model_revisions") or {}
    entries = []
    for name in dict.fromkeys(str(n) for n in names):
        if name in OFFLINE_ALIASES or not hub_cache.is_hub_id(name):
            continue  # installed packages and local folders need no staging
        if name not in revisions:
            raise ConfigError(f"config key 'tempscale.model_revisions' pins no revision for hub model '{name}'")
        entries.append(hub_cache.HubEntry("model", name, str(revisions[name])))
    return entries


def hub_entries(config: Mapping[str, Any]) -> list[hub_cache.HubEntry]:
    """Every hub model and dataset the tempscale section names (datasets at mteb's revisions)."""
    from tsdcls.tempscale.tasks.hub import configured_tasks, dataset_entries

    if not config.get("enabled", True):
        return []
    hub = config.get("tasks", {}).get("hub", {})
    tasks = configured_tasks(hub.get("tasks", []), hub.get("benchmarks", []))
    return model_entries(config) + dataset_entries(tasks)


def stage_entries(entries: Sequence[hub_cache.HubEntry], home: str | None) -> list[dict[str, Any]]:
    """Fetch (online) or check (offline) every entry; one error line per missing entry."""
    records, missing = [], []
    for entry in entries:
        try:
            records.append(hub_cache.manifest_record(entry, hub_cache.snapshot(entry, home=home)))
        except hub_cache.HubEntryMissingError as err:
            missing.append(str(err))
    if missing:
        raise ConfigError(f"{len(missing)} of {len(entries)} hub entries are missing:\n" + "\n".join(missing))
    return records


def run_stage(job: Any) -> None:
    """Verb ``hub-stage``: params ``entries`` ([kind, repo_id, revision] each) and ``hf_cache``."""
    from tsdcls.common.io import write_json

    entries = [hub_cache.HubEntry(*map(str, item)) for item in job.params.get("entries", [])]
    home = job.params.get("hf_cache") or None
    records = stage_entries(entries, home)
    manifest = {
        "hf_cache": str(hub_cache.hf_home(home)), "offline": is_offline(),
        "n_entries": len(records), "bytes": sum(r["bytes"] for r in records), "entries": records,
    }  # fmt: skip
    write_json(job.output("manifest"), manifest, job.prov())
