"""Length-collapse analysis: the statistics, the text windows, pre-tokenised encoding, and the
smoke run's CSVs, checks and figure (read from the shared ``smoke_run`` fixture)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tsdcls.common.io import read_csv, read_provenance
from tsdcls.tempscale.collapse import (
    LengthBin,
    control_embeddings,
    effective_rank,
    encode_pretokenized,
    mean_centroid_cosine,
    mean_pairwise_cosine,
    pairwise_cosine_replicates,
    pretokenize,
    window_texts,
)

REPO = Path(__file__).resolve().parents[1]


def _smoke_collapse_config() -> dict:
    """The collapse settings the smoke run used: config.yaml overlaid with the smoke preset."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())["tempscale"]
    smoke = yaml.safe_load((REPO / "workflow/presets/smoke.yaml").read_text()).get("tempscale", {})
    merged = {**base, **{k: v for k, v in smoke.items() if k != "collapse"}}
    merged["collapse"] = {**base["collapse"], **smoke.get("collapse", {})}
    return merged


# --- statistics -----------------------------------------------------------------------------


def test_similarity_statistics_on_known_geometry():
    identical = torch.ones(5, 8)
    orthonormal = torch.eye(6, 16) * 3.0  # scale must not matter
    assert mean_pairwise_cosine(identical) == pytest.approx(1.0)
    assert mean_centroid_cosine(identical) == pytest.approx(1.0)
    assert effective_rank(identical) == pytest.approx(1.0)
    assert mean_pairwise_cosine(orthonormal) == pytest.approx(0.0, abs=1e-12)
    assert mean_centroid_cosine(orthonormal) == pytest.approx(1 / math.sqrt(6))
    assert effective_rank(orthonormal) == pytest.approx(6.0)
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert mean_pairwise_cosine(antipodal) == pytest.approx(-1.0)


def test_pairwise_cosine_replicates_leave_out_copies_of_one_text():
    emb = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    index = np.array([[0, 1, 2, 3, 4], [0, 0, 3, 3, 4], [2, 2, 2, 2, 2]])
    reps = pairwise_cosine_replicates(emb, index)
    assert reps[0] == pytest.approx(mean_pairwise_cosine(emb), rel=1e-12)
    unit = torch.nn.functional.normalize(emb.double(), dim=-1)
    pairs = [float(unit[a] @ unit[b]) for i, a in enumerate(index[1]) for j, b in enumerate(index[1]) if i != j and a != b]
    assert reps[1] == pytest.approx(np.mean(pairs), rel=1e-12)
    assert math.isnan(reps[2]), "a resample of one text has no pair"


# --- texts and pre-tokenised encoding (real MiniLM, real corpora) --------------------------


@pytest.fixture(scope="module")
def minilm():
    from tsdcls.tempscale.patch import load_encoder

    return load_encoder("minilm", max_seq_length=512)


def test_windows_are_nested_and_land_in_their_bins(minilm):
    bins = [LengthBin(8, 32), LengthBin(32, 64), LengthBin(64, 128)]
    texts = window_texts(minilm.tokenizer, bins, ["wikipedia", "shakespeare"], n_docs=4, seed=3)
    assert len(texts) == 4 * len(bins)
    assert {t.source for t in texts} == {"wikipedia", "shakespeare"}
    for doc in {t.doc for t in texts}:
        windows = sorted((t for t in texts if t.doc == doc), key=lambda t: t.n_tokens)
        assert [w.bin for w in windows] == [b.label for b in bins]
        for shorter, longer in zip(windows, windows[1:], strict=False):
            assert longer.text.startswith(shorter.text[: len(shorter.text) // 2]), "windows must share their start"
    for item in texts:
        length_bin = next(b for b in bins if b.label == item.bin)
        assert length_bin.holds(item.n_tokens)
        assert item.n_tokens == len(minilm.tokenizer(item.text)["input_ids"])
    again = window_texts(minilm.tokenizer, bins, ["wikipedia", "shakespeare"], n_docs=4, seed=3)
    assert [t.text for t in again] == [t.text for t in texts], "same seed, same texts"


def test_pretokenized_encoding_equals_encode(minilm):
    texts = ["one short line", "a somewhat longer sentence about attention " * 6, "mid length text here " * 3]
    pre = pretokenize(minilm, texts, batch_size=2)
    assert pre.n_tokens[1] == max(pre.n_tokens) and pre.order[0] == 1, "batches sorted by exact token count"
    direct = minilm.encode(texts, convert_to_tensor=True, batch_size=2)
    assert torch.allclose(encode_pretokenized(minilm, pre), direct, atol=1e-5)
    assert torch.equal(encode_pretokenized(minilm, pre), encode_pretokenized(minilm, pre)), "batches reusable"


def test_control_embeddings_pool_the_embedding_layer_and_the_token_table(minilm):
    texts = ["one short line", "a somewhat longer sentence about attention " * 6]
    pre = pretokenize(minilm, texts, batch_size=2)  # one padded batch: padding must not count
    controls = control_embeddings(minilm, pre)
    hf = minilm[0].auto_model
    with torch.no_grad():
        for i, text in enumerate(texts):
            ids = minilm.tokenizer(text, return_tensors="pt")["input_ids"]
            assert torch.allclose(controls["static_tokens"][i], hf.embeddings.word_embeddings(ids)[0].mean(0), atol=1e-6)
            assert torch.allclose(controls["embedding_layer"][i], hf.embeddings(input_ids=ids)[0].mean(0), atol=1e-5)
    assert not torch.allclose(controls["static_tokens"], controls["embedding_layer"], atol=1e-3)


# --- the smoke run --------------------------------------------------------------------------


def test_smoke_collapse_outputs(smoke_run):
    cfg = _smoke_collapse_config()
    folder = smoke_run / "results/tempscale"
    sim = read_csv(folder / "collapse_similarity.csv")
    att = read_csv(folder / "collapse_attention.csv")
    texts = read_csv(folder / "collapse_texts.csv")
    for path in ("collapse_similarity.csv", "collapse_attention.csv", "collapse_checks.json"):
        assert read_provenance(folder / path)["scale"] == "smoke"
    expected_taus = sorted({1.0, *cfg["taus"]})
    expected_bins = [f"{lo}-{hi}" for lo, hi in cfg["collapse"]["bins"]]
    assert sorted(set(sim["tau"])) == expected_taus
    assert set(sim["model"]) == set(cfg["models"])
    windows = sim[sim["kind"] == "window"]
    assert sorted(set(windows["bin"]), key=expected_bins.index) == expected_bins
    assert (windows["n_texts"] == cfg["collapse"]["windows_per_bin"]).all()
    assert sim["mean_pairwise_cosine"].between(-1, 1).all() and sim["mean_centroid_cosine"].between(-1, 1).all()
    assert (sim["effective_rank"] >= 1 - 1e-9).all() and (sim["effective_rank"] <= sim["n_texts"] + 1e-9).all()
    assert (sim["mean_tokens"] >= sim["bin_lo"]).all() and (sim["mean_tokens"] < sim["bin_hi"]).all()
    # every window text sits in the bin it is listed under
    for _, row in texts.iterrows():
        lo, hi = (int(x) for x in row["bin"].split("-"))
        assert lo <= row["n_tokens"] < hi
    # bootstrap CIs over texts bracket the estimate; tau = 1 is its own reference (change 0)
    assert (sim["mean_pairwise_cosine_ci_low"] <= sim["mean_pairwise_cosine"] + 1e-12).all()
    assert (sim["mean_pairwise_cosine"] <= sim["mean_pairwise_cosine_ci_high"] + 1e-12).all()
    assert (sim.loc[sim["tau"] == 1.0, "cosine_change_vs_tau1"] == 0).all()
    # attention-free controls beside the encoder, ratio encoder / control per bin
    controls = read_csv(folder / "collapse_controls.csv")
    assert set(controls["pooling"]) == {"encoder", "embedding_layer", "static_tokens"}
    encoder = sim[sim["tau"] == 1.0].set_index(["kind", "bin"])["mean_pairwise_cosine"]
    for _, row in controls.iterrows():
        assert row["collapse_ratio"] == pytest.approx(encoder.loc[(row["kind"], row["bin"])] / row["mean_pairwise_cosine"])
        assert row["collapse_ratio_ci_low"] <= row["collapse_ratio"] + 1e-9 <= row["collapse_ratio_ci_high"] + 2e-9
    # sigma_a: every layer of MiniLM, every tau, finite and non-negative
    assert sorted(set(att["layer"])) == list(range(6))
    assert sorted(set(att["tau"])) == expected_taus
    assert np.isfinite(att["sigma_a_mean"]).all() and (att["sigma_a_mean"] >= 0).all()
    # TempScale sharpens attention: a lower tau never lowers the mean gain over layers and bins
    by_tau = att.groupby("tau")["sigma_a_mean"].mean()
    assert by_tau.loc[min(expected_taus)] > by_tau.loc[1.0]


def test_smoke_collapse_checks_match_the_csv(smoke_run):
    folder = smoke_run / "results/tempscale"
    sim = read_csv(folder / "collapse_similarity.csv")
    checks = json.loads((folder / "collapse_checks.json").read_text())["checks"]
    assert checks, "one check block per model and text kind"
    for key, block in checks.items():
        model, kind = key.split("/")
        base = sim[(sim["model"] == model) & (sim["kind"] == kind) & (sim["tau"] == 1.0)].sort_values("bin_lo")
        first, last = base["mean_pairwise_cosine"].iloc[0], base["mean_pairwise_cosine"].iloc[-1]
        assert block["cosine_shortest_bin_tau1"] == pytest.approx(first)
        assert block["cosine_longest_bin_tau1"] == pytest.approx(last)
        assert block["collapse_grows_with_length"] == bool(last > first)


def test_smoke_collapse_figure(smoke_run):
    stem = smoke_run / "results/figures/tempscale_collapse"
    for suffix in (".png", ".pdf"):
        path = stem.with_suffix(suffix)
        assert path.stat().st_size > 5_000
        assert read_provenance(path)["scale"] == "smoke"


def test_length_change_of_nested_windows_is_paired_over_documents() -> None:
    """Two window bins holding the same 6 documents' embeddings: their cosine change is exactly
    0 in every resample (paired); the natural bins, different texts, get no length change."""
    import numpy as np
    import torch

    from tsdcls.tempscale.collapse import CollapseText, bootstrap_plan, similarity_rows

    texts = [CollapseText("window", "wikipedia", f"d{d}", label, 10, "x") for label in ("8-64", "256-512")
             for d in range(6)]
    texts += [CollapseText("natural", "wikipedia", f"p{d}", label, 10, "x") for label in ("8-64", "256-512")
              for d in range(5)]
    generator = torch.Generator().manual_seed(0)
    docs = torch.randn(6, 8, generator=generator)
    embeddings = torch.cat([docs, docs, torch.randn(10, 8, generator=generator)])
    plan = bootstrap_plan(texts, 200, seed=0)
    assert np.array_equal(plan[("window", "8-64")], plan[("window", "256-512")])
    assert not np.array_equal(plan[("natural", "8-64")], plan[("natural", "256-512")])
    rows = {(r["kind"], r["bin"]): r for r in similarity_rows("m", 1.0, texts, embeddings, plan, 0.95)}
    longest = rows[("window", "256-512")]
    assert longest["length_change"] == 0.0
    assert longest["length_change_ci_low"] == longest["length_change_ci_high"] == 0.0
    assert longest["mean_pairwise_cosine_ci_high"] > longest["mean_pairwise_cosine_ci_low"]  # each bin alone varies
    assert np.isnan(rows[("natural", "256-512")]["length_change"])
    unpaired = {**plan, ("window", "256-512"): plan[("window", "256-512")].copy()}  # same draws, not one plan
    rows = {(r["kind"], r["bin"]): r for r in similarity_rows("m", 1.0, texts, embeddings, unpaired, 0.95)}
    assert np.isnan(rows[("window", "256-512")]["length_change"])  # never called paired unless it is
