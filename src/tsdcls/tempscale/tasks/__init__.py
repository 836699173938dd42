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


# scores.csv 'status' of a row mteb scored; a skipped split says why ("skipped: exceeds ...")
SCORED = "scored"


def usable_lengths(lengths: list[int], max_length: int, key: str) -> list[int]:
    """The configured lengths the model can read whole (longer ones: ``skipped_splits``)."""
    dropped = [int(n) for n in lengths if int(n) > max_length]
    if dropped:
        logger.warning("config key '%s': lengths %s exceed the model's %d tokens; recorded as skipped rows in "
                       "scores.csv", key, dropped, max_length)
    return [int(n) for n in lengths if int(n) <= max_length]


def skip_reason(max_length: int, position_limit: int | None) -> str:
    """Why a split longer than ``max_length`` tokens is not scored: the model or the config cap."""
    if position_limit is None:
        return f"skipped: exceeds the model's max_seq_length ({max_length} tokens)"
    if max_length >= position_limit:
        return f"skipped: exceeds model positions ({position_limit} tokens)"
    return f"skipped: exceeds tempscale.tasks.max_seq_length ({max_length} tokens)"


def skipped_splits(config: Mapping[str, Any], max_length: int) -> list[dict[str, Any]]:
    """task, task_type, split, length and metric of every enabled long-context split that is
    longer than ``max_length`` tokens: written to scores.csv as skipped rows, never dropped."""
    from tsdcls.tempscale.tasks import local

    classes = {"passkey": local.TsdclsPasskeyRetrieval, "needle": local.TsdclsNeedleRetrieval,
               "longdoc": local.TsdclsWikiLongDocRetrieval}
    rows = []
    for key, cls in classes.items():
        if config.get(key, {}).get("enabled"):
            rows += [{"task": cls.metadata.name, "task_type": cls.metadata.type, "split": f"test_{int(n)}",
                      "length": float(n), "metric": cls.metadata.main_score}
                     for n in sorted(int(n) for n in config[key]["lengths"]) if n > max_length]
    return rows


def build_local_tasks(
    config: Mapping[str, Any], count_tokens: TokenCounter, max_length: int, seed: int
) -> list[Any]:
    """The enabled local tasks of ``tempscale.tasks`` with their configured sizes; a long-context
    task whose every length exceeds ``max_length`` is left out (all its splits are skipped rows)."""
    from tsdcls.tempscale.tasks import local

    tasks: list[Any] = []
    section = "tempscale.tasks"
    lengths = {key: usable_lengths(config[key]["lengths"], max_length, f"{section}.{key}.lengths")
               for key in LONG_CONTEXT_KEYS if config.get(key, {}).get("enabled")}
    if lengths.get("passkey"):
        cfg = config["passkey"]
        tasks.append(
            local.TsdclsPasskeyRetrieval(
                lengths["passkey"],
                count_tokens,
                seed=seed,
                n_documents=cfg["n_documents"],
                n_queries=cfg["n_queries"],
            )
        )
    if lengths.get("needle"):
        cfg = config["needle"]
        tasks.append(
            local.TsdclsNeedleRetrieval(
                lengths["needle"],
                count_tokens,
                seed=seed,
                n_documents=cfg["n_documents"],
                n_queries=cfg["n_queries"],
                haystacks=list(cfg["haystacks"]),
            )
        )
    if lengths.get("longdoc"):
        cfg = config["longdoc"]
        tasks.append(
            local.TsdclsWikiLongDocRetrieval(
                lengths["longdoc"],
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
    if not tasks and not skipped_splits(config, max_length):
        raise ConfigError("config key 'tempscale.tasks': no task is enabled")
    return tasks
