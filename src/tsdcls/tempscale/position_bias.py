"""How much MPNet's relative position bias matters to TempScale: a cheap measurement.

The patch divides MPNet's bias B by tau like QK^T (softmax((QK^T/sqrt d + B)/tau)); the official
TempScale code has no MPNet branch, and leaving B unscaled (softmax(QK^T/(tau sqrt d) + B)) is
the alternative. On a handful of the collapse analysis' nested windows (same texts, same seed)
this encodes each window three times, at tau = 1, at tau with B scaled and at tau with B
unscaled, and writes per length bin the relative embedding changes

* ``change_tau``: ||e(tau, B/tau) - e(1)|| / ||e(1)||   (what TempScale does, default patch)
* ``change_tau_unscaled``: ||e(tau, B) - e(1)|| / ||e(1)||   (TempScale with B left alone)
* ``change_bias``: ||e(tau, B/tau) - e(tau, B)|| / ||e(tau, B)||   (what the choice changes)

with ``bias_to_tau_ratio`` = change_bias / change_tau per window (mean, min, max over the bin).
Embeddings are the model's own (MPNet's are unit-norm, so these are chord distances).
The task-level ablation of the same choice is the ``tau<x>-all-biasunscaled`` variant
(``tempscale.ablation.position_bias``, results in ablation.csv).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tsdcls.common.config import ConfigError, require

logger = logging.getLogger(__name__)


def measure(model_name: str, cfg: dict[str, Any], seed: int, device: str, revision: str | None = None) -> list[dict[str, Any]]:
    """One row per length bin (see the module docstring)."""
    import numpy as np

    from tsdcls.tempscale.collapse import encode_pretokenized, parse_bins, pretokenize, window_texts
    from tsdcls.tempscale.patch import (
        apply_tempscale,
        load_encoder,
        position_limit,
        remove_tempscale,
    )

    tau = float(cfg["tau"])
    if not 0 < tau < 1:
        raise ConfigError(f"config key 'tempscale.position_bias_effect.tau' must lie in (0, 1), got {tau}")
    model = load_encoder(model_name, device=device, revision=revision)
    if model.tempscale["position_bias"] == "none":
        raise ConfigError(f"config key 'tempscale.position_bias_effect.model': model '{model_name}' has no relative "
                          "position bias (MPNet and T5 have one)")
    model.max_seq_length = int(position_limit(model) or model.max_seq_length)
    bins = parse_bins(cfg["bins"], model.max_seq_length)
    texts = window_texts(model.tokenizer, bins, list(cfg["sources"]), int(cfg["windows_per_bin"]), seed,
                         key="tempscale.position_bias_effect")
    pre = pretokenize(model, [t.text for t in texts], batch_size=int(cfg["batch_size"]))
    plain = encode_pretokenized(model, pre, device=device)
    apply_tempscale(model, tau)
    scaled = encode_pretokenized(model, pre, device=device)
    apply_tempscale(model, tau, scale_position_bias=False)
    unscaled = encode_pretokenized(model, pre, device=device)
    remove_tempscale(model)

    def relative(a: Any, b: Any) -> Any:
        return ((a - b).norm(dim=1) / b.norm(dim=1)).numpy()

    change_tau, change_unscaled, change_bias = relative(scaled, plain), relative(unscaled, plain), relative(scaled, unscaled)
    rows = []
    for length_bin in bins:
        idx = [i for i, t in enumerate(texts) if t.bin == length_bin.label]
        ratio = change_bias[idx] / change_tau[idx]
        rows.append({
            "model": model_name, "tau": tau, "bin": length_bin.label, "bin_lo": length_bin.lo, "bin_hi": length_bin.hi,
            "n_texts": len(idx), "mean_tokens": float(np.mean([texts[i].n_tokens for i in idx])),
            "change_tau": float(change_tau[idx].mean()), "change_tau_unscaled": float(change_unscaled[idx].mean()),
            "change_bias": float(change_bias[idx].mean()), "bias_to_tau_ratio": float(ratio.mean()),
            "bias_to_tau_ratio_min": float(ratio.min()), "bias_to_tau_ratio_max": float(ratio.max()),
        })  # fmt: skip
    return rows


def run_position_bias_effect(job: Any) -> None:
    """Verb ``tempscale-position-bias``: results/tempscale/position_bias_effect.csv."""
    import pandas as pd

    from tsdcls.common.io import write_csv

    cfg = dict(require(job.config, "position_bias_effect"))
    model_name = str(cfg["model"])
    revision = (job.config.get("model_revisions") or {}).get(model_name)
    start = time.process_time()
    rows = measure(model_name, cfg, job.seed, job.device, revision)
    cpu_s = time.process_time() - start
    logger.info("position-bias effect of %s: %d bins in %.1f CPU s", model_name, len(rows), cpu_s)
    prov = job.prov(scale=job.config.get("scale", "unknown"), model=model_name, tau=cfg["tau"], cpu_seconds=round(cpu_s, 1))
    write_csv(job.output("effect"), pd.DataFrame(rows), prov)
