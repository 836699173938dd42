"""Check (d): the high-frequency gain of a real encoder's attention on real text of growing length.

Texts: the first articles of gensim's shortened English Wikipedia dump that are long enough,
cut to growing token prefixes (the same articles at every length, so the trend is paired).
Attention probabilities come from transformers' eager attention; other temperatures are made
with ``retemper``, exact per layer for that layer's (tau = 1) input: the change a lower tau would
cause in later layers' inputs is not propagated (docs/theory.md).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from tsdcls.common import wikipedia
from tsdcls.common.assets import model_path
from tsdcls.common.config import ConfigError, reject_unknown_keys, require
from tsdcls.common.io import write_csv
from tsdcls.common.job import Job
from tsdcls.common.lowpass import hc_component, high_frequency_gain, retemper
from tsdcls.theory import bounds
from tsdcls.theory.checks import LOG, write_checks
from tsdcls.theory.record import Check, blas_threads


@dataclass(frozen=True)
class RealSettings:
    """theory.real_attention as typed values (defaults and meanings: workflow/schemas/theory.schema.yaml)."""

    model: str
    lengths: list[int]
    taus: list[float]
    texts_per_length: int
    wiki_dump: str
    exact_max_n: int
    n_ref: int
    top_key_columns: int
    restore_tau_min: float
    restore_tau_max: float
    restore_tau_points: int
    bootstrap_draws: int
    ci_level: float
    alpha_models: tuple[str, ...] = ()  # more encoders whose alpha of tau(n) is measured (tau_law.csv only)

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> RealSettings:
        reject_unknown_keys(section, cls.__dataclass_fields__, "theory.real_attention")
        section = {**section, "alpha_models": tuple(section.get("alpha_models", ()))}
        missing = sorted(set(cls.__dataclass_fields__) - set(section))
        if missing:
            raise ConfigError(f"config key 'theory.real_attention.{missing[0]}' is missing (defaults: config.yaml)")
        settings = cls(**section)
        settings.validate()
        return settings

    def validate(self) -> None:
        key = "config key 'theory.real_attention."
        if 1.0 not in self.taus or not any(t < 1.0 for t in self.taus):
            raise ConfigError(key + "taus' must hold 1.0 and at least one tau < 1")
        if sorted(set(self.lengths)) != list(self.lengths) or min(self.lengths) < 4:
            raise ConfigError(key + "lengths' must be strictly increasing and >= 4 (two sink tokens + two content)")
        if self.n_ref not in self.lengths:
            raise ConfigError(key + f"n_ref' ({self.n_ref}) must be one of the lengths {self.lengths}")
        if not 1 <= self.top_key_columns < min(self.lengths):
            raise ConfigError(key + "top_key_columns' must lie in [1, min(lengths))")
        if not 0 < self.restore_tau_min < 1.0 < self.restore_tau_max or self.restore_tau_points < 3:
            raise ConfigError(key + "restore_tau_min/max' must bracket 1 (0 < min < 1 < max), restore_tau_points >= 3")
        if self.texts_per_length < 2 or not 0 < self.ci_level < 1:
            raise ConfigError(key + "texts_per_length' must be >= 2 (bootstrap) and ci_level in (0, 1)")

    @property
    def restore_grid(self) -> np.ndarray:
        """Temperatures at which the typical gain is tabulated to solve for the restoring tau."""
        return np.geomspace(self.restore_tau_min, self.restore_tau_max, self.restore_tau_points)


def long_articles(dump: Path, tokenizer: Any, min_tokens: int, count: int) -> list[tuple[str, str]]:
    """The first ``count`` main-namespace, non-redirect articles with >= ``min_tokens`` tokens."""
    chosen: list[tuple[str, str]] = []
    for page in wikipedia.pages(dump):
        text = wikipedia.plain_text(page.text)
        ids = tokenizer(text, truncation=True, max_length=min_tokens)["input_ids"]
        if len(ids) >= min_tokens:
            chosen.append((page.title, text))
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


def sink_free(attn: torch.Tensor, sinks: torch.Tensor) -> torch.Tensor:
    """Attention among content tokens: sink rows and columns removed, rows renormalised.

    Exactly softmax over the content keys of the same logits (the sinks masked out), seen by
    the content queries; a row-stochastic (n - s) x (n - s) matrix (docs/theory.md, section 4).
    """
    keep = ~sinks
    content = attn[..., keep, :][..., keep]
    return content / content.sum(dim=-1, keepdim=True)


def typical_gain(attn: torch.Tensor) -> torch.Tensor:
    """||(I-J) A (I-J)||_F / sqrt(n-1): the RMS gain over directions of the HC subspace.

    For row-stochastic A, A J = J, so (I-J) A (I-J) = A - J A (A minus its column means) and
    ||.||_F^2 = sum A_ij^2 - (1/n) sum_j (sum_i A_ij)^2: no n x n temporary beyond A itself.
    """
    n = attn.shape[-1]
    squares = attn.square().sum(dim=(-2, -1), dtype=torch.float64)
    squares = squares - attn.sum(dim=-2, dtype=torch.float64).square().sum(dim=-1) / n
    return squares.clamp_min(0).sqrt() / math.sqrt(n - 1)


def typical_gain_curve(attn: torch.Tensor, taus: np.ndarray) -> list[float]:
    """Head-mean typical gain of softmax(log A / tau) for every tau.

    log A is taken once; the tempered probabilities are float32 (sums in float64): this grid is
    the stage's largest cost, and 1e-7 relative error is far below the spread over texts.
    """
    log_attn = torch.log(attn).to(torch.float32)
    return [float(typical_gain(torch.softmax(log_attn / float(tau), dim=-1)).mean()) for tau in taus]


def top_key_share(attn: torch.Tensor, sigma: torch.Tensor, k: int) -> torch.Tensor:
    """||(I-J) A P_T (I-J)||_2 / sigma_a, T = the k keys with the largest column mass (per head).

    A P_T (I-J) = A[:, T] (I-J)[T, :] and (I-J)[T, :] (I-J)[T, :]^T = I_k - 1/n = L L^T, so the
    spectral norm is that of the n x k matrix (I-J) A[:, T] L (no n x n product formed).
    """
    n = attn.shape[-1]
    top = attn.sum(dim=-2).topk(k, dim=-1).indices  # heads x k
    columns = attn.gather(-1, top.unsqueeze(-2).expand(*attn.shape[:-1], k))
    centred = columns - columns.mean(dim=-2, keepdim=True)
    factor = torch.linalg.cholesky(torch.eye(k, dtype=attn.dtype) - 1.0 / n)
    return torch.linalg.matrix_norm(centred @ factor, ord=2) / sigma


def head_gains(attn: torch.Tensor, sinks: torch.Tensor, settings: RealSettings) -> dict[str, torch.Tensor]:
    """Per head (float64, CPU): sigma_a, sigma_a without sinks, top-key share, sink mass, typical gain."""
    sigma = high_frequency_gain(attn, exact_max_n=settings.exact_max_n).cpu()
    attn = attn.cpu()
    return {
        "sigma_a": sigma,
        "sigma_a_nosink": high_frequency_gain(sink_free(attn, sinks), exact_max_n=settings.exact_max_n),
        "top_key_share": top_key_share(attn, sigma, settings.top_key_columns),
        "sink_mass": attn[..., sinks].sum(dim=-1).mean(dim=-1),
        "typical_gain": typical_gain(attn),
    }


def probe_text(
    model: Any, tokenizer: Any, text: str, n: int, settings: RealSettings, device: str
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Rows per (layer, tau) of head-mean gains, and the head-mean typical gain per (layer, grid tau)."""
    encoded = tokenizer(text, truncation=True, max_length=n, return_tensors="pt", return_special_tokens_mask=True)
    sinks = encoded.pop("special_tokens_mask")[0].bool()
    if encoded["input_ids"].shape[1] != n:
        raise ConfigError(f"text gave {encoded['input_ids'].shape[1]} tokens, not {n}")
    with torch.no_grad():
        out = model(**encoded.to(device), output_attentions=True, output_hidden_states=True)
    rows, curves = [], []
    for layer, attn in enumerate(out.attentions):
        attn = attn[0].to(torch.float64)  # heads x n x n
        values = _value_heads(model, layer, out.hidden_states[layer][0], attn.shape[0])
        half_range = logit_half_range(attn).cpu()
        for tau in settings.taus:
            tempered = retemper(attn, tau) if tau != 1.0 else attn
            gains = head_gains(tempered, sinks, settings)
            bound = torch.tensor([bounds.bounded_logit_gain_bound(n, float(g), tau) if math.isfinite(g) else math.inf
                                  for g in half_range.tolist()], dtype=torch.float64)
            rows.append({
                "n": n, "layer": layer, "tau": tau,
                **{name: float(value.mean()) for name, value in gains.items()},
                "sigma_a_head_max": float(gains["sigma_a"].max()),
                "sigma_a_head_min": float(gains["sigma_a"].min()),
                "realized_gain": float(_realized_gain(tempered, values).mean()),
                "logit_half_range_max": float(half_range.max()),
                "bound_margin_min": float(((bound - gains["sigma_a"]) / bound).min()),
            })
        curves.append(typical_gain_curve(attn, settings.restore_grid))
    return rows, np.asarray(curves)


def _value_heads(model: Any, layer: int, hidden: torch.Tensor, heads: int) -> torch.Tensor:
    """The value vectors V_h (heads x n x d_head) that layer's attention mixes."""
    attention = model.encoder.layer[layer].attention
    projection = attention.self.value if hasattr(attention, "self") else attention.attn.v  # BERT / MPNet
    with torch.no_grad():
        values = projection(hidden)
    return values.reshape(hidden.shape[0], heads, -1).transpose(0, 1).to(torch.float64)


def _realized_gain(attn: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """||HC[A V]||_F / ||HC[V]||_F per head: the gain on the actual inputs (<= sigma_a)."""
    mixed = torch.linalg.matrix_norm(hc_component(attn @ values))
    return mixed / torch.linalg.matrix_norm(hc_component(values))


def load_encoder(name: str, device: str, revision: str | None = None) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    path = model_path(name, revision)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").to(device).eval()
    if not hasattr(model, "encoder") or not hasattr(model.encoder, "layer"):
        raise ConfigError(f"config key 'theory.real_attention.model': {name} is not a BERT-style encoder")
    return model, tokenizer


def measure(settings: RealSettings, device: str, revision: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows per (text, n, layer, tau) and typical-gain curves indexed [text, n, layer, grid tau]
    (a hub id is read at its pinned ``revision``)."""
    model, tokenizer = load_encoder(settings.model, device, revision)
    limit = int(getattr(model.config, "max_position_embeddings", 512))
    if max(settings.lengths) > limit:
        raise ConfigError(f"config key 'theory.real_attention.lengths': {max(settings.lengths)} > model limit {limit}")
    articles = long_articles(wikipedia.dump_path(settings.wiki_dump, key="theory.real_attention.wiki_dump"), tokenizer, max(settings.lengths),
                             settings.texts_per_length)
    rows, curves = [], []
    jobs = [(idx, n) for idx in range(len(articles)) for n in settings.lengths]
    for idx, n in tqdm(jobs, desc="real attention", leave=False, mininterval=5):
        title, text = articles[idx]
        text_rows, text_curves = probe_text(model, tokenizer, text, n, settings, device)
        rows += [{"text": idx, "title": title, **row} for row in text_rows]
        curves.append(text_curves)
    shape = (len(articles), len(settings.lengths), *curves[0].shape)
    return pd.DataFrame(rows), np.stack(curves).reshape(shape)


def real_checks(frame: pd.DataFrame) -> list[Check]:
    """Mathematics only: every head's sigma_a obeys Theorem 1 at its own logit half-range.

    How sigma_a moves with length or tau is data (real_attention_summary.csv and _slopes.csv),
    judged by the claims ledger, not a check.
    """
    finite = frame["logit_half_range_max"][np.isfinite(frame["logit_half_range_max"])]
    return [Check(
        name="real_closed_form_bound",
        claim="every head's sigma_a <= the closed-form bound at gamma = its logit half-range",
        worst_margin=float(frame["bound_margin_min"].min()),
        details={"margin_unit": "(bound - sigma_a) / bound, worst head",
                 "max_finite_logit_half_range": float(finite.max()) if len(finite) else None,
                 "rows_with_underflowed_probabilities": int((~np.isfinite(frame["logit_half_range_max"])).sum())},
    )]


def alpha_of_other_models(settings: RealSettings, job: Job, revisions: dict[str, str] | None = None) -> list[pd.DataFrame]:
    """The tau-law rows (alpha per layer and pooled) of every 'alpha_models' encoder, measured on
    the same texts and lengths: the length law 'power-measured' uses each model's own alpha."""
    from tsdcls.theory import real_summary

    laws = []
    for name in dict.fromkeys(m for m in settings.alpha_models if m != settings.model):
        other = dataclasses.replace(settings, model=name)
        with blas_threads(job.threads):
            frame, curves = measure(other, job.device, (revisions or {}).get(name))
        laws.append(real_summary.summarize(frame, curves, other, job.seed)["tau_law"])
    return laws


def run_real_attention(job: Job) -> None:
    """Verb `theory-real-attention`: per-text gains, bootstrap summaries, slopes, tau law, checks."""
    from tsdcls.theory import real_summary

    settings = RealSettings.from_config(dict(require(job.config, "real_attention")))
    revisions = dict(job.config.get("model_revisions", {}))  # hub encoders' pins (tempscale.model_revisions)
    with blas_threads(job.threads):
        frame, curves = measure(settings, job.device, revisions.get(settings.model))
    provenance = job.prov(scale=job.config.get("scale"), model=settings.model, wiki_dump=settings.wiki_dump,
                          bootstrap_draws=settings.bootstrap_draws, ci_level=settings.ci_level)
    tables = real_summary.summarize(frame, curves, settings, job.seed)
    tables["tau_law"] = pd.concat([tables["tau_law"], *alpha_of_other_models(settings, job, revisions)], ignore_index=True)
    write_csv(job.output("gains"), frame, provenance)
    for name, table in tables.items():
        if name in job.outputs:
            write_csv(job.output(name), table, provenance)
        else:
            LOG.warning("rule gave no output '%s': %s not written", name, name)
    write_checks(job, real_checks(frame), provenance)
