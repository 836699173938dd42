"""Seeded generators for the local long-context retrieval tasks (passkey, needle, long documents).

Every generator is a pure function of (seed, sizes, token counter): the same inputs give the
same corpus, queries and relevance judgements, bit for bit. Lengths are measured in the
model's own tokens (special tokens excluded, see ``content_budget``), because the collapse the
paper studies is a function of the token count, not of words.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TokenCounter = Callable[[str], int]

# Bump when a generator's output changes on purpose; the revision also hashes this file's source.
GENERATOR_VERSION = 1

# LongEmbed's passkey recipe (Zhu et al. 2024, after Mohtashami & Jaggi 2023), verbatim.
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
PASSKEY_NEEDLE = "{name}'s pass key is {key}. Remember it. {key} is the pass key for {name}."
PASSKEY_QUERY = "What is the pass key for {name}?"
PASSKEY_RANGE = (10_000, 99_999)  # five-digit keys, drawn uniformly
SPECIAL_TOKENS = 2  # [CLS] ... [SEP] (BERT) or <s> ... </s> (MPNet)

FIRST_NAMES = (
    "Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Keira", "Liam", "Maya", "Nikolai", "Olga", "Pavel", "Quinn", "Rosa", "Samir", "Tara",
    "Umar", "Vera", "Wendell", "Ximena", "Yusuf", "Zoe", "Amara", "Bastian", "Celeste", "Dario",
    "Esther", "Felix", "Greta", "Hamish", "Isla", "Jasper", "Kofi", "Leona", "Matteo", "Nadia",
)  # fmt: skip
LAST_NAMES = (
    "Abbott", "Brennan", "Castillo", "Dubois", "Eriksen", "Fischer", "Gallagher", "Horvath",
    "Ivanova", "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov",
    "Quintero", "Rossi", "Schmidt", "Tanaka", "Ueda", "Vargas", "Whitaker", "Yilmaz", "Zielinski",
)  # fmt: skip

# Needle facts: (statement hidden in the haystack, question asked as the query, slot values).
NEEDLE_TEMPLATES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "{name}'s favourite city is {value}.",
        "What is {name}'s favourite city?",
        ("Lisbon", "Nairobi", "Kyoto", "Montreal", "Tbilisi", "Valparaiso", "Reykjavik", "Hanoi"),
    ),
    (
        "The secret ingredient in {name}'s soup is {value}.",
        "What is the secret ingredient in {name}'s soup?",
        ("saffron", "smoked paprika", "lemongrass", "star anise", "miso", "sumac", "fennel seed"),
    ),
    (
        "{name} hid the spare key under the {value}.",
        "Where did {name} hide the spare key?",
        ("blue flowerpot", "doormat", "garden gnome", "loose brick", "birdbath", "oak bench"),
    ),
    (
        "{name}'s first pet was a {value}.",
        "What was {name}'s first pet?",
        ("tortoise", "parrot", "ferret", "goldfish", "hedgehog", "rabbit", "canary"),
    ),
)


@dataclass
class RetrievalSplit:
    """One split of a retrieval task: documents, queries, judgements, and how they were made."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    details: dict[str, Any] = field(default_factory=dict)


def content_budget(length: int) -> int:
    """Tokens left for text in a model input of ``length`` tokens (special tokens excluded)."""
    if length <= SPECIAL_TOKENS + 8:
        raise ValueError(f"length {length} is too short for a document (needs > {SPECIAL_TOKENS + 8} tokens)")
    return length - SPECIAL_TOKENS


def generator_revision(kind: str, params: Mapping[str, Any]) -> str:
    """Dataset revision for mteb: changes whenever this module's code or the parameters change."""
    from tsdcls.common import wikipedia
    from tsdcls.tempscale import corpora

    digest = hashlib.sha256()
    digest.update(inspect.getsource(inspect.getmodule(generator_revision)).encode())
    digest.update(inspect.getsource(corpora).encode())
    digest.update(inspect.getsource(wikipedia).encode())  # the Wikipedia reader corpora uses
    digest.update(json.dumps({"kind": kind, **params}, sort_keys=True, default=str).encode())
    return f"tsdcls-gen{GENERATOR_VERSION}-{digest.hexdigest()[:12]}"


def longest_prefix(units: Sequence[str], budget: int, count: TokenCounter, sep: str = " ") -> int:
    """Largest k with count(sep.join(units[:k])) <= budget (binary search; counts are monotone)."""
    low, high = 0, len(units)
    while low < high:
        mid = (low + high + 1) // 2
        if count(sep.join(units[:mid])) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def insert_at_depth(units: list[str], needle: str, depth: float) -> tuple[str, int]:
    """Put ``needle`` between units at relative ``depth`` in [0, 1]; return text and unit index."""
    position = round(depth * len(units))
    return " ".join([*units[:position], needle, *units[position:]]), position


def _distinct_names(rng: random.Random, count: int) -> list[str]:
    pool = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    if count > len(pool):
        raise ValueError(f"at most {len(pool)} distinct names, asked for {count}")
    return rng.sample(pool, count)


def _hide_needles(
    rng: random.Random,
    haystacks: Sequence[list[str]],
    needles: Sequence[str],
    budget: int,
    count: TokenCounter,
) -> tuple[list[str], list[float]]:
    """Trim each haystack so haystack + needle fit ``budget`` tokens; insert at a uniform depth."""
    texts, depths = [], []
    for units, needle in zip(haystacks, needles, strict=True):
        room = budget - count(needle)
        keep = longest_prefix(units, room, count)
        depth = rng.random()
        text, _ = insert_at_depth(units[:keep], needle, depth)
        while count(text) > budget and keep > 0:  # joins can merge tokens; shave until it fits
            keep -= 1
            text, _ = insert_at_depth(units[:keep], needle, depth)
        texts.append(text)
        depths.append(depth)
    return texts, depths


def _queries_for(
    rng: random.Random, doc_ids: list[str], questions: list[str], n_queries: int, split: str
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    if n_queries > len(doc_ids):
        raise ValueError(f"n_queries ({n_queries}) cannot exceed n_documents ({len(doc_ids)})")
    chosen = sorted(rng.sample(range(len(doc_ids)), n_queries))
    queries = {f"{split}-q{i:03d}": questions[j] for i, j in enumerate(chosen)}
    qrels = {f"{split}-q{i:03d}": {doc_ids[j]: 1} for i, j in enumerate(chosen)}
    return queries, qrels


def passkey_split(
    seed: int, length: int, n_documents: int, n_queries: int, count: TokenCounter, split: str
) -> RetrievalSplit:
    """LongEmbed passkey at one length: filler repeated, one named pass key at a uniform depth.

    ``n_documents`` candidates, each with a distinct name and key; ``n_queries`` of them are
    asked for ("What is the pass key for <name>?") with exactly one relevant document.
    """
    rng = random.Random(f"passkey|{seed}|{length}")
    budget = content_budget(length)
    sentences = re.findall(r"[^.]+\.", PASSKEY_FILLER)
    sentences = [s.strip() for s in sentences]
    filler = sentences * (budget // 3 + 2)  # every filler sentence is >= 3 tokens
    names = _distinct_names(rng, n_documents)
    keys = [rng.randint(*PASSKEY_RANGE) for _ in names]
    needles = [PASSKEY_NEEDLE.format(name=n, key=k) for n, k in zip(names, keys, strict=True)]
    texts, depths = _hide_needles(rng, [filler] * n_documents, needles, budget, count)
    doc_ids = [f"{split}-d{i:03d}" for i in range(n_documents)]
    queries, qrels = _queries_for(rng, doc_ids, [PASSKEY_QUERY.format(name=n) for n in names], n_queries, split)
    return RetrievalSplit(
        corpus=dict(zip(doc_ids, texts, strict=True)),
        queries=queries,
        qrels=qrels,
        details={"depths": depths, "keys": keys, "names": names, "length": length},
    )


def _word_windows(
    rng: random.Random, sources: Sequence[str], n: int, words_needed: int
) -> tuple[list[list[str]], list[int]]:
    """``n`` random windows of consecutive words from long real texts (source index returned)."""
    tokenized = [text.split() for text in sources]
    usable = [i for i, words in enumerate(tokenized) if len(words) >= words_needed]
    if not usable:
        raise ValueError(f"no haystack source has {words_needed} words")
    windows, origins = [], []
    for _ in range(n):
        source = rng.choice(usable)
        words = tokenized[source]
        start = rng.randrange(0, len(words) - words_needed + 1)
        windows.append(words[start : start + words_needed])
        origins.append(source)
    return windows, origins


def needle_split(
    seed: int,
    length: int,
    n_documents: int,
    n_queries: int,
    count: TokenCounter,
    split: str,
    haystacks: Sequence[str],
) -> RetrievalSplit:
    """Needle-in-a-haystack at one length: a templated fact about a named person hidden at a
    uniform depth in a window of real text (Shakespeare plays, Wikipedia articles)."""
    rng = random.Random(f"needle|{seed}|{length}")
    budget = content_budget(length)
    windows, origins = _word_windows(rng, haystacks, n_documents, words_needed=budget + 16)
    names = _distinct_names(rng, n_documents)
    needles, questions, answers = [], [], []
    for name in names:
        statement, question, values = NEEDLE_TEMPLATES[rng.randrange(len(NEEDLE_TEMPLATES))]
        value = rng.choice(values)
        needles.append(statement.format(name=name, value=value))
        questions.append(question.format(name=name))
        answers.append(value)
    texts, depths = _hide_needles(rng, windows, needles, budget, count)
    doc_ids = [f"{split}-d{i:03d}" for i in range(n_documents)]
    queries, qrels = _queries_for(rng, doc_ids, questions, n_queries, split)
    return RetrievalSplit(
        corpus=dict(zip(doc_ids, texts, strict=True)),
        queries=queries,
        qrels=qrels,
        details={
            "depths": depths, "answers": answers, "names": names, "needles": needles,
            "sources": origins, "length": length,
        },  # fmt: skip
    )


def truncate_to_tokens(text: str, budget: int, count: TokenCounter) -> str:
    """The longest word prefix of ``text`` that fits ``budget`` tokens."""
    words = text.split()[:budget]  # every word is at least one token
    return " ".join(words[: longest_prefix(words, budget, count)])


def choose_articles(
    seed: int, articles: Sequence[tuple[str, str, str]], n_articles: int, min_body_tokens: int, count: TokenCounter
) -> list[tuple[str, str, str]]:
    """``n_articles`` (title, lead, body) with a body of at least ``min_body_tokens``, seeded."""
    # a body is long enough iff its first min_body_tokens words are (each word is >= 1 token)
    long_enough = [a for a in articles if count(" ".join(a[2].split()[:min_body_tokens])) >= min_body_tokens]
    if len(long_enough) < n_articles:
        raise ValueError(
            f"only {len(long_enough)} articles have a body of >= {min_body_tokens} tokens; "
            f"asked for {n_articles}"
        )
    rng = random.Random(f"longdoc|{seed}")
    picked = sorted(rng.sample(range(len(long_enough)), n_articles))
    return [long_enough[i] for i in picked]


def longdoc_split(
    articles: Sequence[tuple[str, str, str]], length: int, query_tokens: int, count: TokenCounter, split: str
) -> RetrievalSplit:
    """Long-document retrieval at one length: the lead paragraph finds the rest of its article,
    cut to ``length`` tokens. The same articles serve every length, so only length varies."""
    budget = content_budget(length)
    doc_ids = [f"{split}-d{i:03d}" for i in range(len(articles))]
    corpus = {d: truncate_to_tokens(body, budget, count) for d, (_, _, body) in zip(doc_ids, articles, strict=True)}
    queries = {
        f"{split}-q{i:03d}": truncate_to_tokens(lead, query_tokens, count) for i, (_, lead, _) in enumerate(articles)
    }
    qrels = {f"{split}-q{i:03d}": {d: 1} for i, d in enumerate(doc_ids)}
    return RetrievalSplit(
        corpus=corpus, queries=queries, qrels=qrels, details={"titles": [a[0] for a in articles], "length": length}
    )


def stratified_halves(labels: Sequence[int], seed: int, test_fraction: float = 0.5) -> tuple[list[int], list[int]]:
    """Seeded stratified train/test split of item indices (same class balance in both)."""
    rng = random.Random(f"split|{seed}")
    train, test = [], []
    for label in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(idx)
        cut = round(len(idx) * test_fraction)
        test += idx[:cut]
        train += idx[cut:]
    return sorted(train), sorted(test)


def sample_pairs(n_pairs: int, max_pairs: int | None, seed: int) -> list[int]:
    """Indices of at most ``max_pairs`` pairs, seeded, in their original order."""
    if max_pairs is None or max_pairs >= n_pairs:
        return list(range(n_pairs))
    rng = random.Random(f"pairs|{seed}")
    return sorted(rng.sample(range(n_pairs), max_pairs))

