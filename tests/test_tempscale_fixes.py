"""Post-hoc embedding fixes and temperature laws: the maths, the real model, the fit corpus."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tsdcls.common.config import ConfigError
from tsdcls.common.lowpass import tau_for_law, tau_log_length
from tsdcls.tempscale import fixes

SETTINGS = {"corpus": "lee_background", "fit_texts_per_bin": 6, "length_bins": [[8, 64], [64, 128], [128, 256]],
            "whiten_dims": 8}  # fmt: skip


def _features(embeddings: torch.Tensor, lengths: list[int]) -> dict[str, torch.Tensor]:
    width = max(lengths)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    return {"sentence_embedding": embeddings.clone(), "attention_mask": mask}


def test_mean_center_subtracts_the_corpus_mean_and_renormalises() -> None:
    fit = torch.randn(40, 6) + 3.0
    fix = fixes.fit_fix("mean_center", fit, [0] * 40, SETTINGS, 512)
    x = torch.randn(5, 6)
    out = fix(_features(x, [10, 70, 200, 300, 9]))["sentence_embedding"]
    expected = torch.nn.functional.normalize(x - fit.mean(dim=0), dim=-1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_whitening_gives_identity_covariance_in_k_dimensions() -> None:
    generator = torch.Generator().manual_seed(0)
    fit = torch.randn(200, 12, generator=generator) @ torch.randn(12, 12, generator=generator) + 1.0
    mean, projection = fixes._whitening(fit, dims=5)
    white = (fit - mean) @ projection
    assert projection.shape == (12, 5)
    assert torch.allclose(torch.cov(white.T.double()), torch.eye(5, dtype=torch.float64), atol=1e-4)
    # the kept directions are the top-variance ones: the first whitened axis explains the most variance
    variances = torch.linalg.eigvalsh(torch.cov((fit - mean).T.double())).flip(0)
    kept = ((fit - mean) @ (projection * projection.norm(dim=0) ** -1)).var(dim=0)
    assert torch.allclose(kept.double(), variances[:5], rtol=1e-3)


def test_whitening_never_keeps_more_than_the_fit_rank() -> None:
    fit = torch.randn(6, 20)  # 6 texts: rank 5 after centring
    _, projection = fixes._whitening(fit, dims=None)
    assert projection.shape[1] == 5 and torch.isfinite(projection).all()


def test_length_center_uses_the_bin_of_each_rows_own_token_count() -> None:
    fit = torch.randn(30, 4)
    bins = [0] * 10 + [1] * 10 + [2] * 10
    fix = fixes.fit_fix("length_center", fit, bins, SETTINGS, 512)
    means = torch.stack([fit[:10].mean(0), fit[10:20].mean(0), fit[20:].mean(0)])
    x = torch.randn(6, 4)
    lengths = [5, 63, 64, 127, 128, 400]  # below the first bin -> first; above the last -> last
    out = fix(_features(x, lengths))["sentence_embedding"]
    which = [0, 0, 1, 1, 2, 2]
    expected = torch.nn.functional.normalize(x - means[which], dim=-1)
    assert torch.allclose(out, expected, atol=1e-6)
    # a row's output does not depend on the rest of its batch
    alone = torch.cat([fix(_features(x[i:i + 1], [lengths[i]]))["sentence_embedding"] for i in range(6)])
    assert torch.allclose(out, alone, atol=1e-6)


def test_length_center_refuses_an_empty_bin() -> None:
    with pytest.raises(ConfigError, match="fixes.length_bins"):
        fixes.fit_fix("length_center", torch.randn(10, 4), [0] * 10, SETTINGS, 512)


def test_unknown_corpus_names_the_key() -> None:
    with pytest.raises(ConfigError, match="fixes.corpus"):
        fixes.fit_texts(None, {**SETTINGS, "corpus": "wikipedia"}, 512, 0)


def test_fit_corpus_shares_no_text_with_any_task_or_the_collapse_analysis() -> None:
    """No 8-word sequence of the Lee background corpus occurs in the evaluation texts."""
    from tsdcls.tempscale import corpora

    def grams(text: str, n: int = 8) -> set[str]:
        words = text.lower().split()
        return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}

    fit = set().union(*(grams(doc) for doc in corpora.lee_background_documents()))
    assert len(corpora.lee_background_documents()) == 300 and len(fit) > 50_000
    lee_docs, _pairs = corpora.lee_corpus()
    evaluation = [*lee_docs, *(s for s, _ in corpora.polarity_sentences()), *(p for _, p in corpora.newsgroup_posts()),
                  *(a.lead + " " + a.body for a in corpora.wiki_articles()), *(t for _, t in corpora.shakespeare_plays())]
    shared = [text[:60] for text in evaluation if grams(text) & fit]
    assert not shared, f"fit corpus overlaps evaluation texts: {shared[:3]}"


@pytest.fixture(scope="module")
def minilm_fresh():
    from tsdcls.tempscale.patch import load_encoder

    model = load_encoder("minilm")
    model.max_seq_length = 256
    return model


def test_fixes_on_the_real_model(minilm_fresh) -> None:
    """Fitted on real MiniLM embeddings of the held-out corpus and applied by model.encode: unit
    vectors, whitening's k dimensions, and centring removes the fit texts' common direction."""
    model = minilm_fresh
    pairs = fixes.fit_texts(model.tokenizer, SETTINGS, int(model.max_seq_length), seed=0)
    texts = [t for _, t in pairs]
    assert len(texts) == 18 and {b for b, _ in pairs} == {0, 1, 2}

    def mean_cosine(e: torch.Tensor) -> float:
        unit = torch.nn.functional.normalize(e, dim=-1)
        gram = unit @ unit.T
        n = len(unit)
        return float((gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))

    before = model.encode(texts, convert_to_tensor=True)
    for method, dim in (("mean_center", before.shape[1]), ("whiten", 8), ("length_center", before.shape[1])):
        fixes.apply_fix(model, method, SETTINGS, seed=0, batch_size=4)
        after = model.encode(texts, convert_to_tensor=True, batch_size=5)
        alone = torch.cat([model.encode([t], convert_to_tensor=True) for t in texts[:4]])
        fixes.remove_fix(model)
        assert after.shape == (len(texts), dim)
        assert torch.allclose(after.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)
        assert torch.allclose(after[:4], alone, atol=1e-5), f"{method}: an embedding depends on its batch"
        assert mean_cosine(after) < mean_cosine(before) - 0.1, method
    assert torch.allclose(model.encode(texts[:2], convert_to_tensor=True), before[:2], atol=1e-6)  # removed cleanly


def test_log_law_is_one_at_n_ref_and_falls_as_one_over_log_n() -> None:
    assert tau_log_length(128, 128) == 1.0
    assert math.isclose(tau_log_length(512, 128, tau_min=0.1), math.log(128) / math.log(512))
    assert tau_log_length(16, 128) == 1.0 and tau_log_length(1, 128) == 1.0  # clipped at tau_max
    assert tau_for_law("log", 10**6, 128, tau_min=0.5) == 0.5
    with pytest.raises(ValueError, match="unknown temperature law"):
        tau_for_law("cubic", 10, 8)


def test_law_exponent_and_measured_alpha(tmp_path: Path) -> None:
    from tsdcls.common.io import write_csv
    from tsdcls.tempscale.evaluate import law_exponent, measured_alpha

    assert law_exponent("power0.5", None) == 0.5 and law_exponent("power0.075", None) == 0.075
    with pytest.raises(ConfigError, match="tau_laws"):
        law_exponent("power-measured", None)
    import pandas as pd

    path = tmp_path / "tau_law.csv"
    write_csv(path, pd.DataFrame([{"model": "minilm", "layer": "all", "quantity": "alpha", "estimate": 0.0752},
                                  {"model": "minilm", "layer": "0", "quantity": "alpha", "estimate": 0.2},
                                  {"model": "mpnet", "layer": "all", "quantity": "alpha", "estimate": 0.31}]),
              {"stage": "theory"})
    assert measured_alpha(path, "minilm") == pytest.approx(0.0752)
    assert measured_alpha(path, "mpnet") == pytest.approx(0.31)  # each model its own alpha
    with pytest.raises(ConfigError, match="alpha_models"):
        measured_alpha(path, "bge")
    write_csv(path, pd.DataFrame([{"model": "minilm", "layer": "0", "quantity": "alpha", "estimate": 0.2}]),
              {"stage": "theory"})
    with pytest.raises(ConfigError, match="pooled alpha"):
        measured_alpha(path, "minilm")
