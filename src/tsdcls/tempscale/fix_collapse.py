"""How much each length-collapse fix removes collapse: mean pairwise cosine per length bin.

For every model of ``tempscale.ablation.models`` and every variant the side-by-side comparison
shows (tau = 1, the headline tau, each temperature law, each post-hoc fix alone and with
TempScale), the embeddings of the collapse analysis' window texts (same texts, same seed,
same bootstrap resamples as ``tempscale_collapse``) are built exactly as the evaluation job
builds them (``evaluate.load_variant``: the same patch, the same fit of each fix on the
held-out corpus), and each length bin's mean pairwise cosine is written with its bootstrap CI
and the paired change vs tau = 1 (verb ``tempscale-fix-collapse``, ``fixes_collapse.csv``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tsdcls.common.config import ConfigError
from tsdcls.tempscale.ablation import Variant, job_variant

logger = logging.getLogger(__name__)


def _eval_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """What ``load_variant`` reads, from this job's config: collapse length and batch size."""
    collapse = config["collapse"]
    return {
        "tasks": {"max_seq_length": int(collapse["max_seq_length"]), "batch_size": int(collapse["batch_size"])},
        "ablation": {k: config["ablation"][k] for k in ("tau_laws", "fixes") if k in config["ablation"]},
        "model_revisions": config.get("model_revisions", {}),
    }


def _base(variant: Variant) -> Variant:
    """The same variant without its post-hoc fix (the model the fix is fitted on)."""
    return Variant(variant.slug.removeprefix(f"{variant.fix}-"), variant.mode, variant.tau, variant.layers, variant.law)


def _fixed_embeddings(variant: Variant, model: Any, fit_cache: dict, embeddings: Any, n_tokens: list[int],
                      config: Mapping[str, Any], seed: int) -> Any:
    """The variant's fix fitted (once per base model, as the evaluation job fits it) and applied
    to the cached embeddings of its base model: the fix is row-wise, so this equals encoding with it."""
    import torch

    from tsdcls.tempscale import fixes

    settings = {k: config["ablation"]["fixes"][k] for k in fixes.FIT_KEYS}
    key = _base(variant).slug
    if key not in fit_cache:
        fit_cache[key] = fixes.fit_embeddings(model, settings, seed, int(config["collapse"]["batch_size"]))
    fit, bins = fit_cache[key]
    module = fixes.fit_fix(variant.fix, fit, bins, settings, int(model.max_seq_length))
    width = max(n_tokens)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in n_tokens])
    return module({"sentence_embedding": embeddings.clone(), "attention_mask": mask})["sentence_embedding"]


def analyse(model_name: str, variants: list[Variant], config: Mapping[str, Any], seed: int, device: str,
            alpha: float | None) -> list[dict[str, Any]]:
    """Similarity rows (collapse.similarity_rows plus the variant) of one model, every variant.

    Each base model (tau or law) is loaded and encodes the texts once; its fixes reuse that."""
    from tsdcls.tempscale import collapse as analysis
    from tsdcls.tempscale.evaluate import fix_name, load_variant

    cfg, eval_cfg = config["collapse"], _eval_config(config)
    rows, reference, texts, pre, plan = [], None, None, None, None
    base_embeddings: dict[str, tuple[Any, Any, str]] = {}
    fit_cache: dict = {}
    for variant in variants:  # the baseline comes first (ablation_variants order)
        base = _base(variant)
        if base.slug not in base_embeddings:
            model, name, _settings = load_variant(model_name, base, eval_cfg, device, seed, alpha)
            if texts is None:
                bins = analysis.parse_bins(cfg["bins"], int(model.max_seq_length))
                texts = analysis.window_texts(model.tokenizer, bins, list(cfg["sources"]), int(cfg["windows_per_bin"]), seed)
                pre = analysis.pretokenize(model, [t.text for t in texts], batch_size=int(cfg["batch_size"]))
                plan = analysis.bootstrap_plan(texts, int(cfg["bootstrap_draws"]), seed)
            base_embeddings[base.slug] = (model, analysis.encode_pretokenized(model, pre, device=device), name)
        model, embeddings, name = base_embeddings[base.slug]
        if variant.fix:
            embeddings = _fixed_embeddings(variant, model, fit_cache, embeddings, pre.n_tokens, config, seed)
            name = fix_name(name, variant.fix, config["ablation"]["fixes"]["whiten_dims"])
        reference = embeddings if variant.is_baseline else reference
        if reference is None:
            raise ConfigError("tempscale-fix-collapse: the first variant must be the tau = 1 baseline")
        for row in analysis.similarity_rows(model_name, variant.tau, texts, embeddings, plan, float(cfg["ci_level"]), reference):
            rows.append({"variant": variant.slug, "tau_mode": variant.mode, "tau_law": variant.law, "fix": variant.fix,
                         "mteb_model_name": name, **row})
        logger.info("%s %s: done", model_name, variant.slug)
    return rows


def run_fix_collapse(job: Any) -> None:
    """Verb ``tempscale-fix-collapse``: fixes_collapse.csv for the job's variants and models."""
    import pandas as pd

    from tsdcls.common.io import write_csv
    from tsdcls.tempscale.evaluate import measured_alpha

    variants = [job_variant({"variant": spec}) for spec in job.config["variants"]]
    if not variants or not variants[0].is_baseline:
        raise ConfigError("tempscale-fix-collapse: the variants must start with the tau = 1 baseline")
    measured = any(v.needs_measured_alpha for v in variants)
    rows, alphas = [], {}
    for model_name in job.config["ablation"]["models"]:
        alpha = alphas[model_name] = measured_alpha(job.input("tau_law"), model_name) if measured else None
        rows += analyse(model_name, variants, job.config, job.seed, job.device, alpha)
    prov = job.prov(scale=job.config.get("scale", "unknown"), variants=[v.slug for v in variants],
                    **({"alpha": alphas} if measured else {}))
    write_csv(job.output("collapse"), pd.DataFrame(rows), prov)
