"""Length-induced embedding collapse (the TempScale paper's Figure 1), with and without TempScale.

Real texts are binned by token length: nested windows of the same Wikipedia articles and
Shakespeare plays at several lengths (so bins differ by length only), and natural Wikipedia
paragraphs at their own length. Per bin and tau we measure how alike the embeddings are (mean
pairwise cosine, mean cosine to the bin centroid, entropy effective rank), and per layer the
attention's high-frequency gain sigma_a = ||(I-J)A(I-J)||_2 (tsdcls.common.lowpass), averaged
over heads and texts. Texts are tokenised once; each tau only reruns the model.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tsdcls.common.config import ConfigError, require
from tsdcls.common.io import write_csv, write_json
from tsdcls.common.job import Job
from tsdcls.common.lowpass import high_frequency_gain
from tsdcls.common.seeding import derive_seed
from tsdcls.common.stats import bootstrap_indices, percentile_bounds

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LengthBin:
    """Token counts (incl. the model's special tokens) in [lo, hi)."""

    lo: int
    hi: int

    @property
    def label(self) -> str:
        return f"{self.lo}-{self.hi}"

    def holds(self, n_tokens: int) -> bool:
        return self.lo <= n_tokens < self.hi


@dataclass(frozen=True)
class CollapseText:
    """One text of the analysis: where it comes from and how many tokens the model sees."""

    kind: str  # "window" (nested windows of one document) or "natural" (a paragraph as written)
    source: str  # "wikipedia" or "shakespeare"
    doc: str
    bin: str
    n_tokens: int
    text: str


# --- tokenise once, encode for every tau ----------------------------------------------------


@dataclass
class Pretokenized:
    """Padded feature batches of texts sorted by exact token count, and the way back."""

    batches: list[dict[str, Any]]
    order: list[int]  # order[k] = index in the input list of the k-th sorted text
    n_tokens: list[int]  # per input text (after truncation to max_seq_length)


def pretokenize(model: Any, texts: Sequence[str], batch_size: int = 16) -> Pretokenized:
    """Tokenise ``texts`` once with the model's own preprocessing, in length-sorted batches.

    sentence-transformers sorts by character count (a proxy); sorting by the exact token count
    keeps padding minimal, and reusing the batches for every tau skips re-tokenisation.
    """
    tokenizer = model.tokenizer
    limit = model.max_seq_length
    counts = [min(len(ids), limit) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: (-counts[i], i))
    batches = [
        dict(model.preprocess([texts[i] for i in order[start : start + batch_size]]))
        for start in range(0, len(order), batch_size)
    ]
    return Pretokenized(batches=batches, order=order, n_tokens=counts)


@torch.no_grad()
def encode_pretokenized(model: Any, pre: Pretokenized, device: str = "cpu", progress: str | None = None) -> torch.Tensor:
    """Sentence embeddings (input order, float32 on CPU) from pre-tokenised batches."""
    model.eval()
    chunks = []
    for features in tqdm(pre.batches, desc=progress, disable=progress is None, leave=False):
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}
        chunks.append(model(moved)["sentence_embedding"].float().cpu())
    sorted_embeddings = torch.cat(chunks)
    embeddings = torch.empty_like(sorted_embeddings)
    embeddings[torch.tensor(pre.order)] = sorted_embeddings
    return embeddings


CONTROLS = ("embedding_layer", "static_tokens")  # attention-free poolings of the same tokens


@torch.no_grad()
def control_embeddings(model: Any, pre: Pretokenized, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Attention-free embeddings of the same token sequences (input order, float32 on CPU).

    ``embedding_layer``: mask-weighted mean of the encoder's embedding-layer output (token +
    position (+ type) embeddings after its LayerNorm), the input of the first attention layer.
    ``static_tokens``: mask-weighted mean of the input embedding matrix rows of the tokens.
    If collapse grows with length here too, averaging alone produces it (no attention).
    """
    hf_model = model[0].auto_model
    table = hf_model.get_input_embeddings()
    embed = getattr(hf_model, "embeddings", None)
    takes_types = embed is not None and "token_type_ids" in inspect.signature(embed.forward).parameters
    pooled: dict[str, list[torch.Tensor]] = {name: [] for name in CONTROLS}
    for features in pre.batches:
        ids = features["input_ids"].to(device)
        mask = features["attention_mask"].to(device).unsqueeze(-1).float()
        if embed is None:  # T5-style encoders: no position embeddings, the table is the layer
            layer_out = table(ids)
        elif takes_types and "token_type_ids" in features:
            layer_out = embed(input_ids=ids, token_type_ids=features["token_type_ids"].to(device))
        else:
            layer_out = embed(input_ids=ids)
        for name, tokens in (("embedding_layer", layer_out), ("static_tokens", table(ids))):
            pooled[name].append(((tokens.float() * mask).sum(dim=1) / mask.sum(dim=1)).cpu())
    order = torch.tensor(pre.order)
    result = {}
    for name, chunks in pooled.items():
        sorted_embeddings = torch.cat(chunks)
        result[name] = torch.empty_like(sorted_embeddings)
        result[name][order] = sorted_embeddings
    return result


# --- similarity statistics ------------------------------------------------------------------


def mean_pairwise_cosine(embeddings: torch.Tensor) -> float:
    """Mean cosine over all pairs i < j (collapse: close to 1)."""
    unit = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    n = unit.shape[0]
    if n < 2:
        return math.nan
    gram = unit @ unit.T
    return float((gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))


def pairwise_cosine_replicates(embeddings: torch.Tensor, index: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine of every bootstrap resample of the texts (one row of ``index`` each).

    Pairs of two copies of the same text are left out (their cosine is 1 by construction): with
    c the per-text counts of a resample, the sum over distinct-text pairs is c^T G c - sum c_i^2,
    over (sum c)^2 - sum c_i^2 ordered pairs.
    """
    unit = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    gram = (unit @ unit.T).numpy()
    counts = np.stack([np.bincount(row, minlength=gram.shape[0]) for row in index]).astype(np.float64)
    squares = counts * counts
    numerator = ((counts @ gram) * counts).sum(axis=1) - squares @ np.diag(gram)
    denominator = counts.sum(axis=1) ** 2 - squares.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def mean_centroid_cosine(embeddings: torch.Tensor) -> float:
    """Mean cosine of each embedding to the mean embedding of its bin."""
    unit = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    centroid = torch.nn.functional.normalize(unit.mean(dim=0), dim=0)
    return float((unit @ centroid).mean())


def effective_rank(embeddings: torch.Tensor) -> float:
    """Roy & Vetterli (2007): exp of the entropy of the normalised singular values (uncentred)."""
    singular = torch.linalg.svdvals(torch.nn.functional.normalize(embeddings.double(), dim=-1))
    p = singular / singular.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


# --- texts ----------------------------------------------------------------------------------


def parse_bins(raw: Sequence[Sequence[int]], max_tokens: int) -> list[LengthBin]:
    """Config bins -> LengthBin list; bins beyond the model's positions are dropped (logged)."""
    bins = []
    for item in raw:
        if len(item) != 2 or not 0 < int(item[0]) < int(item[1]):
            raise ConfigError(f"config key 'tempscale.collapse.bins': each bin is [lo, hi) with 0 < lo < hi, got {item}")
        lo, hi = int(item[0]), int(item[1])
        if lo >= max_tokens:
            logger.warning("bin %d-%d skipped: the model sees at most %d tokens", lo, hi, max_tokens)
            continue
        bins.append(LengthBin(lo, min(hi, max_tokens + 1)))
    if not bins:
        raise ConfigError("config key 'tempscale.collapse.bins': no bin fits the model's max_seq_length")
    return bins


def _documents(sources: Sequence[str], min_words: int) -> list[tuple[str, str, str]]:
    """(source, doc id, text) of every long-enough document, in a stable order."""
    from tsdcls.tempscale import corpora

    docs: list[tuple[str, str, str]] = []
    for source in sources:
        if source == "wikipedia":
            docs += [("wikipedia", a.title, a.body) for a in corpora.wiki_articles() if len(a.body.split()) >= min_words]
        elif source == "shakespeare":
            docs += [("shakespeare", name, text) for name, text in corpora.shakespeare_plays() if len(text.split()) >= min_words]
        elif source == "lee_background":
            docs += [("lee_background", name, text) for name, text in _joined(corpora.lee_background_documents(), min_words)]
        else:
            raise ConfigError(f"unknown text source {source!r} (wikipedia, shakespeare, lee_background)")
    return docs


def _joined(articles: Sequence[str], min_words: int) -> list[tuple[str, str]]:
    """Consecutive short articles joined (paragraph breaks) into documents of >= min_words."""
    docs, start, parts = [], 0, []
    for index, article in enumerate(articles):
        parts.append(article)
        if sum(len(p.split()) for p in parts) >= min_words:
            docs.append((f"articles {start}-{index}", "\n\n".join(parts)))
            start, parts = index + 1, []
    return docs


def window_texts(tokenizer: Any, bins: Sequence[LengthBin], sources: Sequence[str], n_docs: int, seed: int,
                 key: str = "tempscale.collapse") -> list[CollapseText]:
    """Nested windows: from each of ``n_docs`` documents, one window per bin, all starting at
    the same (random) token of that document, so bins differ by length alone (``key``: the
    config section named in errors)."""
    special = tokenizer.num_special_tokens_to_add()
    longest = max(b.hi for b in bins) - 1
    rng = np.random.default_rng(derive_seed(seed, "collapse-windows"))
    docs = _documents(sources, min_words=longest)
    per_source = {s: [d for d in docs if d[0] == s] for s in sources}
    chosen: list[tuple[str, str, str]] = []
    for k in range(n_docs):  # round-robin over sources: each gets an equal share
        pool = per_source[sources[k % len(sources)]]
        if not pool:
            raise ConfigError(f"config key '{key}': {n_docs} texts per bin need more {sources[k % len(sources)]} documents "
                              f"of >= {longest} words than there are; lower it or the longest bin")
        chosen.append(pool.pop(int(rng.integers(len(pool)))))
    texts = []
    for source, doc, body in chosen:
        words = body.split()
        ids = tokenizer(" ".join(words[: 4 * longest]), add_special_tokens=False)["input_ids"]
        start = int(rng.integers(0, max(1, len(ids) - longest)))
        for length_bin in bins:
            target = int(rng.integers(length_bin.lo, length_bin.hi)) - special
            text = tokenizer.decode(ids[start : start + max(1, target)], skip_special_tokens=True)
            n_tokens = len(tokenizer(text)["input_ids"])
            if n_tokens >= length_bin.hi:  # re-tokenised decode can grow by a token or two
                cut = ids[start : start + max(1, target - (n_tokens - length_bin.hi + 1))]
                text = tokenizer.decode(cut, skip_special_tokens=True)
                n_tokens = len(tokenizer(text)["input_ids"])
            texts.append(CollapseText("window", source, doc, length_bin.label, n_tokens, text))
    return texts


def natural_texts(tokenizer: Any, bins: Sequence[LengthBin], per_bin: int, seed: int) -> list[CollapseText]:
    """Wikipedia paragraphs as written (lead and body), binned by their own token count."""
    from tsdcls.tempscale import corpora

    paragraphs = [
        (a.title, p) for a in corpora.wiki_articles() for p in [a.lead, *a.body.split("\n\n")] if len(p.split()) >= 3
    ]
    counts = [len(ids) for ids in tokenizer([p for _, p in paragraphs])["input_ids"]]
    rng = np.random.default_rng(derive_seed(seed, "collapse-natural"))
    texts = []
    for length_bin in bins:
        members = [i for i, n in enumerate(counts) if length_bin.holds(n)]
        picked = sorted(rng.choice(members, size=min(per_bin, len(members)), replace=False).tolist()) if members else []
        if len(picked) < per_bin:
            logger.info("natural bin %s: %d of %d paragraphs available", length_bin.label, len(picked), per_bin)
        texts += [
            CollapseText("natural", "wikipedia", paragraphs[i][0], length_bin.label, counts[i], paragraphs[i][1]) for i in picked
        ]
    return texts


# --- the analysis ---------------------------------------------------------------------------


def text_groups(texts: Sequence[CollapseText]) -> dict[tuple[str, str], list[int]]:
    """(kind, bin) -> indices of its texts, for every group of >= 2 texts."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, item in enumerate(texts):
        groups.setdefault((item.kind, item.bin), []).append(index)
    return {key: members for key, members in groups.items() if len(members) >= 2}


NESTED = "window"  # the kind whose bins hold one window of the same documents each (paired across bins)


def bootstrap_plan(texts: Sequence[CollapseText], draws: int, seed: int) -> dict[tuple[str, str], np.ndarray]:
    """One set of resampled text indices per (kind, bin), shared by every tau and pooling (paired).
    The nested windows' bins share one resample of their documents, so a change across bins is
    paired too (row i of every window bin is document i)."""
    groups = text_groups(texts)
    sizes = {len(m) for (kind, _), m in groups.items() if kind == NESTED}
    shared = bootstrap_indices(sizes.pop(), draws, derive_seed(seed, "collapse-bootstrap", NESTED)) if len(sizes) == 1 else None
    return {
        (kind, label): shared if kind == NESTED and shared is not None
        else bootstrap_indices(len(members), draws, derive_seed(seed, "collapse-bootstrap", kind, label))
        for (kind, label), members in groups.items()
    }


def add_length_change(rows: list[dict[str, Any]], replicates: list[np.ndarray], indices: list[np.ndarray],
                      level: float) -> None:
    """In place: ``length_change`` = cosine of the bin minus the shortest bin's, for the nested
    windows, with a paired CI; NaN for other kinds and wherever the two bins were not resampled
    with the same documents (``indices``: each row's resample plan)."""
    windows = [i for i, row in enumerate(rows) if row["kind"] == NESTED]
    shortest = min(windows, key=lambda i: rows[i]["bin_lo"], default=None)
    for i, row in enumerate(rows):
        if shortest is None or row["kind"] != NESTED or indices[i] is not indices[shortest]:
            row.update(length_change=math.nan, length_change_ci_low=math.nan, length_change_ci_high=math.nan)
            continue
        change = row["mean_pairwise_cosine"] - rows[shortest]["mean_pairwise_cosine"]
        row.update(_ci("length_change", change, replicates[i] - replicates[shortest], level))


def _ci(prefix: str, estimate: float, replicates: np.ndarray, level: float) -> dict[str, float]:
    low, high = percentile_bounds(replicates, level)
    return {prefix: estimate, f"{prefix}_ci_low": float(low), f"{prefix}_ci_high": float(high)}


def similarity_rows(
    model_name: str, tau: float, texts: Sequence[CollapseText], embeddings: torch.Tensor,
    plan: dict[tuple[str, str], np.ndarray], level: float, reference: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """One row per (kind, bin): how collapsed the bin's embeddings are, with bootstrap CIs over
    texts; ``reference`` (the tau = 1 embeddings) adds the paired change TempScale makes."""
    rows, all_replicates, all_indices = [], [], []
    for (kind, label), members in text_groups(texts).items():
        emb = embeddings[members]
        index = plan[(kind, label)]
        lo, hi = (int(x) for x in label.split("-"))
        cosine, replicates = mean_pairwise_cosine(emb), pairwise_cosine_replicates(emb, index)
        row = {
            "model": model_name, "tau": tau, "kind": kind, "bin": label, "bin_lo": lo, "bin_hi": hi,
            "n_texts": len(members),
            "mean_tokens": float(np.mean([texts[i].n_tokens for i in members])),
            **_ci("mean_pairwise_cosine", cosine, replicates, level),
            "mean_centroid_cosine": mean_centroid_cosine(emb),
            "effective_rank": effective_rank(emb),
        }
        if reference is not None:
            base = reference[members]
            change = replicates - pairwise_cosine_replicates(base, index)
            row.update(_ci("cosine_change_vs_tau1", cosine - mean_pairwise_cosine(base), change, level))
        rows.append(row)
        all_replicates.append(replicates)
        all_indices.append(index)
    add_length_change(rows, all_replicates, all_indices, level)
    return rows


def control_rows(
    model_name: str, texts: Sequence[CollapseText], encoder: torch.Tensor, controls: dict[str, torch.Tensor],
    plan: dict[tuple[str, str], np.ndarray], level: float,
) -> list[dict[str, Any]]:
    """Per (kind, bin, pooling): mean pairwise cosine with its CI, and the collapse ratio
    encoder / pooling (tau = 1) with a paired CI (the same resampled texts for both)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    replicates_of: dict[str, list[np.ndarray]] = {}
    indices_of: dict[str, list[np.ndarray]] = {}
    for (kind, label), members in text_groups(texts).items():
        index = plan[(kind, label)]
        encoder_cosine = mean_pairwise_cosine(encoder[members])
        encoder_reps = pairwise_cosine_replicates(encoder[members], index)
        lo, hi = (int(x) for x in label.split("-"))
        for pooling, emb in {"encoder": encoder, **controls}.items():
            cosine, replicates = mean_pairwise_cosine(emb[members]), pairwise_cosine_replicates(emb[members], index)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio_reps = encoder_reps / replicates
            rows.setdefault(pooling, []).append({
                "model": model_name, "kind": kind, "bin": label, "bin_lo": lo, "bin_hi": hi, "pooling": pooling,
                "n_texts": len(members), "mean_tokens": float(np.mean([texts[i].n_tokens for i in members])),
                **_ci("mean_pairwise_cosine", cosine, replicates, level),
                **_ci("collapse_ratio", encoder_cosine / cosine if cosine else math.nan, ratio_reps, level),
            })
            replicates_of.setdefault(pooling, []).append(replicates)
            indices_of.setdefault(pooling, []).append(index)
    for pooling, pooling_rows in rows.items():
        add_length_change(pooling_rows, replicates_of[pooling], indices_of[pooling], level)
    return [row for pooling_rows in rows.values() for row in pooling_rows]


@torch.no_grad()
def attention_gains(hf_model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, device: str, exact_max_n: int, iters: int) -> np.ndarray:
    """sigma_a per (text, layer), averaged over heads; each text alone (no padding in A)."""
    gains = []
    for text in texts:
        enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt").to(device)
        out = hf_model(**enc, output_attentions=True)
        if not out.attentions or out.attentions[0] is None:
            raise RuntimeError("the attention model returned no attention probabilities (needs eager attention)")
        gains.append([float(high_frequency_gain(a[0].cpu(), exact_max_n=exact_max_n, iters=iters).mean()) for a in out.attentions])
    return np.asarray(gains, dtype=float)


def analyse_model(model_name: str, cfg: dict[str, Any], taus: Sequence[float], seed: int, device: str,
                  revision: str | None = None) -> dict[str, list[dict]]:
    """Similarity, attention, control and text rows for one encoder (taus: 1.0 first); a hub id
    is read from the Hugging Face cache at ``revision`` (tempscale.model_revisions)."""
    from sentence_transformers import SentenceTransformer

    from tsdcls.tempscale.patch import (
        apply_tempscale,
        load_encoder,
        position_limit,
        remove_tempscale,
    )

    probe = load_encoder(model_name, device=device, revision=revision)
    limit = position_limit(probe) or probe.max_seq_length
    max_len = int(min(cfg["max_seq_length"], limit))
    probe.max_seq_length = max_len
    tokenizer = probe.tokenizer
    bins = parse_bins(cfg["bins"], max_len)
    sources = list(cfg["sources"])
    texts = window_texts(tokenizer, bins, sources, int(cfg["windows_per_bin"]), seed)
    if int(cfg["natural_per_bin"]) > 0:
        texts += natural_texts(tokenizer, bins, int(cfg["natural_per_bin"]), seed)
    pre = pretokenize(probe, [t.text for t in texts], batch_size=int(cfg["batch_size"]))

    # sigma_a needs the attention probabilities, which only the eager kernel returns; a second
    # copy keeps the embeddings above on the model's own (SDPA) path.
    eager = SentenceTransformer(_path(model_name, revision), device=device, model_kwargs={"attn_implementation": "eager"})
    eager_hf = eager[0].auto_model
    k = int(cfg["attention_texts_per_bin"])
    windows = [t for t in texts if t.kind == "window"]
    attention_sets = {b.label: [t for t in windows if t.bin == b.label][:k] for b in bins}

    plan = bootstrap_plan(texts, int(cfg["bootstrap_draws"]), seed)
    level = float(cfg["ci_level"])
    similarity, attention, controls = [], [], []
    reference = None
    for tau in tqdm(taus, desc=f"collapse {model_name}", leave=False):
        apply_tempscale(probe, tau)
        embeddings = encode_pretokenized(probe, pre, device=device)
        remove_tempscale(probe)
        if tau == 1.0:
            reference = embeddings
            controls = control_rows(model_name, texts, embeddings, control_embeddings(probe, pre, device), plan, level)
        similarity += similarity_rows(model_name, tau, texts, embeddings, plan, level, reference)
        if k == 0:
            continue
        apply_tempscale(eager, tau)
        for label, members in attention_sets.items():
            gains = attention_gains(eager_hf, tokenizer, [t.text for t in members], max_len, device,
                                    int(cfg["sigma_exact_max_tokens"]), int(cfg["sigma_power_iters"]))
            for layer in range(gains.shape[1]):
                attention.append({
                    "model": model_name, "tau": tau, "bin": label,
                    "bin_lo": int(label.split("-")[0]), "bin_hi": int(label.split("-")[1]), "layer": layer,
                    "n_texts": gains.shape[0], "mean_tokens": float(np.mean([t.n_tokens for t in members])),
                    "sigma_a_mean": float(gains[:, layer].mean()),
                    "sigma_a_std": float(gains[:, layer].std(ddof=1)) if gains.shape[0] > 1 else 0.0,
                })
        remove_tempscale(eager)
    text_rows = [{"model": model_name, **{k2: v for k2, v in asdict(t).items() if k2 != "text"}, "preview": t.text[:60]} for t in texts]
    return {"similarity": similarity, "attention": attention, "controls": controls, "texts": text_rows}


def _path(model_name: str, revision: str | None = None) -> str:
    from tsdcls.common.assets import model_path

    return model_path(model_name, revision)


def collapse_checks(similarity: Any) -> dict[str, Any]:
    """Per model and kind: does similarity grow with length at tau = 1, and does TempScale lower it
    in the longest bin? Recorded as measured (booleans and numbers), never enforced."""
    import pandas as pd

    checks: dict[str, Any] = {}
    for (model, kind), frame in similarity.groupby(["model", "kind"]):
        base = frame[frame["tau"] == 1.0].sort_values("bin_lo")
        if len(base) < 2:
            continue
        rho = float(pd.Series(base["bin_lo"].to_numpy()).corr(pd.Series(base["mean_pairwise_cosine"].to_numpy()), method="spearman"))
        longest = base["bin"].iloc[-1]
        at_longest = frame[frame["bin"] == longest].set_index("tau")["mean_pairwise_cosine"]
        checks[f"{model}/{kind}"] = {
            "spearman_length_vs_cosine_tau1": rho,
            "cosine_shortest_bin_tau1": float(base["mean_pairwise_cosine"].iloc[0]),
            "cosine_longest_bin_tau1": float(base["mean_pairwise_cosine"].iloc[-1]),
            "collapse_grows_with_length": bool(base["mean_pairwise_cosine"].iloc[-1] > base["mean_pairwise_cosine"].iloc[0]),
            "longest_bin_cosine_by_tau": {str(t): float(v) for t, v in at_longest.items()},
            "tempscale_lowers_longest_bin_cosine": {
                str(t): bool(v < at_longest.get(1.0, math.nan)) for t, v in at_longest.items() if t != 1.0
            },
        }
    return checks


def run_collapse(job: Job) -> None:
    """Verb tempscale-collapse: CSVs of similarity per bin (with CIs), attention-free controls,
    sigma_a per layer, texts, and the (never enforced) checks."""
    import pandas as pd

    cfg = dict(require(job.config, "collapse"))
    models = list(require(job.config, "models"))
    taus = sorted({1.0, *(float(t) for t in require(job.config, "taus"))}, reverse=True)
    if any(t <= 0 for t in taus):
        raise ConfigError(f"config key 'tempscale.taus': temperatures must be positive, got {taus}")
    if not 0 < float(cfg["ci_level"]) < 1:
        raise ConfigError(f"config key 'tempscale.collapse.ci_level' must lie in (0, 1), got {cfg['ci_level']}")
    tables: dict[str, list[dict]] = {"similarity": [], "attention": [], "controls": [], "texts": []}
    for model_name in models:
        revision = (job.config.get("model_revisions") or {}).get(model_name)
        for name, rows in analyse_model(model_name, cfg, taus, job.seed, job.device, revision).items():
            tables[name] += rows
    frames = {name: pd.DataFrame(rows) for name, rows in tables.items()}
    prov = job.prov(scale=job.config.get("scale", "unknown"), max_seq_length=cfg["max_seq_length"], taus=taus, models=models,
                    bootstrap_draws=cfg["bootstrap_draws"], ci_level=cfg["ci_level"])
    for name, frame in frames.items():
        if name in job.outputs:
            write_csv(job.output(name), frame, prov)
        else:
            logger.warning("rule gave no output '%s': those rows are not written", name)
    write_json(job.output("checks"), {"checks": collapse_checks(frames["similarity"]), "taus": taus, "models": models}, prov)
