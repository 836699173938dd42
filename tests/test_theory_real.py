"""Real-attention quantities (sinks, top keys, typical gain) and their bootstrap summaries.

Expectations come from definitions (docs/theory.md, section 4) and constructed inputs whose
answer is known in closed form; no model is loaded here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tsdcls.common.config import ConfigError
from tsdcls.common.lowpass import attention_from_logits, high_frequency_gain
from tsdcls.theory.real_attention import RealSettings, sink_free, top_key_share, typical_gain
from tsdcls.theory.real_summary import QUANTITIES, fit_alpha, restoring_tau, summarize

DEFAULTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())["theory"]["real_attention"]


def _settings(**changes: object) -> RealSettings:
    return RealSettings.from_config({**DEFAULTS, **changes})


def _centring(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64) - 1.0 / n


def test_sink_free_is_softmax_with_sink_keys_masked() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 9, generator=gen, dtype=torch.float64) * 2
    sinks = torch.zeros(9, dtype=torch.bool)
    sinks[[0, 8]] = True
    expected = attention_from_logits(logits[:, 1:8, 1:8])
    assert torch.allclose(sink_free(attention_from_logits(logits), sinks), expected, atol=1e-14)


def test_typical_gain_is_the_rms_singular_value_of_the_hc_block() -> None:
    attn = attention_from_logits(torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3)
    singular = torch.linalg.svdvals(_centring(16) @ attn @ _centring(16))
    rms = torch.sqrt((singular[:, :15] ** 2).mean(dim=-1))  # rank <= n - 1
    assert torch.allclose(typical_gain(attn), rms, atol=1e-13)
    assert (typical_gain(attn) <= high_frequency_gain(attn) + 1e-12).all()


def test_top_key_share_matches_the_explicit_product() -> None:
    n, k = 12, 2
    attn = attention_from_logits(torch.randn(4, n, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2)
    sigma = high_frequency_gain(attn)
    for head in range(4):
        top = attn[head].sum(dim=0).topk(k).indices
        projector = torch.zeros(n, n, dtype=torch.float64)
        projector[top, top] = 1.0
        part = torch.linalg.matrix_norm(_centring(n) @ attn[head] @ projector @ _centring(n), ord=2)
        assert float(top_key_share(attn, sigma, k)[head]) == pytest.approx(float(part / sigma[head]), rel=1e-12)


def test_two_sink_attention_is_carried_by_its_two_keys() -> None:
    n = 10  # half the queries attend to key 0, half to key 1: sigma_a = sqrt(n / 2), all from two columns
    attn = torch.zeros(1, n, n, dtype=torch.float64)
    attn[0, : n // 2, 0] = 1.0
    attn[0, n // 2 :, 1] = 1.0
    sigma = high_frequency_gain(attn)
    assert float(sigma) == pytest.approx(math.sqrt(n / 2))
    assert float(top_key_share(attn, sigma, 2)) == pytest.approx(1.0, abs=1e-12)
    assert float(top_key_share(attn, sigma, 1)) < 0.8


@pytest.mark.parametrize("alpha", [0.5, 0.3, -0.2])
def test_restoring_tau_recovers_a_power_law(alpha: float) -> None:
    lengths, n_ref = [32, 64, 128, 256, 512], 128
    grid = np.geomspace(0.25, 4.0, 25)
    # gain(n, tau) = n^-alpha / tau: the gain at n_ref, tau = 1 comes back at tau = (n_ref / n)^alpha
    curves = np.array([[n**-alpha / grid, 2 * n**-alpha / grid] for n in lengths])  # n x layer x grid
    target = np.array([n_ref**-alpha, 2 * n_ref**-alpha])
    tau = restoring_tau(curves, target, grid)
    expected = (n_ref / np.asarray(lengths, dtype=float)) ** alpha
    assert tau == pytest.approx(np.stack([expected, expected], axis=1), rel=1e-9)
    per_layer, pooled = fit_alpha(tau, lengths, n_ref)
    assert per_layer == pytest.approx([alpha, alpha], abs=1e-9) and float(pooled) == pytest.approx(alpha, abs=1e-9)


def test_restoring_tau_is_nan_outside_the_grid() -> None:
    grid = np.geomspace(0.5, 2.0, 9)
    curves = np.array([[1.0 / grid], [100.0 / grid]])  # the second length would need tau = 100
    tau = restoring_tau(curves, np.array([1.0]), grid)
    assert tau[0, 0] == pytest.approx(1.0) and math.isnan(tau[1, 0])


def _power_law_frame(lengths: list[int], taus: list[float], texts: int, layers: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for text in range(texts):
        scale = rng.uniform(0.5, 2.0)  # a text factor: cancels out of every log-log slope
        for layer in range(layers):
            for n in lengths:
                for tau in taus:
                    value = scale * n ** (-0.5 + 0.1 * layer) / tau
                    rows.append({"text": text, "layer": layer, "n": n, "tau": tau, **{q: value for q in QUANTITIES}})
    return pd.DataFrame(rows)


def test_summarize_slopes_cis_and_tau_law_on_known_data() -> None:
    settings = _settings(lengths=[32, 64, 128, 256], taus=[1.0, 0.5], texts_per_length=6, bootstrap_draws=300)
    frame = _power_law_frame(settings.lengths, settings.taus, texts=6, layers=2)
    grid = settings.restore_grid
    curves = np.stack([
        np.stack([np.stack([frame[(frame.text == t) & (frame.layer == layer) & (frame.n == n) & (frame.tau == 1.0)]
                            ["typical_gain"].iloc[0] / grid for layer in range(2)]) for n in settings.lengths])
        for t in range(6)])
    tables = summarize(frame, curves, settings, seed=0)
    slopes = tables["slopes"]
    sigma = slopes[(slopes.quantity == "sigma_a") & (slopes.tau == 1.0)].set_index("layer")
    assert sigma["estimate"].to_numpy() == pytest.approx([-0.5, -0.4], abs=1e-9)
    assert (sigma["ci_low"] <= sigma["estimate"] + 1e-9).all() and (sigma["estimate"] <= sigma["ci_high"] + 1e-9).all()
    rise = tables["summary"].query("quantity == 'sigma_a_rise_vs_tau1' and tau == 0.5")
    assert rise["estimate"].to_numpy() == pytest.approx(1.0)  # 1 / tau - 1
    law = tables["tau_law"].set_index("layer")
    assert law.loc[["0", "1", "all"], "estimate"].to_numpy() == pytest.approx([0.5, 0.4, 0.45], abs=1e-6)
    assert set(law["small_logit_alpha"]) == {0.5} and (law["unresolved_lengths"] == 0).all()


def test_real_settings_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="theory.real_attention.expected_length_trend"):
        RealSettings.from_config({**DEFAULTS, "expected_length_trend": "rises"})
    with pytest.raises(ConfigError, match="theory.real_attention.n_ref"):
        _settings(n_ref=100)
    missing = dict(DEFAULTS)
    missing.pop("bootstrap_draws")
    with pytest.raises(ConfigError, match="theory.real_attention.bootstrap_draws"):
        RealSettings.from_config(missing)


def _tiny_encoder(folder: Path, kind: str) -> str:
    """A randomly initialised 2-layer BERT or MPNet with the offline model's real tokenizer."""
    import shutil

    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

    from tsdcls.common.assets import model_path

    source = Path(model_path("minilm" if kind == "bert" else "mpnet"))
    folder.mkdir(parents=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    torch.manual_seed(0)
    size = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=30522, max_position_embeddings=512, **size))
    else:
        model = MPNetModel(MPNetConfig(vocab_size=30527, max_position_embeddings=514, **size))
    model.save_pretrained(folder)
    return str(folder)


def test_alpha_is_measured_per_model_including_mpnet(tmp_path: Path) -> None:
    import types

    from tsdcls.theory.real_attention import alpha_of_other_models

    bert, mpnet = _tiny_encoder(tmp_path / "bert", "bert"), _tiny_encoder(tmp_path / "mpnet", "mpnet")
    settings = RealSettings.from_config({**DEFAULTS, "model": bert, "lengths": [8, 16, 32], "n_ref": 16,
                                         "texts_per_length": 2, "taus": [1.0, 0.8], "restore_tau_points": 5,
                                         "bootstrap_draws": 20, "alpha_models": [bert, mpnet]})
    laws = alpha_of_other_models(settings, types.SimpleNamespace(threads=1, device="cpu", seed=0))
    assert len(laws) == 1  # the main model is not measured twice
    law = laws[0]
    assert set(law["model"]) == {mpnet} and set(law["quantity"]) == {"alpha"}
    assert set(law["layer"].astype(str)) == {"all", "0", "1"}
