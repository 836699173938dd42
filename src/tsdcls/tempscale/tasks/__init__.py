"""mteb tasks for the TempScale evaluation: local offline tasks and, online, hub tasks by name.

``build_tasks(config, count_tokens, max_length, seed)`` turns the ``tempscale.tasks`` config
section into mteb task objects. Local tasks (``local.py``) are built from real data in installed
packages; hub tasks (``hub.py``: LongEmbed, MTEB(eng, v2)) are mteb's own classes reading their
datasets from the Hugging Face cache (``resources.hf_cache``, filled by ``snakemake stage``); offline,
a task whose dataset is not cached fails fast, before any model loads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tsdcls.common.config import ConfigError
from tsdcls.tempscale.tasks.generators import TokenCounter

logger = logging.getLogger(__name__)

LOCAL_TASK_KEYS = ("passkey", "needle", "longdoc", "lee_sts", "polarity", "newsgroups")
LONG_CONTEXT_KEYS = ("passkey", "needle", "longdoc")


def usable_lengths(lengths: list[int], max_length: int, key: str) -> list[int]:
    """The configured lengths the model can read whole; longer ones are skipped with a warning."""
    keep = [int(n) for n in lengths if int(n) <= max_length]
    dropped = [int(n) for n in lengths if int(n) > max_length]
    if dropped:
        logger.warning("config key '%s': lengths %s exceed the model's %d tokens; skipped", key, dropped, max_length)
    if not keep:
        raise ConfigError(f"config key '{key}': every length {lengths} exceeds the model's {max_length} tokens")
    return keep


def build_local_tasks(
    config: Mapping[str, Any], count_tokens: TokenCounter, max_length: int, seed: int
) -> list[Any]:
    """The enabled local tasks of ``tempscale.tasks`` with their configured sizes."""
    from tsdcls.tempscale.tasks import local

    tasks: list[Any] = []
    section = "tempscale.tasks"
    if config.get("passkey", {}).get("enabled"):
        cfg = config["passkey"]
        tasks.append(
            local.TsdclsPasskeyRetrieval(
                usable_lengths(cfg["lengths"], max_length, f"{section}.passkey.lengths"),
                count_tokens,
                seed=seed,
                n_documents=cfg["n_documents"],
                n_queries=cfg["n_queries"],
            )
        )
    if config.get("needle", {}).get("enabled"):
        cfg = config["needle"]
        tasks.append(
            local.TsdclsNeedleRetrieval(
                usable_lengths(cfg["lengths"], max_length, f"{section}.needle.lengths"),
                count_tokens,
                seed=seed,
                n_documents=cfg["n_documents"],
                n_queries=cfg["n_queries"],
                haystacks=list(cfg["haystacks"]),
            )
        )
    if config.get("longdoc", {}).get("enabled"):
        cfg = config["longdoc"]
        tasks.append(
            local.TsdclsWikiLongDocRetrieval(
                usable_lengths(cfg["lengths"], max_length, f"{section}.longdoc.lengths"),
                count_tokens,
                seed=seed,
                n_articles=cfg["n_articles"],
                query_tokens=cfg["query_tokens"],
            )
        )
    if config.get("lee_sts", {}).get("enabled"):
        tasks.append(local.TsdclsLeeSTS(max_pairs=config["lee_sts"].get("max_pairs"), seed=seed))
    if config.get("polarity", {}).get("enabled"):
        cfg = config["polarity"]
        tasks.append(
            local.TsdclsPolarityClassification(
                samples_per_label=cfg["samples_per_label"], n_experiments=cfg["n_experiments"], seed=seed
            )
        )
    if config.get("newsgroups", {}).get("enabled"):
        cfg = config["newsgroups"]
        tasks.append(
            local.TsdclsNewsgroupsClustering(
                max_documents=cfg.get("max_documents"),
                documents_per_experiment=cfg["documents_per_experiment"],
                n_experiments=cfg["n_experiments"],
                seed=seed,
            )
        )
    return tasks


def build_tasks(
    config: Mapping[str, Any], count_tokens: TokenCounter, max_length: int, seed: int, allow_network: bool
) -> list[Any]:
    """Local tasks plus the configured hub tasks (data from the cache; downloaded only online)."""
    from tsdcls.tempscale.tasks.hub import hub_tasks

    tasks = build_local_tasks(config, count_tokens, max_length, seed)
    hub = config.get("hub", {})
    tasks += hub_tasks(hub.get("tasks", []), hub.get("benchmarks", []), allow_network=allow_network)
    if not tasks:
        raise ConfigError("config key 'tempscale.tasks': no task is enabled")
    return tasks
