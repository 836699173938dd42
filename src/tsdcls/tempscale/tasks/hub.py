"""Hub tasks (LongEmbed, MTEB(eng, v2)) as mteb's own task classes, their data read from the cache.

One mechanism serves both the staging login node and the offline compute node: every task's
dataset (``metadata.dataset``: path + revision, as mteb pins it) is resolved to its snapshot in
the Hugging Face cache (``resources.hf_cache``, the layout ``snapshot_download`` writes; see
``tsdcls.common.hub_cache``), and the task instance's ``metadata.dataset['path']`` is pointed at
that folder. mteb's loaders then call ``datasets.load_dataset`` on the local snapshot: the task
classes, metadata, splits, revisions and main scores stay mteb's; only the bytes are local.

Online (``allow_network: true`` and no HF_HUB_OFFLINE), a missing snapshot is downloaded at the
pinned revision. Offline, a missing one fails at once, before any model is loaded, naming the
task, dataset, revision, ``allow_network`` and ``snakemake stage``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from tsdcls.common import hub_cache
from tsdcls.common.config import ConfigError
from tsdcls.common.offline import is_offline

LONGEMBED_TASKS = (
    "LEMBNarrativeQARetrieval",
    "LEMBQMSumRetrieval",
    "LEMBWikimQARetrieval",
    "LEMBSummScreenFDRetrieval",
    "LEMBPasskeyRetrieval",
    "LEMBNeedleRetrieval",
)
MTEB_ENGLISH = "MTEB(eng, v2)"

# dwzhu/LongEmbed keeps corpus (doc_id, text), queries (qid, text) and qrels (qid, doc_id) as
# three splits of one config. datasets >= 5 infers one schema from the first split and rejects
# the others ("column names don't match"), so mteb's LEMB{NarrativeQA,QMSum,WikimQA,SummScreenFD,
# Needle}Retrieval cannot load it, from the hub or the cache. Their union schema, passed as
# load_dataset(features=...), lets every split load with the columns it lacks set to None;
# mteb's loaders read only the columns each split has.
UNION_FEATURES = {
    "dwzhu/LongEmbed": {"qid": "string", "doc_id": "string", "text": "string", "context_length": "int64"},
}


def configured_tasks(task_names: Sequence[str], benchmark_names: Sequence[str]) -> list[Any]:
    """mteb task objects for hub task names and benchmark names (e.g. 'MTEB(eng, v2)')."""
    import mteb

    tasks: list[Any] = []
    if task_names:
        try:
            tasks += list(mteb.get_tasks(tasks=list(task_names)))
        except (KeyError, ValueError) as err:
            raise ConfigError(f"config key 'tempscale.tasks.hub.tasks': {err}") from err
    for name in benchmark_names:
        try:
            tasks += list(mteb.get_benchmark(name).tasks)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"config key 'tempscale.tasks.hub.benchmarks': {err}") from err
    return tasks


def leaf_tasks(task: Any) -> Iterator[Any]:
    """The task itself, or the sub-tasks of an aggregate task (each loads its own dataset)."""
    subtasks = getattr(task.metadata, "tasks", None)  # AggregateTaskMetadata: its dataset is a dummy
    if subtasks:
        for sub in subtasks:
            yield from leaf_tasks(sub)
    else:
        yield task


def dataset_entry(task: Any) -> hub_cache.HubEntry:
    """The pinned dataset of one mteb task (path and revision from mteb's own metadata)."""
    dataset = task.metadata.dataset
    return hub_cache.HubEntry("dataset", str(dataset["path"]), str(dataset["revision"]))


def dataset_entries(tasks: Sequence[Any]) -> list[hub_cache.HubEntry]:
    """Every distinct dataset the tasks read, in task order."""
    entries = [dataset_entry(leaf) for task in tasks for leaf in leaf_tasks(task)]
    return list(dict.fromkeys(entries))


def point_at_cache(task: Any, download: bool) -> None:
    """Resolve the task's dataset in the cache and point its metadata path at the snapshot."""
    entry = dataset_entry(task)
    try:
        folder = hub_cache.snapshot(entry, download=download)
    except hub_cache.HubEntryMissingError as err:
        raise ConfigError(
            f"hub task '{task.metadata.name}' (config key 'tempscale.tasks.hub'; allow_network / "
            f"HF_HUB_OFFLINE): {err}"
        ) from err
    dataset = {**task.metadata.dataset, "path": str(folder)}
    if entry.repo_id in UNION_FEATURES:
        import datasets

        dataset["features"] = datasets.Features(
            {name: datasets.Value(dtype) for name, dtype in UNION_FEATURES[entry.repo_id].items()}
        )
    task.metadata = task.metadata.model_copy(update={"dataset": dataset})


def check_hub_access(names: Sequence[str], allow_network: bool, benchmarks: Sequence[str] = ()) -> None:
    """Fail at once, naming the task and `snakemake stage`, when a hub task's data is neither
    in the cache nor downloadable (offline); no model is loaded before this check."""
    if not names and not benchmarks:
        return
    download = allow_network and not is_offline()
    if download:
        return
    for task in configured_tasks(names, benchmarks):
        for leaf in leaf_tasks(task):
            point_at_cache(leaf, download=False)


def hub_tasks(task_names: Sequence[str], benchmark_names: Sequence[str], allow_network: bool) -> list[Any]:
    """mteb's task objects with every dataset read from the cache (downloaded first online)."""
    if not task_names and not benchmark_names:
        return []
    download = allow_network and not is_offline()
    tasks = configured_tasks(task_names, benchmark_names)
    for task in tasks:
        for leaf in leaf_tasks(task):
            point_at_cache(leaf, download=download)
    return tasks
