"""Write hub repositories in the Hugging Face cache's own layout: the offline hub tests' and the
rehearsal's (workflow/scripts/write_rehearsal_data.py) model and dataset repositories.

``write_repo`` lays out ``<hub>/{models,datasets}--org--name/{blobs,refs/main,snapshots/<rev>}``
exactly as ``huggingface_hub.snapshot_download`` leaves it (snapshot files are relative symlinks
into ``blobs/``). ``DATASETS`` builds, for each hub task the tests run, a tiny dataset in the
repository layout mteb's loader for that task reads (README ``configs:`` + data files; column
names and split names from mteb's loader code, see the comments).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml


def write_repo(hub: Path, kind: str, repo_id: str, revision: str, files: dict[str, bytes | Path]) -> Path:
    """One cached repository at ``revision``; returns its snapshot folder."""
    folder = hub / f"{kind}s--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / revision
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        data_path = content if isinstance(content, Path) else None
        digest = hashlib.sha256(data_path.read_bytes() if data_path else content).hexdigest()
        blob = folder / "blobs" / digest
        if not blob.exists():
            if data_path:
                try:
                    os.link(data_path, blob)
                except OSError:
                    shutil.copyfile(data_path, blob)
            else:
                blob.write_bytes(content)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    return snapshot


def model_files(source: Path) -> dict[str, Path]:
    """Every file of a local model folder, keyed by its path inside the repository."""
    return {p.relative_to(source).as_posix(): p for p in sorted(source.rglob("*")) if p.is_file()}


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _readme(configs: dict[str, dict[str, str]]) -> bytes:
    """README.md whose YAML ``configs:`` maps config -> split -> file, as hub dataset cards do."""
    card = {"configs": [
        {"config_name": name, "data_files": [{"split": split, "path": path} for split, path in splits.items()]}
        for name, splits in configs.items()
    ]}  # fmt: skip
    return b"---\n" + yaml.safe_dump(card, sort_keys=False).encode() + b"---\n"


TOPICS = ["the red lighthouse", "a violin made of glass", "the winter harvest", "an old steam engine"]


def _docs(n: int, tag: str) -> list[str]:
    return [f"{tag} document {i} is about {TOPICS[i % len(TOPICS)]} and nothing else." for i in range(n)]


def longembed(configs: tuple[str, ...], needle_lengths: tuple[int, ...]) -> dict[str, bytes]:
    """dwzhu/LongEmbed: one config per task, splits corpus/queries/qrels, JSON lines
    (LEMB*Retrieval.load_data reads qid/text, doc_id/text, qid/doc_id; needle and passkey
    filter every split on a context_length column)."""
    files: dict[str, bytes] = {}
    readme: dict[str, dict[str, str]] = {}
    for config in configs:
        lengths = needle_lengths if config in ("needle", "passkey") else (None,)
        corpus, queries, qrels = [], [], []
        for length in lengths:
            extra = {} if length is None else {"context_length": length}
            for i, text in enumerate(_docs(3, f"{config} {length or ''}")):
                doc, qid = f"{config}-{length}-d{i}", f"{config}-{length}-q{i}"
                corpus.append({"doc_id": doc, "text": text, **extra})
                queries.append({"qid": qid, "text": f"which one is about {TOPICS[i % len(TOPICS)]}?", **extra})
                qrels.append({"qid": qid, "doc_id": doc, **extra})
        for split, rows in (("corpus", corpus), ("queries", queries), ("qrels", qrels)):
            files[f"{config}/{split}.jsonl"] = _jsonl(rows)
        readme[config] = {split: f"{config}/{split}.jsonl" for split in ("corpus", "queries", "qrels")}
    files["README.md"] = _readme(readme)
    return files


def mteb_retrieval(splits: tuple[str, ...], top_ranked: bool = False) -> dict[str, bytes]:
    """mteb's retrieval format (RetrievalDatasetLoader): configs corpus (_id/title/text),
    queries (_id/text), default = qrels (query-id/corpus-id/score), optional top_ranked
    (query-id/corpus-ids); one split per eval split (corpus/queries may hold a single split)."""
    files: dict[str, bytes] = {}
    readme: dict[str, dict[str, str]] = {"corpus": {}, "queries": {}, "default": {}}
    if top_ranked:
        readme["top_ranked"] = {}
    for split in splits:
        docs = _docs(4, split)
        corpus = [{"_id": f"{split}-d{i}", "title": "", "text": t} for i, t in enumerate(docs)]
        queries = [{"_id": f"{split}-q{i}", "text": f"about {TOPICS[i]}"} for i in range(2)]
        qrels = [{"query-id": f"{split}-q{i}", "corpus-id": f"{split}-d{i}", "score": 1} for i in range(2)]
        ranked = [{"query-id": q["_id"], "corpus-ids": [d["_id"] for d in corpus]} for q in queries]
        for config, rows in (("corpus", corpus), ("queries", queries), ("default", qrels), ("top_ranked", ranked)):
            if config in readme:
                files[f"{config}/{split}.jsonl"] = _jsonl(rows)
                readme[config][split] = f"{config}/{split}.jsonl"
    files["README.md"] = _readme(readme)
    return files


def _single(rows_by_split: dict[str, list[dict]]) -> dict[str, bytes]:
    files = {f"data/{split}.jsonl": _jsonl(rows) for split, rows in rows_by_split.items()}
    files["README.md"] = _readme({"default": {split: f"data/{split}.jsonl" for split in rows_by_split}})
    return files


def classification() -> dict[str, bytes]:
    """AbsTaskClassification: text/label, a train split (undersampled to samples_per_label) + test."""
    rows = lambda n: [{"text": f"{TOPICS[i % 2]} sample {i}", "label": i % 2} for i in range(n)]  # noqa: E731
    return _single({"train": rows(24), "test": rows(8)})


def clustering() -> dict[str, bytes]:
    """ClusteringFast v2 tasks (TwentyNewsgroupsClustering.v2): rows of sentences/labels lists,
    chained by its dataset_transform; every row holds the same label set."""
    rows = [{"sentences": [f"{TOPICS[i % 2]} post {r}-{i}" for i in range(100)],
             "labels": [str(i % 2) for i in range(100)]} for r in range(2)]  # fmt: skip
    return _single({"test": rows})


def pair_classification() -> dict[str, bytes]:
    """TwitterSemEval2015: one row of lists sent1/sent2/labels (renamed by its dataset_transform)."""
    n = 6
    row = {"sent1": [f"{TOPICS[i % 3]} now" for i in range(n)], "sent2": [f"{TOPICS[(i + i % 2) % 3]} today" for i in range(n)],
           "labels": [1 - i % 2 for i in range(n)]}  # fmt: skip
    return _single({"test": [row]})


def sts() -> dict[str, bytes]:
    """AbsTaskSTS: sentence1/sentence2/score (0..5)."""
    rows = [{"sentence1": f"{TOPICS[i % 4]} is here", "sentence2": f"{TOPICS[(i // 2) % 4]} is here", "score": float(5 * (i % 2))}
            for i in range(8)]  # fmt: skip
    return _single({"test": rows})


def summarization() -> dict[str, bytes]:
    """AbsTaskSummarization: text, human_summaries, machine_summaries, relevance (per machine summary)."""
    rows = [{"text": f"A long article about {TOPICS[i]}.", "human_summaries": [f"{TOPICS[i]}"],
             "machine_summaries": [f"{TOPICS[i]}", f"{TOPICS[(i + 1) % 4]}", "nothing"], "relevance": [5.0, 2.0, 1.0]}
            for i in range(3)]  # fmt: skip
    return _single({"test": rows})


LEMB_CONFIGS = ("narrativeqa", "qmsum", "2wikimqa", "summ_screen_fd", "needle")
LEMB_LENGTHS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)

# task name -> builder of its dataset repository (the path and revision come from mteb's metadata)
DATASETS: dict[str, Callable[[], dict[str, bytes]]] = {
    "LEMBNarrativeQARetrieval": lambda: longembed(LEMB_CONFIGS, LEMB_LENGTHS),
    "LEMBPasskeyRetrieval": lambda: mteb_retrieval(tuple(f"test_{n}" for n in LEMB_LENGTHS)),
    "SCIDOCS": lambda: mteb_retrieval(("test",)),
    "AskUbuntuDupQuestions": lambda: mteb_retrieval(("test",), top_ranked=True),
    "Banking77Classification": classification,
    "TwentyNewsgroupsClustering.v2": clustering,
    "TwitterSemEval2015": pair_classification,
    "STSBenchmark": sts,
    "SummEvalSummarization.v2": summarization,
}


def dataset_files(task_name: str) -> dict[str, bytes]:
    """The dataset repository of hub task ``task_name`` (the LEMB tasks but Passkey share
    dwzhu/LongEmbed, so they share its builder)."""
    if task_name in DATASETS:
        return DATASETS[task_name]()
    if task_name.startswith("LEMB"):
        return DATASETS["LEMBNarrativeQARetrieval"]()
    raise KeyError(f"hub task {task_name!r} has no local dataset builder (tsdcls.common.hub_layout.DATASETS has "
                   f"{', '.join(DATASETS)}); add one in the layout its mteb loader reads")
