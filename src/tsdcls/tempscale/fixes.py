"""Post-hoc embedding fixes for length collapse, fitted without labels on a held-out corpus.

The training-free baselines TempScale is compared with (config ``tempscale.ablation.fixes``):

* ``mean_center``: subtract the corpus mean embedding, renormalise (the common-direction
  removal of Mu & Viswanath 2018, "All-but-the-Top", without the PCA step).
* ``whiten``: BERT-whitening (Su et al. 2021): x -> (x - mu) U_k diag(lambda_k)^-1/2 with the
  corpus mean mu and the top-k eigenpairs of its covariance, renormalised.
* ``length_center``: subtract the mean embedding of the text's own length bin (token count
  incl. special tokens, as the model sees it), renormalised; it targets the distributional
  inconsistency between lengths that the TempScale paper names as the harm.

The fit corpus (``fixes.corpus``) is never a task's evaluation data: ``lee_background`` is
gensim's Lee background corpus (300 news articles), disjoint from the Lee 50-document STS set,
polarity, newsgroups and the Wikipedia/Shakespeare texts of the other tasks and of the collapse
analysis. Fit texts are nested windows of it in every length bin (``fixes.length_bins``).

A fix is a module appended to the SentenceTransformer pipeline, so every encode path (mteb's
wrapper, ``model.encode``, ``model(features)``) applies it, row by row: an embedding never
depends on the other texts of its batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tsdcls.common.config import ConfigError

logger = logging.getLogger(__name__)

FIT_CORPORA = ("lee_background",)
FIT_KEYS = ("corpus", "fit_texts_per_bin", "length_bins", "whiten_dims")  # what a fitted fix depends on
MODULE_NAME = "tsdcls_posthoc_fix"


class PostHocFix(nn.Module):
    """x -> normalise((x - mean(bin of x)) @ projection): one module for all three fixes."""

    def __init__(self, method: str, means: torch.Tensor, bin_upper: torch.Tensor, projection: torch.Tensor | None) -> None:
        super().__init__()
        self.method = method
        self.register_buffer("means", means)  # [bins, dim]; one row unless length_center
        self.register_buffer("bin_upper", bin_upper)  # exclusive upper token count of each bin but the last
        self.register_buffer("projection", projection if projection is not None else torch.empty(0))

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        embedding = features["sentence_embedding"]
        lengths = features["attention_mask"].sum(dim=-1)
        bins = torch.bucketize(lengths, self.bin_upper.to(lengths.device), right=True)
        centred = embedding - self.means.to(embedding)[bins]
        if self.projection.numel():
            centred = centred @ self.projection.to(embedding)
        features["sentence_embedding"] = nn.functional.normalize(centred, dim=-1)
        return features


def fit_texts(tokenizer: Any, settings: Mapping[str, Any], max_tokens: int, seed: int) -> list[tuple[int, str]]:
    """(bin index, text) of the fit corpus: ``fit_texts_per_bin`` nested windows per length bin."""
    from tsdcls.tempscale.collapse import parse_bins, window_texts

    corpus = str(settings["corpus"])
    if corpus not in FIT_CORPORA:
        raise ConfigError(f"config key 'tempscale.ablation.fixes.corpus': {corpus!r} is not one of {FIT_CORPORA}")
    bins = parse_bins(settings["length_bins"], max_tokens)
    texts = window_texts(tokenizer, bins, [corpus], int(settings["fit_texts_per_bin"]), seed, "tempscale.ablation.fixes")
    labels = [b.label for b in bins]
    return [(labels.index(t.bin), t.text) for t in texts]


def _bin_upper(settings: Mapping[str, Any], max_tokens: int) -> torch.Tensor:
    from tsdcls.tempscale.collapse import parse_bins

    bins = parse_bins(settings["length_bins"], max_tokens)
    return torch.tensor([b.hi for b in bins[:-1]], dtype=torch.long)


def _whitening(embeddings: torch.Tensor, dims: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, projection) of BERT-whitening, keeping the top ``dims`` eigen-directions."""
    x = embeddings.double()
    mean = x.mean(dim=0)
    covariance = torch.cov((x - mean).T)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    rank = int((eigenvalues > eigenvalues.max() * 1e-9).sum())
    keep = min(rank, dims or x.shape[1])
    if dims and dims > rank:
        logger.warning("whiten_dims %d > rank %d of the fit corpus covariance: keeping %d", dims, rank, keep)
    top = eigenvalues.flip(0)[:keep], eigenvectors.flip(1)[:, :keep]
    return mean.float(), (top[1] / top[0].sqrt()).float()


def fit_fix(method: str, embeddings: torch.Tensor, bins: Sequence[int], settings: Mapping[str, Any], max_tokens: int) -> PostHocFix:
    """Fit ``method`` on the fit corpus' embeddings (row i in length bin ``bins[i]``)."""
    upper = _bin_upper(settings, max_tokens)
    if method == "mean_center":
        return PostHocFix(method, embeddings.mean(dim=0, keepdim=True), upper[:0], None)
    if method == "whiten":
        dims = settings.get("whiten_dims")
        mean, projection = _whitening(embeddings, int(dims) if dims else None)
        return PostHocFix(method, mean[None], upper[:0], projection)
    if method == "length_center":
        index = torch.tensor(list(bins))
        empty = [b for b in range(len(upper) + 1) if not bool((index == b).any())]
        if empty:
            raise ConfigError(f"config key 'tempscale.ablation.fixes.length_bins': no fit text in bins {empty}")
        means = torch.stack([embeddings[index == b].mean(dim=0) for b in range(len(upper) + 1)])
        return PostHocFix(method, means, upper, None)
    raise ConfigError(f"config key 'tempscale.ablation.fixes.methods': unknown fix {method!r}")


def fit_embeddings(model: Any, settings: Mapping[str, Any], seed: int, batch_size: int) -> tuple[torch.Tensor, list[int]]:
    """The model's embeddings of the fit corpus (as it is now: TempScale applied, no fix) and
    each fit text's length bin."""
    pairs = fit_texts(model.tokenizer, settings, int(model.max_seq_length), seed)
    texts = [t for _, t in pairs]
    embeddings = model.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False).float().cpu()
    return embeddings, [b for b, _ in pairs]


def apply_fix(model: Any, method: str, settings: Mapping[str, Any], seed: int, batch_size: int) -> PostHocFix:
    """Fit ``method`` on the model as it is now (TempScale already applied) and append it."""
    remove_fix(model)
    embeddings, bins = fit_embeddings(model, settings, seed, batch_size)
    fix = fit_fix(method, embeddings, bins, settings, int(model.max_seq_length))
    model.add_module(MODULE_NAME, fix.to(model.device))
    logger.info("fitted %s on %d %s texts (%d length bins)", method, len(bins), settings["corpus"], len(set(bins)))
    return fix


def remove_fix(model: Any) -> None:
    """Drop an appended fix (no-op without one)."""
    if MODULE_NAME in model._modules:
        del model._modules[MODULE_NAME]
