"""Local mteb tasks: real data, deterministic generators, the published passkey recipe, and a
real mteb.evaluate run of every task with the offline MiniLM (tiny sizes)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tsdcls.tempscale import corpora
from tsdcls.tempscale.tasks import generators as gen

FILLER_SENTENCES = [
    "The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.",
]  # fmt: skip
NEEDLE_RE = re.compile(r"(?P<name>[A-Z][a-z]+ [A-Z][a-z]+)'s pass key is (?P<key>\d{5})\. Remember it\. (?P=key) is the pass key for (?P=name)\.")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tsdcls.common.assets import minilm_path

    return AutoTokenizer.from_pretrained(str(minilm_path()))


@pytest.fixture(scope="module")
def count(tokenizer):
    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    return count_tokens


# --- real data ---------------------------------------------------------------------------------


def test_gensim_corpora_have_the_documented_shape() -> None:
    docs, pairs = corpora.lee_corpus()
    assert len(docs) == 50 and len(pairs) == 50 * 49 // 2
    assert all(0.0 <= s <= 1.0 for _, _, s in pairs) and all(i < j for i, j, _ in pairs)
    polarity = corpora.polarity_sentences()
    assert len(polarity) == 200 and sum(y for _, y in polarity) == 100
    assert not any(text.startswith("__label__") for text, _ in polarity)
    posts = corpora.newsgroup_posts()
    assert len(posts) == 200 and {g for _, g in posts} == {"alt.atheism", "sci.space"}
    assert not any(re.search(r"^Newsgroups:", text, re.MULTILINE) for text, _ in posts)  # no label leak


def test_wikipedia_articles_split_lead_from_body() -> None:
    articles = corpora.wiki_articles()
    assert len(articles) > 90
    for article in articles:
        assert article.lead and article.body
        assert article.lead not in article.body
        assert "'''" not in article.lead and "[[" not in article.body


# --- generators --------------------------------------------------------------------------------


def test_passkey_is_the_published_recipe(count) -> None:
    length, n_docs = 256, 60
    split = gen.passkey_split(seed=3, length=length, n_documents=n_docs, n_queries=20, count=count, split="t")
    assert len(split.corpus) == n_docs and len(split.queries) == 20
    depths = []
    for text, name, key, depth in zip(split.corpus.values(), split.details["names"], split.details["keys"], split.details["depths"], strict=True):
        needles = list(NEEDLE_RE.finditer(text))
        assert len(needles) == 1 and needles[0]["name"] == name and int(needles[0]["key"]) == key
        filler = (text[: needles[0].start()] + " " + text[needles[0].end() :]).split()
        sentences = re.findall(r"[^.]+\.", " ".join(filler))
        assert {s.strip() for s in sentences} <= set(FILLER_SENTENCES)  # nothing but the filler
        tokens = count(text)
        assert length - 2 - 8 <= tokens <= length - 2  # fits the model input with [CLS]/[SEP]
        before = count(text[: needles[0].start()])
        assert abs(before / (tokens - count(needles[0].group())) - depth) < 0.08  # where it was put
        depths.append(depth)
    from scipy.stats import kstest

    assert kstest(depths, "uniform").pvalue > 0.001  # depth ~ U(0, 1)
    for qid, query in split.queries.items():
        name = re.fullmatch(r"What is the pass key for (.+)\?", query).group(1)
        (doc_id,) = split.qrels[qid]
        assert f"{name}'s pass key is" in split.corpus[doc_id]
    assert " ".join(FILLER_SENTENCES) == gen.PASSKEY_FILLER


@pytest.mark.parametrize("kind", ["passkey", "needle"])
def test_generators_are_deterministic_per_seed(kind: str, count) -> None:
    haystacks = [text for _, text in corpora.shakespeare_plays()[:3]]

    def make(seed: int) -> gen.RetrievalSplit:
        if kind == "passkey":
            return gen.passkey_split(seed, 96, 8, 4, count, "t")
        return gen.needle_split(seed, 96, 8, 4, count, "t", haystacks)

    first, again, other = make(1), make(1), make(2)
    assert (first.corpus, first.queries, first.qrels) == (again.corpus, again.queries, again.qrels)
    assert first.corpus != other.corpus and first.queries != other.queries


def test_needle_hides_one_fact_in_real_text(count) -> None:
    plays = [text for _, text in corpora.shakespeare_plays()]
    split = gen.needle_split(0, 128, 10, 5, count, "t", plays)
    for doc_id, text in split.corpus.items():
        index = int(doc_id.split("-d")[1])
        name = split.details["names"][index]
        assert text.count(name) == 1 and split.details["answers"][index] in text
        assert count(text) <= 126
        before, after = text.split(split.details["needles"][index])
        words = (before if len(before.split()) >= 6 else after).split()
        assert " ".join(words[:6]) in plays[split.details["sources"][index]]  # real Shakespeare, verbatim
    for qid, query in split.queries.items():
        (doc_id,) = split.qrels[qid]
        assert split.details["names"][int(doc_id.split("-d")[1])] in query


def test_longdoc_query_is_the_lead_and_document_the_rest(count) -> None:
    raw = [(a.title, a.lead, a.body) for a in corpora.wiki_articles()]
    articles = gen.choose_articles(0, raw, 6, 254, count)
    short, long = (gen.longdoc_split(articles, n, 32, count, f"t{n}") for n in (128, 256))
    for (_, lead, body), doc_s, doc_l, query in zip(articles, short.corpus.values(), long.corpus.values(), short.queries.values(), strict=True):
        assert " ".join(body.split()).startswith(doc_l) and doc_l.startswith(doc_s)
        assert count(doc_s) <= 126 and count(doc_l) <= 254 and count(doc_l) > count(doc_s)
        assert " ".join(lead.split()).startswith(query) and count(query) <= 32


def test_revision_changes_with_the_generator_settings() -> None:
    base = gen.generator_revision("passkey", {"seed": 0, "lengths": [64]})
    assert base == gen.generator_revision("passkey", {"seed": 0, "lengths": [64]})
    assert base != gen.generator_revision("passkey", {"seed": 1, "lengths": [64]})
    assert base != gen.generator_revision("needle", {"seed": 0, "lengths": [64]})
    assert base.startswith(f"tsdcls-gen{gen.GENERATOR_VERSION}-")


def test_too_many_queries_is_a_clear_error(count) -> None:
    with pytest.raises(ValueError, match="n_queries"):
        gen.passkey_split(0, 64, 4, 5, count, "t")


# --- every local task through the real mteb with MiniLM -----------------------------------------

TINY = {
    "batch_size": 8, "threads": 1, "max_seq_length": None,
    "passkey": {"enabled": True, "lengths": [64, 128], "n_documents": 6, "n_queries": 3},
    "needle": {"enabled": True, "lengths": [64], "n_documents": 6, "n_queries": 3, "haystacks": ["shakespeare", "wikipedia"]},
    "longdoc": {"enabled": True, "lengths": [64], "n_articles": 5, "query_tokens": 24},
    "lee_sts": {"enabled": True, "max_pairs": 40},
    "polarity": {"enabled": True, "samples_per_label": 4, "n_experiments": 2},
    "newsgroups": {"enabled": True, "max_documents": 12, "documents_per_experiment": 8, "n_experiments": 2},
    "hub": {"tasks": [], "benchmarks": []},
}  # fmt: skip
ABLATION = {
    "models": ["minilm"], "taus": [1.0], "layer_subsets": {"tau": 0.8, "subsets": []},
    "tau_laws": {"laws": [], "n_ref": 64, "tau_min": 0.5},
}  # fmt: skip


def test_every_local_task_scores_with_minilm_in_real_mteb(tmp_path: Path) -> None:
    from tsdcls.tempscale.ablation import parse_variant
    from tsdcls.tempscale.evaluate import evaluate_variant

    config = {"tasks": TINY, "ablation": ABLATION}
    scores, per_item, _ = evaluate_variant("minilm", parse_variant("tau1-all", config), config, 0, "cpu", tmp_path, False)
    expected = {
        ("TsdclsPasskeyRetrieval", "test_64"), ("TsdclsPasskeyRetrieval", "test_128"),
        ("TsdclsNeedleRetrieval", "test_64"), ("TsdclsWikiLongDocRetrieval", "test_64"),
        ("TsdclsLeeSTS", "test"), ("TsdclsPolarityClassification", "test"), ("TsdclsNewsgroupsClustering", "test"),
    }  # fmt: skip
    assert set(zip(scores["task"], scores["split"], strict=True)) == expected
    assert scores["score"].between(-1, 1).all() and scores["revision"].str.startswith("tsdcls-gen").all()
    items = per_item.groupby(["task", "split", "metric"]).size()
    assert items[("TsdclsPasskeyRetrieval", "test_64", "ndcg_at_1")] == 3  # one row per query
    assert items[("TsdclsLeeSTS", "test", "cosine_similarity")] == 40
    assert items[("TsdclsPolarityClassification", "test", "accuracy")] == 2
    # per-query scores are the ones mteb averaged
    passkey = scores.set_index(["task", "split"]).loc[("TsdclsPasskeyRetrieval", "test_64"), "score"]
    mine = per_item[(per_item["task"] == "TsdclsPasskeyRetrieval") & (per_item["split"] == "test_64") & (per_item["metric"] == "ndcg_at_1")]
    assert np.isclose(mine["value"].mean(), passkey)
    # the variant is in mteb's own cache path: <cache>/results/<model name>/<revision>/<task>.json
    saved = sorted(p.name for p in tmp_path.rglob("*.json") if p.name.startswith("Tsdcls"))
    assert len(saved) == 6 and all(scores["mteb_model_revision"].iloc[0] in str(p) for p in tmp_path.rglob("Tsdcls*.json"))


def test_missing_model_is_a_config_error(tmp_path: Path) -> None:
    from tsdcls.common.config import ConfigError
    from tsdcls.tempscale.ablation import parse_variant
    from tsdcls.tempscale.evaluate import load_variant

    config = {"tasks": TINY, "ablation": ABLATION}
    with pytest.raises(ConfigError, match="tempscale.ablation.models"):
        load_variant(str(tmp_path / "no-such-model"), parse_variant("tau1-all", config), config, "cpu")


def test_unsupported_model_is_a_config_error(tmp_path: Path, tokenizer) -> None:
    """A real (tiny, random) GPT-2 folder: sentence-transformers loads it, TempScale refuses it."""
    from transformers import GPT2Config, GPT2Model

    from tsdcls.common.config import ConfigError
    from tsdcls.tempscale.ablation import parse_variant
    from tsdcls.tempscale.evaluate import load_variant

    folder = tmp_path / "tiny-gpt2"
    GPT2Model(GPT2Config(vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=16, n_head=2, n_positions=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = {"tasks": TINY, "ablation": ABLATION}
    with pytest.raises(ConfigError, match="unsupported") as err:
        load_variant(str(folder), parse_variant("tau1-all", config), config, "cpu")
    assert "tempscale.ablation.models" in str(err.value)


def test_splits_longer_than_the_model_reads_are_skipped_rows(tmp_path: Path) -> None:
    """MiniLM reads 512 positions: a 1024-token split is a 'skipped' row in scores.csv, not dropped;
    a task whose every length is too long is not built and leaves skipped rows only."""
    from tsdcls.tempscale.ablation import parse_variant
    from tsdcls.tempscale.evaluate import evaluate_variant

    tasks = {**TINY, **{key: {**TINY[key], "enabled": False} for key in ("needle", "lee_sts", "polarity", "newsgroups")},
             "passkey": {**TINY["passkey"], "lengths": [64, 1024]}, "longdoc": {**TINY["longdoc"], "lengths": [1024]}}
    config = {"tasks": tasks, "ablation": ABLATION}
    scores, per_item, _ = evaluate_variant("minilm", parse_variant("tau1-all", config), config, 0, "cpu", tmp_path, False)
    rows = {(r.task, r.split): r for r in scores.itertuples()}
    assert set(rows) == {("TsdclsPasskeyRetrieval", "test_64"), ("TsdclsPasskeyRetrieval", "test_1024"),
                         ("TsdclsWikiLongDocRetrieval", "test_1024")}
    assert rows[("TsdclsPasskeyRetrieval", "test_64")].status == "scored"
    for key in (("TsdclsPasskeyRetrieval", "test_1024"), ("TsdclsWikiLongDocRetrieval", "test_1024")):
        assert rows[key].status == "skipped: exceeds model positions (512 tokens)" and np.isnan(rows[key].score)
        assert rows[key].length == 1024 and rows[key].variant == "tau1-all"
    assert set(per_item["split"]) == {"test_64"}


def test_skip_reason_names_the_config_cap() -> None:
    from tsdcls.tempscale.tasks import skip_reason

    assert skip_reason(100, 512) == "skipped: exceeds tempscale.tasks.max_seq_length (100 tokens)"
    assert skip_reason(512, 512) == "skipped: exceeds model positions (512 tokens)"
