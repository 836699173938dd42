"""Check (d): the high-frequency gain of a real encoder's attention on real text of growing length.

Texts: the first articles of gensim's shortened English Wikipedia dump that are long enough,
cut to growing token prefixes (the same articles at every length, so the trend is paired).
Attention probabilities come from transformers' eager attention; other temperatures are made
with ``retemper``, exact per layer for that layer's (tau = 1) input: the change a lower tau would
cause in later layers' inputs is not propagated (docs/theory.md).
"""

from __future__ import annotations

import bz2
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from tsdcls.common.assets import gensim_test_data, model_path
from tsdcls.common.config import ConfigError, require
from tsdcls.common.io import write_csv
from tsdcls.common.job import Job
from tsdcls.common.lowpass import hc_component, high_frequency_gain, retemper
from tsdcls.theory import bounds
from tsdcls.theory.checks import write_checks
from tsdcls.theory.record import Check, blas_threads

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


@dataclass(frozen=True)
class RealSettings:
    """theory.real_attention as typed values (see workflow/schemas/theory.schema.yaml)."""

    model: str
    lengths: list[int]
    taus: list[float]
    texts_per_length: int
    wiki_dump: str = WIKI_DUMP
    exact_max_n: int = 256
    expected_length_trend: str = "rises"
    min_layer_fraction: float = 0.5

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> RealSettings:
        unknown = sorted(set(section) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"config key 'theory.real_attention.{unknown[0]}' is not a known setting")
        try:
            settings = cls(**section)
        except TypeError as err:
            raise ConfigError(f"config section 'theory.real_attention' is incomplete: {err}") from err
        if 1.0 not in settings.taus or not any(t < 1.0 for t in settings.taus):
            raise ConfigError("config key 'theory.real_attention.taus' must hold 1.0 and at least one tau < 1")
        if sorted(set(settings.lengths)) != list(settings.lengths):
            raise ConfigError("config key 'theory.real_attention.lengths' must be strictly increasing")
        if settings.expected_length_trend not in {"rises", "falls"}:
            raise ConfigError("config key 'theory.real_attention.expected_length_trend' must be 'rises' or 'falls'")
        return settings


def wiki_dump_path(name: str) -> Path:
    """The dump file: a name inside gensim's test data, or a path."""
    path = Path(name)
    if not path.is_absolute():
        path = gensim_test_data() / name
    if not path.is_file():
        raise ConfigError(f"config key 'theory.real_attention.wiki_dump': {path} does not exist")
    return path


def clean_wiki_text(markup: str) -> str:
    """Plain text of one article: gensim's markup filter, bold/italic quotes and whitespace removed."""
    from gensim.corpora.wikicorpus import filter_wiki

    text = filter_wiki(markup)
    text = re.sub(r"'{2,}", "", text)
    return re.sub(r"\s+", " ", text).strip()


def long_articles(dump: Path, tokenizer: Any, min_tokens: int, count: int) -> list[tuple[str, str]]:
    """The first ``count`` main-namespace, non-redirect articles with >= ``min_tokens`` tokens."""
    from gensim.corpora.wikicorpus import extract_pages

    chosen: list[tuple[str, str]] = []
    with bz2.open(dump, "rb") as handle:
        for title, markup, _page_id in extract_pages(handle, filter_namespaces=("0",)):
            if not markup or markup.lstrip().lower().startswith("#redirect"):
                continue
            text = clean_wiki_text(markup)
            ids = tokenizer(text, truncation=True, max_length=min_tokens)["input_ids"]
            if len(ids) >= min_tokens:
                chosen.append((title, text))
                if len(chosen) == count:
                    return chosen
    raise ConfigError(
        f"config key 'theory.real_attention.texts_per_length': {dump.name} holds only {len(chosen)} "
        f"articles with >= {min_tokens} tokens, {count} requested"
    )


def logit_half_range(attn: torch.Tensor) -> torch.Tensor:
    """Per head: max over rows of (max_j S_ij - min_j S_ij) / 2, read off log A (tau = 1).

    Softmax ignores a per-row shift, so this is the smallest gamma with |S - c_i| <= gamma:
    the closed-form bound applies with it (inf if a probability underflowed to 0).
    """
    log_attn = torch.log(attn.to(torch.float64))
    spread = log_attn.amax(dim=-1) - log_attn.amin(dim=-1)
    return spread.amax(dim=-1) / 2.0


def probe_text(
    model: Any, tokenizer: Any, text: str, n: int, settings: RealSettings, device: str
) -> list[dict[str, Any]]:
    """Per layer and tau: head-mean sigma_a, head-max sigma_a, realized gain, bound."""
    encoded = tokenizer(text, truncation=True, max_length=n, return_tensors="pt").to(device)
    if encoded["input_ids"].shape[1] != n:
        raise ConfigError(f"text gave {encoded['input_ids'].shape[1]} tokens, not {n}")
    with torch.no_grad():
        out = model(**encoded, output_attentions=True, output_hidden_states=True)
    rows = []
    for layer, attn in enumerate(out.attentions):
        attn = attn[0].to(torch.float64)  # heads x n x n
        values = _value_heads(model, layer, out.hidden_states[layer][0], attn.shape[0])
        half_range = logit_half_range(attn).cpu()
        for tau in settings.taus:
            tempered = retemper(attn, tau) if tau != 1.0 else attn
            gains = high_frequency_gain(tempered, exact_max_n=settings.exact_max_n).cpu()
            realized = _realized_gain(tempered, values).cpu()
            bound = torch.tensor([bounds.bounded_logit_gain_bound(n, float(g), tau) if math.isfinite(g) else math.inf
                                  for g in half_range.tolist()], dtype=torch.float64)
            rows.append({
                "n": n, "layer": layer, "tau": tau,
                "sigma_a": float(gains.mean()), "sigma_a_head_max": float(gains.max()),
                "sigma_a_head_min": float(gains.min()),
                "realized_gain": float(realized.mean()),
                "logit_half_range_max": float(half_range.max()),
                "bound_margin_min": float(((bound - gains) / bound).min()),
            })
    return rows


def _value_heads(model: Any, layer: int, hidden: torch.Tensor, heads: int) -> torch.Tensor:
    """The value vectors V_h (heads x n x d_head) that layer's attention mixes."""
    projection = model.encoder.layer[layer].attention.self.value
    with torch.no_grad():
        values = projection(hidden)
    return values.reshape(hidden.shape[0], heads, -1).transpose(0, 1).to(torch.float64)


def _realized_gain(attn: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """||HC[A V]||_F / ||HC[V]||_F per head: the gain on the actual inputs (<= sigma_a)."""
    mixed = torch.linalg.matrix_norm(hc_component(attn @ values))
    return mixed / torch.linalg.matrix_norm(hc_component(values))


def load_encoder(name: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    path = model_path(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").to(device).eval()
    if not hasattr(model, "encoder") or not hasattr(model.encoder, "layer"):
        raise ConfigError(f"config key 'theory.real_attention.model': {name} is not a BERT-style encoder")
    return model, tokenizer


def measure(settings: RealSettings, device: str) -> pd.DataFrame:
    model, tokenizer = load_encoder(settings.model, device)
    limit = int(getattr(model.config, "max_position_embeddings", 512))
    if max(settings.lengths) > limit:
        raise ConfigError(f"config key 'theory.real_attention.lengths': {max(settings.lengths)} > model limit {limit}")
    articles = long_articles(wiki_dump_path(settings.wiki_dump), tokenizer, max(settings.lengths),
                             settings.texts_per_length)
    rows = []
    jobs = [(n, idx) for n in settings.lengths for idx in range(len(articles))]
    for n, idx in tqdm(jobs, desc="real attention", leave=False, mininterval=5):
        title, text = articles[idx]
        for row in probe_text(model, tokenizer, text, n, settings, device):
            rows.append({"text": idx, "title": title, **row})
    return pd.DataFrame(rows)


def layer_slopes(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Log-log slope of the text-mean ``column`` against n, per (layer, tau)."""
    means = frame.groupby(["layer", "tau", "n"], as_index=False)[column].mean()
    rows = []
    for (layer, tau), group in means.groupby(["layer", "tau"]):
        slope, _ = bounds.fit_loglog_slope(group["n"], group[column])
        rows.append({"layer": int(layer), "tau": float(tau), "quantity": column, "slope": slope})
    return pd.DataFrame(rows)


def real_checks(frame: pd.DataFrame, settings: RealSettings) -> list[Check]:
    """(d1) tau < 1 raises sigma_a; (d2) the length trend; (d3) the closed-form bound holds."""
    means = frame.groupby(["layer", "tau", "n"], as_index=False)[["sigma_a", "realized_gain"]].mean()
    rises = []
    for (layer, n), group in means.groupby(["layer", "n"]):
        ordered = group.sort_values("tau", ascending=False)["sigma_a"].to_numpy()
        rises.append({"layer": int(layer), "n": int(n), "min_rise": float(np.min(ordered[1:] / ordered[:-1] - 1.0))})
    worst_rise = min(rises, key=lambda r: r["min_rise"])
    tau_check = Check(
        name="real_tau_raises_gain",
        claim="on MiniLM attention, every tau < 1 raises the head-mean sigma_a of every layer at every length",
        worst_margin=worst_rise["min_rise"],
        details={"margin_unit": "smallest relative rise of sigma_a between neighbouring taus", "worst": worst_rise},
    )
    shortest, longest = min(settings.lengths), max(settings.lengths)
    at_one = means[means["tau"] == 1.0].set_index(["layer", "n"])
    layers = sorted(int(x) for x in frame["layer"].unique())

    def falls(column: str) -> list[int]:
        return [layer for layer in layers
                if at_one.loc[(layer, longest), column] < at_one.loc[(layer, shortest), column]]

    sigma_falls, realized_falls = falls("sigma_a"), falls("realized_gain")
    expected = sigma_falls if settings.expected_length_trend == "falls" else [x for x in layers if x not in sigma_falls]
    slopes = pd.concat([layer_slopes(frame, "sigma_a"), layer_slopes(frame, "realized_gain")])
    one = slopes[slopes["tau"] == 1.0]
    trend_check = Check(
        name="real_length_trend",
        claim=(f"tau = 1: head-mean sigma_a at n={longest} {settings.expected_length_trend} against n={shortest} "
               f"in at least {settings.min_layer_fraction:.0%} of the layers"),
        worst_margin=len(expected) / len(layers) - settings.min_layer_fraction,
        details={
            "margin_unit": "fraction of layers with the expected trend - required fraction",
            "layers_sigma_a_falls": sigma_falls,
            "layers_realized_gain_falls": realized_falls,
            "sigma_a_slope_per_layer_tau1": one[one["quantity"] == "sigma_a"]["slope"].round(4).tolist(),
            "realized_gain_slope_per_layer_tau1": one[one["quantity"] == "realized_gain"]["slope"].round(4).tolist(),
            "note": "the paper's premise is 'falls'; MiniLM measured otherwise, see docs/theory.md",
        },
    )
    finite = frame["logit_half_range_max"][np.isfinite(frame["logit_half_range_max"])]
    bound_check = Check(
        name="real_closed_form_bound",
        claim="every head's sigma_a <= the closed-form bound at gamma = its logit half-range",
        worst_margin=float(frame["bound_margin_min"].min()),
        details={"margin_unit": "(bound - sigma_a) / bound, worst head",
                 "max_finite_logit_half_range": float(finite.max()) if len(finite) else None,
                 "rows_with_underflowed_probabilities": int((~np.isfinite(frame["logit_half_range_max"])).sum())},
    )
    return [tau_check, trend_check, bound_check]


def run_real_attention(job: Job) -> None:
    """Verb `theory-real-attention`: gains CSV (per text, length, layer, tau) + checks JSON."""
    settings = RealSettings.from_config(dict(require(job.config, "real_attention")))
    with blas_threads(job.threads):
        frame = measure(settings, job.device)
    provenance = job.prov(scale=job.config.get("scale"), model=settings.model, wiki_dump=settings.wiki_dump)
    write_csv(job.output("gains"), frame, provenance)
    if "slopes" in job.outputs:
        slopes = pd.concat([layer_slopes(frame, "sigma_a"), layer_slopes(frame, "realized_gain")])
        write_csv(job.output("slopes"), slopes, provenance)
    write_checks(job, real_checks(frame, settings), provenance)
