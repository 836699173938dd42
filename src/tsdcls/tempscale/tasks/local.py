"""Local mteb tasks built from real offline data: declared like any mteb 2.x task, no hub.

Each class is an mteb ``AbsTask`` subclass with a ``TaskMetadata`` (stable name, a dataset
revision that changes with the generator) whose ``load_data`` builds the dataset from files in
installed packages. Sizes are constructor arguments, so the same class serves the smoke preset
(a handful of texts) and the full run. Splits of the long-context tasks are named ``test_<n>``
for a length of n tokens, the way mteb's own LEMBPasskeyRetrieval names them.

Every task keeps per-item scores of its last evaluation in ``self.per_item`` (query, pair or
experiment -> score) so the ablation can run paired significance tests; mteb itself only
stores averages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from datasets import Dataset, DatasetDict
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.clustering import AbsTaskClustering
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

from tsdcls.tempscale import corpora
from tsdcls.tempscale.tasks import generators as gen

logger = logging.getLogger(__name__)

TokenCounter = gen.TokenCounter
REFERENCE = "https://arxiv.org/abs/2410.24200"
PER_ITEM_METRICS = ("ndcg_at_1", "ndcg_at_10")  # per-query retrieval scores kept for the tests


def _metadata(name: str, description: str, kind: str, revision: str, splits: list[str], main_score: str, **extra: Any) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        description=description,
        dataset={"path": f"tsdcls/local/{name}", "revision": revision},
        reference=REFERENCE,
        type=kind,
        category="t2t",
        modalities=["text"],
        eval_splits=splits,
        eval_langs=["eng-Latn"],
        main_score=main_score,
        date=("2000-01-01", "2024-12-31"),
        license="not specified",
        annotations_creators="derived",
        dialect=[],
        sample_creation="created",
        bibtex_citation="",
        **extra,
    )


class _PerItemMixin:
    """Holds per-item scores of the last evaluation: {(split, subset): {metric: {item: score}}}."""

    per_item: dict[tuple[str, str], dict[str, dict[str, float]]]
    gold: dict[tuple[str, str], dict[str, float]]

    def _reset_per_item(self) -> None:
        self.per_item = {}
        self.gold = {}

    def unload_data(self) -> None:
        """Keep the instance metadata: it describes the generated data (mteb drops it on unload)."""
        metadata = self.__dict__.get("metadata")
        super().unload_data()  # type: ignore[misc]
        if metadata is not None:
            self.metadata = metadata


# --- long-context retrieval -----------------------------------------------------------------


class _LocalRetrieval(_PerItemMixin, AbsTaskRetrieval):
    """Retrieval over generated splits; subclasses say how one split of length n is made."""

    k_values = (1, 3, 5, 10, 20, 100)
    metadata: ClassVar[TaskMetadata]
    kind: ClassVar[str]

    def __init__(self, lengths: Sequence[int], count_tokens: TokenCounter, seed: int = 0, **params: Any) -> None:
        if not lengths:
            raise ValueError(f"{self.metadata.name}: at least one length is needed")
        self.lengths = sorted(int(n) for n in lengths)
        self.count_tokens = count_tokens
        self.params = dict(params)
        revision = gen.generator_revision(self.kind, {"seed": seed, "lengths": self.lengths, **self.params})
        # instance-level metadata: splits follow the configured lengths, revision the generator
        self.metadata = type(self).metadata.model_copy(
            update={
                "eval_splits": [f"test_{n}" for n in self.lengths],
                "dataset": {**type(self).metadata.dataset, "revision": revision},
            }
        )
        super().__init__(seed=seed)
        self._reset_per_item()
        self.splits: dict[str, gen.RetrievalSplit] = {}

    def make_split(self, length: int, split: str) -> gen.RetrievalSplit:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Generate every split from local data (no hub access at all)."""
        if self.data_loaded:
            return
        self.dataset = {"default": {}}
        for length in self.lengths:
            split = f"test_{length}"
            data = self.splits.get(split) or self.make_split(length, split)
            self.splits[split] = data
            self.dataset["default"][split] = {
                "corpus": Dataset.from_dict(
                    {"id": list(data.corpus), "text": list(data.corpus.values()), "title": [""] * len(data.corpus)}
                ),
                "queries": Dataset.from_dict({"id": list(data.queries), "text": list(data.queries.values())}),
                "relevant_docs": {q: dict(d) for q, d in data.qrels.items()},
                "top_ranked": None,
            }
        self.data_loaded = True

    def task_specific_scores(
        self,
        scores: dict[str, dict[str, float]],
        qrels: Mapping[str, Mapping[str, int]],
        results: dict[str, dict[str, float]],
        hf_split: str,
        hf_subset: str,
    ) -> dict[str, float]:
        """Keep the per-query scores pytrec_eval computed (mteb reports only their mean)."""
        per_metric: dict[str, dict[str, float]] = {}
        for metric in PER_ITEM_METRICS:
            key = metric.replace("_at_", "_cut_")
            per_metric[metric] = {qid: float(values[key]) for qid, values in scores.items()}
        self.per_item[(hf_split, hf_subset)] = per_metric
        return {}


class TsdclsPasskeyRetrieval(_LocalRetrieval):
    """LongEmbed passkey retrieval rebuilt locally by the published recipe."""

    kind = "passkey"
    metadata = _metadata(
        "TsdclsPasskeyRetrieval",
        "Passkey retrieval (LongEmbed recipe): filler 'The grass is green. ...' repeated to n tokens "
        "with one named pass key at a uniform random depth; the query asks for a name's pass key.",
        "Retrieval",
        "unset",
        ["test_256"],
        "ndcg_at_1",
    )

    def make_split(self, length: int, split: str) -> gen.RetrievalSplit:
        return gen.passkey_split(
            self.seed, length, self.params["n_documents"], self.params["n_queries"], self.count_tokens, split
        )


HAYSTACKS = ("shakespeare", "wikipedia")


def haystack_texts(kinds: Sequence[str]) -> list[str]:
    """Real long texts to hide needles in: whole plays and whole article bodies."""
    texts: list[str] = []
    for kind in kinds:
        if kind == "shakespeare":
            texts += [text for _, text in corpora.shakespeare_plays()]
        elif kind == "wikipedia":
            texts += [a.body.replace("\n\n", " ") for a in corpora.wiki_articles()]
        else:
            raise ValueError(f"unknown haystack {kind!r} (choose from {HAYSTACKS})")
    return texts


class TsdclsNeedleRetrieval(_LocalRetrieval):
    """Needle-in-a-haystack retrieval: templated facts hidden in real Shakespeare/Wikipedia text."""

    kind = "needle"
    metadata = _metadata(
        "TsdclsNeedleRetrieval",
        "A templated fact about a named person hidden at a uniform random depth in n tokens of real "
        "text (Shakespeare plays, English Wikipedia); the query asks the matching question.",
        "Retrieval",
        "unset",
        ["test_256"],
        "ndcg_at_1",
    )

    def make_split(self, length: int, split: str) -> gen.RetrievalSplit:
        return gen.needle_split(
            self.seed,
            length,
            self.params["n_documents"],
            self.params["n_queries"],
            self.count_tokens,
            split,
            haystack_texts(self.params["haystacks"]),
        )


class TsdclsWikiLongDocRetrieval(_LocalRetrieval):
    """Long-document retrieval: an article's lead paragraph retrieves the rest of the article."""

    kind = "longdoc"
    metadata = _metadata(
        "TsdclsWikiLongDocRetrieval",
        "English Wikipedia: the lead paragraph is the query, the rest of the same article cut to n "
        "tokens is the document; the same articles at every length.",
        "Retrieval",
        "unset",
        ["test_256"],
        "ndcg_at_10",
    )

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if not self.data_loaded:
            raw = [(a.title, a.lead, a.body) for a in corpora.wiki_articles()]
            self._articles = gen.choose_articles(
                self.seed, raw, self.params["n_articles"], gen.content_budget(max(self.lengths)), self.count_tokens
            )
        super().load_data(num_proc=num_proc, **kwargs)

    def make_split(self, length: int, split: str) -> gen.RetrievalSplit:
        return gen.longdoc_split(self._articles, length, self.params["query_tokens"], self.count_tokens, split)


# --- short-text tasks on gensim's real test corpora -----------------------------------------


class TsdclsLeeSTS(_PerItemMixin, AbsTaskSTS):
    """Lee et al. (2005) news-document similarity: 50 documents, human ratings in [0, 1]."""

    min_score = 0
    max_score = 1
    metadata = _metadata(
        "TsdclsLeeSTS",
        "Pairs of the 50 Lee news documents (gensim lee.cor) with mean human similarity ratings "
        "(similarities0-1.txt); Spearman correlation of cosine similarity with the ratings.",
        "STS",
        "unset",
        ["test"],
        "cosine_spearman",
    )

    def __init__(self, max_pairs: int | None = None, seed: int = 0) -> None:
        self.max_pairs = max_pairs
        revision = gen.generator_revision("lee", {"seed": seed, "max_pairs": max_pairs})
        self.metadata = type(self).metadata.model_copy(
            update={"dataset": {**type(self).metadata.dataset, "revision": revision}}
        )
        super().__init__(seed=seed)
        self._reset_per_item()

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        docs, pairs = corpora.lee_corpus()
        keep = [pairs[i] for i in gen.sample_pairs(len(pairs), self.max_pairs, self.seed)]
        self.documents = list(docs)
        self.dataset = {
            "default": DatasetDict(
                test=Dataset.from_dict(
                    {
                        "sentence1": [docs[i] for i, _, _ in keep],
                        "sentence2": [docs[j] for _, j, _ in keep],
                        "score": [s for _, _, s in keep],
                        "index1": [i for i, _, _ in keep],
                        "index2": [j for _, j, _ in keep],
                    }
                )
            )
        }
        self.data_loaded = True

    def _evaluate_subset(self, model: Any, data_split: Dataset, *, encode_kwargs: Any, hf_split: str, hf_subset: str, prediction_folder: Any = None, num_proc: int | None = None, timer: Any, **kwargs: Any) -> Any:
        """Encode each of the 50 documents once (not once per pair), then score as mteb's STS."""
        from mteb._create_dataloaders import create_dataloader
        from mteb._evaluators.any_sts_evaluator import STSEvaluatorScores
        from sklearn.metrics.pairwise import (
            paired_cosine_distances,
            paired_euclidean_distances,
            paired_manhattan_distances,
        )

        with timer("Encoding", split=hf_split, subset=hf_subset):
            embeddings = model.encode(
                create_dataloader(
                    Dataset.from_dict({"text": self.documents}), task_metadata=self.metadata, num_proc=num_proc, **encode_kwargs
                ),
                task_metadata=self.metadata,
                hf_split=hf_split,
                hf_subset=hf_subset,
                prompt_type=None,
                **encode_kwargs,
            )
        embeddings = np.asarray(embeddings, dtype=np.float64)
        first = embeddings[np.asarray(data_split["index1"])]
        second = embeddings[np.asarray(data_split["index2"])]
        cosine = 1 - paired_cosine_distances(first, second)
        pair_ids = [f"{i}-{j}" for i, j in zip(data_split["index1"], data_split["index2"], strict=True)]
        gold = [self._normalize(s) for s in data_split["score"]]
        self.per_item[(hf_split, hf_subset)] = {"cosine_similarity": dict(zip(pair_ids, cosine.tolist(), strict=True))}
        self.gold[(hf_split, hf_subset)] = dict(zip(pair_ids, gold, strict=True))
        scores = STSEvaluatorScores(
            cosine_scores=cosine.tolist(),
            manhattan_distances=(-paired_manhattan_distances(first, second)).tolist(),
            euclidean_distances=(-paired_euclidean_distances(first, second)).tolist(),
            similarity_scores=None,
        )
        return self._calculate_scores(scores, gold)


class TsdclsPolarityClassification(_PerItemMixin, AbsTaskClassification):
    """Pang & Lee sentence polarity: 200 movie-review sentences, logistic regression probe."""

    metadata = _metadata(
        "TsdclsPolarityClassification",
        "Pang & Lee sentence polarity (gensim pang_lee_polarity.cor, 100 positive, 100 negative), "
        "seeded stratified half/half train/test split; accuracy of a logistic-regression probe.",
        "Classification",
        "unset",
        ["test"],
        "accuracy",
    )

    def __init__(self, samples_per_label: int = 32, n_experiments: int = 10, seed: int = 0) -> None:
        self.samples_per_label = int(samples_per_label)
        self.n_experiments = int(n_experiments)
        revision = gen.generator_revision("polarity", {"seed": seed})
        self.metadata = type(self).metadata.model_copy(
            update={"dataset": {**type(self).metadata.dataset, "revision": revision}}
        )
        super().__init__(seed=seed)
        self._reset_per_item()

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        items = corpora.polarity_sentences()
        labels = [y for _, y in items]
        train, test = gen.stratified_halves(labels, self.seed)

        def part(idx: list[int]) -> Dataset:
            return Dataset.from_dict({"text": [items[i][0] for i in idx], "label": [items[i][1] for i in idx]})

        self.dataset = {"default": DatasetDict(train=part(train), test=part(test))}
        self.data_loaded = True

    def evaluate(self, model: Any, split: str = "test", subsets_to_run: Any = None, **kwargs: Any) -> Any:
        scores = super().evaluate(model, split, subsets_to_run, **kwargs)
        for subset, values in scores.items():
            experiments = values.get("scores_per_experiment", [])
            self.per_item[(split, subset)] = {
                "accuracy": {f"exp{i:02d}": float(e["accuracy"]) for i, e in enumerate(experiments)}
            }
        return scores


class TsdclsNewsgroupsClustering(_PerItemMixin, AbsTaskClustering):
    """20-Newsgroups mini sample (alt.atheism vs sci.space): k-means V-measure."""

    max_fraction_of_documents_to_embed = None
    metadata = _metadata(
        "TsdclsNewsgroupsClustering",
        "gensim's mini 20-Newsgroups sample (200 posts, alt.atheism / sci.space, headers except the "
        "subject removed); V-measure of mini-batch k-means over bootstrap samples.",
        "Clustering",
        "unset",
        ["test"],
        "v_measure",
    )

    def __init__(self, max_documents: int | None = None, documents_per_experiment: int = 64, n_experiments: int = 10, seed: int = 0) -> None:
        self.max_documents = max_documents
        self.max_documents_per_cluster = int(documents_per_experiment)
        self.n_clusters = int(n_experiments)
        revision = gen.generator_revision("newsgroups", {"seed": seed, "max_documents": max_documents})
        self.metadata = type(self).metadata.model_copy(
            update={"dataset": {**type(self).metadata.dataset, "revision": revision}}
        )
        super().__init__(seed=seed)
        self._reset_per_item()

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        posts = corpora.newsgroup_posts()
        groups = sorted({g for _, g in posts})
        labels = [groups.index(g) for _, g in posts]
        if self.max_documents is not None and self.max_documents < len(posts):
            _, keep = gen.stratified_halves(labels, self.seed, test_fraction=self.max_documents / len(posts))
        else:
            keep = list(range(len(posts)))
        self.dataset = {
            "default": DatasetDict(
                test=Dataset.from_dict({"sentences": [posts[i][0] for i in keep], "labels": [posts[i][1] for i in keep]})
            )
        }
        self.data_loaded = True

    def evaluate(self, model: Any, split: str = "test", subsets_to_run: Any = None, **kwargs: Any) -> Any:
        scores = super().evaluate(model, split, subsets_to_run, **kwargs)
        for subset, values in scores.items():
            flat = [float(v) for level in values.get("v_measures", {}).values() for v in level]
            self.per_item[(split, subset)] = {"v_measure": {f"exp{i:02d}": v for i, v in enumerate(flat)}}
        return scores


LOCAL_TASK_CLASSES: dict[str, type] = {
    cls.metadata.name: cls
    for cls in (
        TsdclsPasskeyRetrieval,
        TsdclsNeedleRetrieval,
        TsdclsWikiLongDocRetrieval,
        TsdclsLeeSTS,
        TsdclsPolarityClassification,
        TsdclsNewsgroupsClustering,
    )
}

TaskFactory = Callable[..., Any]
