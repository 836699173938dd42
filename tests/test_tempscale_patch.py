"""TempScale patch: exact against plain reference attention, tau = 1 identity, reversible, SDPA kept.

The reference implementations below recompute each attention layer from its own q/k/v weights
with softmax(QK^T/(tau sqrt d) + mask) (MPNet, T5: the bias is divided by tau too, or with
scale_bias=False left as it is: softmax(QK^T/(tau sqrt d) + B + mask)); they share no
code with tsdcls.tempscale.patch. Real MiniLM and MPNet are loaded once per module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from tsdcls.common.lowpass import tau_for_law, tau_for_length
from tsdcls.tempscale.patch import (
    UnsupportedArchitectureError,
    apply_length_adaptive_tempscale,
    apply_tempscale,
    load_encoder,
    remove_tempscale,
    tempscale_taus,
    variant_name,
)

TEXTS = [
    "Short query.",
    "Attention is a low-pass filter: as the text grows, the token representations blend into "
    "their mean and the sentence embedding loses what set it apart from other long texts.",
    "Shall I compare thee to a summer's day? Thou art more lovely and more temperate.",
]
TOL = 1e-5


# --- reference attention (independent of the patch) ----------------------------------------


def _additive(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | float:
    """Any mask transformers hands a layer (None, bool keep-mask, float additive) -> additive."""
    if mask is None:
        return 0.0
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype).masked_fill(~mask, torch.finfo(like.dtype).min)
    return mask.to(like.dtype)


def _row_tau(tau: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    return tau if isinstance(tau, float) else tau.view(-1, 1, 1, 1).to(like.dtype)


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    batch, length, _ = x.shape
    return x.view(batch, length, -1, head_dim).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    batch, _, length, _ = x.shape
    return x.transpose(1, 2).reshape(batch, length, -1)


def reference_bert(module: nn.Module, tau_of: Callable[[], float | torch.Tensor], scale_bias: bool = True) -> Callable:
    """BERT/RoBERTa/DistilBERT self-attention: softmax(QK^T/(tau sqrt d) + mask) V."""
    names = ("q_lin", "k_lin", "v_lin") if hasattr(module, "q_lin") else ("query", "key", "value")
    head_dim = module.attention_head_size

    def forward(hidden_states, attention_mask=None, *args, **kwargs):
        q, k, v = (_heads(getattr(module, n)(hidden_states), head_dim) for n in names)
        scores = q @ k.transpose(-1, -2) / (_row_tau(tau_of(), q) * math.sqrt(head_dim))
        probs = torch.softmax(scores + _additive(attention_mask, scores), dim=-1)
        out = _merge(probs @ v)
        if hasattr(module, "out_lin"):
            out = module.out_lin(out)
        return out, None

    return forward


def reference_mpnet(module: nn.Module, tau_of: Callable[[], float | torch.Tensor], scale_bias: bool = True) -> Callable:
    """MPNet: softmax((QK^T/sqrt d + B)/tau + mask) V (the documented choice for its bias B);
    scale_bias=False: softmax(QK^T/(tau sqrt d) + B + mask) V."""
    head_dim = module.attention_head_size

    def forward(hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs):
        q, k, v = (_heads(getattr(module, n)(hidden_states), head_dim) for n in ("q", "k", "v"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
        if scale_bias:
            scores = (scores + position_bias) / _row_tau(tau_of(), scores)
        else:
            scores = scores / _row_tau(tau_of(), scores) + position_bias
        probs = torch.softmax(scores + _additive(attention_mask, scores), dim=-1)
        return (module.o(_merge(probs @ v)),)

    return forward


def reference_t5(module: nn.Module, tau_of: Callable[[], float | torch.Tensor], scale_bias: bool = True) -> Callable:
    """T5 encoder: softmax((QK^T + B)/tau + mask) V (T5 has no 1/sqrt d); scale_bias=False:
    softmax(QK^T/tau + B + mask) V."""
    head_dim = module.key_value_proj_dim

    def forward(hidden_states, mask=None, key_value_states=None, position_bias=None, cache=None, **kwargs):
        length = hidden_states.shape[1]
        if position_bias is None:
            position_bias = module.compute_bias(length, length, device=hidden_states.device)
        q, k, v = (_heads(getattr(module, n)(hidden_states), head_dim) for n in ("q", "k", "v"))
        scores = q @ k.transpose(-1, -2)
        if scale_bias:
            scores = (scores + position_bias) / _row_tau(tau_of(), scores)
        else:
            scores = scores / _row_tau(tau_of(), scores) + position_bias
        probs = torch.softmax(scores + _additive(mask, scores), dim=-1)
        return module.o(_merge(probs @ v)), position_bias, None

    return forward


ATTENTION_CLASSES = {
    "BertSelfAttention": reference_bert,
    "RobertaSelfAttention": reference_bert,
    "DistilBertSelfAttention": reference_bert,
    "MPNetSelfAttention": reference_mpnet,
    "T5Attention": reference_t5,
}


@contextmanager
def reference_attention(model: nn.Module, taus: dict[int, float | Callable[[], torch.Tensor]],
                        scale_bias: bool = True) -> Iterator[None]:
    """Swap every encoder attention layer's forward for the reference with taus[layer]."""
    layers = [m for m in model.modules() if type(m).__name__ in ATTENTION_CLASSES]
    assert layers, "no attention layer found for the reference"
    for index, module in enumerate(layers):
        tau = taus.get(index, 1.0)
        tau_of = tau if callable(tau) else (lambda t=float(tau): t)
        module.forward = ATTENTION_CLASSES[type(module).__name__](module, tau_of, scale_bias)
    try:
        yield
    finally:
        for module in layers:
            del module.forward


def _encode(model, texts=TEXTS, **kwargs) -> torch.Tensor:
    return model.encode(texts, convert_to_tensor=True, batch_size=8, **kwargs)


# --- real models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


@pytest.fixture(scope="module")
def mpnet():
    model = load_encoder("mpnet", max_seq_length=64)
    yield model
    del model


def test_minilm_matches_reference_and_keeps_sdpa(minilm):
    hf_model = minilm[0].auto_model
    assert hf_model.config._attn_implementation == "sdpa"
    masks: list[torch.Tensor | None] = []
    first_attention = next(m for m in hf_model.modules() if type(m).__name__ == "BertSelfAttention")
    spy = first_attention.register_forward_pre_hook(
        lambda _m, _a, kwargs: masks.append(kwargs.get("attention_mask")), with_kwargs=True
    )
    handle = apply_tempscale(minilm, 0.8)
    try:
        assert handle.patched_layers == list(range(6))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            patched = _encode(minilm)
        sdpa_calls = sum(e.count for e in prof.key_averages() if e.key == "aten::scaled_dot_product_attention")
        assert sdpa_calls == 6, "every layer must still run through SDPA (no eager fallback)"
        assert hf_model.config._attn_implementation == "sdpa"
    finally:
        handle.remove()
        spy.remove()
    # the exactness argument: with SDPA, transformers 5 hands padded batches a boolean keep-mask
    # (masked keys -> -inf inside SDPA), so scaling the logits before the mask is exact
    assert masks and masks[0] is not None and masks[0].dtype == torch.bool
    with reference_attention(hf_model, {i: 0.8 for i in range(6)}):
        expected = _encode(minilm)
    plain = _encode(minilm)
    assert torch.allclose(patched, expected, atol=TOL, rtol=0)
    assert (patched - plain).abs().max() > 1e-3, "tau = 0.8 must change the embeddings"


def test_tau_one_is_bit_identical_and_remove_restores(minilm):
    plain = _encode(minilm)
    handle = apply_tempscale(minilm, 1.0)
    assert handle.patched_layers == []
    assert torch.equal(_encode(minilm), plain)
    handle = apply_tempscale(minilm, [1.0] * 6)
    assert torch.equal(_encode(minilm), plain)
    state_before = {k: v.clone() for k, v in minilm.state_dict().items()}
    scalings = [m.scaling for m in minilm.modules() if type(m).__name__ == "BertSelfAttention"]
    handle = apply_tempscale(minilm, 0.6, layers="last_half")
    assert not torch.equal(_encode(minilm), plain)
    handle.remove()
    handle.remove()  # idempotent
    assert tempscale_taus(minilm) == {}
    assert torch.equal(_encode(minilm), plain)
    assert scalings == [m.scaling for m in minilm.modules() if type(m).__name__ == "BertSelfAttention"]
    assert all(torch.equal(v, state_before[k]) for k, v in minilm.state_dict().items())


def test_per_layer_taus_match_reference(minilm):
    taus = {0: 0.7, 3: 0.9, 5: 1.3}
    handle = apply_tempscale(minilm, taus)
    assert tempscale_taus(minilm) == {0: 0.7, 1: 1.0, 2: 1.0, 3: 0.9, 4: 1.0, 5: 1.3}
    patched = _encode(minilm)
    remove_tempscale(minilm)
    assert not handle.active
    with reference_attention(minilm[0].auto_model, taus):
        expected = _encode(minilm)
    assert torch.allclose(patched, expected, atol=TOL, rtol=0)
    assert apply_tempscale(minilm, 0.5, layers="first_half").taus == {0: 0.5, 1: 0.5, 2: 0.5, 3: 1, 4: 1, 5: 1}
    assert apply_tempscale(minilm, [0.9, 0.8], layers=[1, -1]).taus[5] == 0.8
    remove_tempscale(minilm)
    with pytest.raises(ValueError, match="out of range"):
        apply_tempscale(minilm, 0.9, layers=[6])
    with pytest.raises(ValueError, match="positive"):
        apply_tempscale(minilm, 0.0)


@pytest.mark.parametrize("law", ["power", "log"])
def test_length_adaptive_tau_is_per_example(minilm, law):
    """Every temperature law: each row's tau from its own token count, exact against reference
    attention at that tau, and independent of the batch it shares."""
    n_ref, tau_min = 8, 0.5
    tokenizer = minilm.tokenizer
    lengths = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    expected_taus = [tau_for_law(law, n, n_ref, 0.5, tau_min) for n in lengths]
    assert len(set(expected_taus)) == len(TEXTS), "test texts must get distinct taus"
    handle = apply_length_adaptive_tempscale(minilm, n_ref=n_ref, tau_min=tau_min, law=law)
    try:
        batched = _encode(minilm)
        assert sorted(handle.last_row_taus) == sorted(expected_taus)
        alone = torch.cat([_encode(minilm, [t]) for t in TEXTS])
    finally:
        handle.remove()
    assert torch.allclose(batched, alone, atol=TOL, rtol=0), "a text's tau must not depend on its batch"
    for text, tau in zip(TEXTS, expected_taus, strict=True):
        with reference_attention(minilm[0].auto_model, {i: tau for i in range(6)}):
            expected = _encode(minilm, [text])
        assert torch.allclose(batched[TEXTS.index(text)], expected[0], atol=TOL, rtol=0)


def test_unknown_law_is_refused(minilm):
    with pytest.raises(ValueError, match="unknown temperature law"):
        apply_length_adaptive_tempscale(minilm, n_ref=8, law="cubic")


def test_adaptive_patch_lists_only_its_layers(minilm):
    handle = apply_length_adaptive_tempscale(minilm, n_ref=8, layers="last_half")
    try:
        assert handle.patched_layers == [3, 4, 5]
    finally:
        handle.remove()
    handle = apply_length_adaptive_tempscale(minilm, n_ref=8)
    handle.remove()
    assert handle.patched_layers == [0, 1, 2, 3, 4, 5]


def test_numpy_scalar_tau_is_accepted(minilm):
    import numpy as np

    plain = apply_tempscale(minilm, 0.75, layers="first_half")
    expected = _encode(minilm)
    handle = apply_tempscale(minilm, np.float32(0.75), layers="first_half")
    try:
        assert handle.taus == plain.taus and handle.patched_layers == [0, 1, 2]
        assert torch.equal(_encode(minilm), expected)
    finally:
        handle.remove()
    assert variant_name("minilm", np.float32(0.75)) == variant_name("minilm", 0.75)
    assert variant_name("minilm", np.float64(1.0)) == variant_name("minilm", 1.0)


def test_variant_names_separate_mteb_results(minilm):
    names = {variant_name("minilm", t) for t in (1.0, 0.9, 0.8)}
    names |= {variant_name("minilm", 0.9, "first_half"), variant_name("minilm", {0: 0.9})}
    assert len(names) == 5 and all("/" in n for n in names)
    assert variant_name("minilm", 1.0) == "sentence-transformers/all-MiniLM-L6-v2"
    model = load_encoder("minilm", tau=0.9, layers="first_half", max_seq_length=512)
    assert model.model_card_data.model_name == variant_name("minilm", 0.9, "first_half")
    assert model.tempscale["taus"][0] == 0.9 and model.tempscale["taus"][5] == 1.0
    assert model.max_seq_length == 512


def test_mpnet_matches_reference_with_scaled_bias(mpnet):
    taus = {i: (0.7 if i % 2 else 0.9) for i in range(12)}
    plain = _encode(mpnet)
    handle = apply_tempscale(mpnet, taus)
    patched = _encode(mpnet)
    handle.remove()
    assert torch.equal(_encode(mpnet), plain)
    with reference_attention(mpnet[0].auto_model, taus):
        expected = _encode(mpnet)
    assert torch.allclose(patched, expected, atol=TOL, rtol=0)
    assert (patched - plain).abs().max() > 1e-3


def test_mpnet_unscaled_bias_matches_reference(mpnet):
    """scale_position_bias=False: softmax(QK^T/(tau sqrt d) + B + mask), and not the scaled-bias result."""
    taus = {i: (0.7 if i % 2 else 0.9) for i in range(12)}
    scaled = apply_tempscale(mpnet, taus)
    with_bias_scaled = _encode(mpnet)
    assert scaled.position_bias == "scaled"
    handle = apply_tempscale(mpnet, taus, scale_position_bias=False)
    patched = _encode(mpnet)
    handle.remove()
    assert handle.position_bias == "unscaled"
    with reference_attention(mpnet[0].auto_model, taus, scale_bias=False):
        expected = _encode(mpnet)
    assert torch.allclose(patched, expected, atol=TOL, rtol=0)
    assert (patched - with_bias_scaled).abs().max() > 1e-3, "scaling B must matter for MPNet"
    assert variant_name("mpnet", 0.8, scale_position_bias=False) == variant_name("mpnet", 0.8) + "-biasunscaled"
    assert variant_name("mpnet", 1.0, scale_position_bias=False) == variant_name("mpnet", 1.0)


# --- tiny random-weight models built from configs (no download) ----------------------------


def _tiny(kind: str) -> nn.Module:
    """A 3-layer random model whose query/key weights are enlarged so attention is not uniform."""
    model = _tiny_random(kind)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("query.weight", "key.weight", "q_lin.weight", "k_lin.weight", ".q.weight", ".k.weight")):
                param.mul_(0.25 / param.std())
    return model


def _tiny_random(kind: str) -> nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    common = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37)
    if kind == "roberta":
        return tf.RobertaModel(tf.RobertaConfig(**common)).eval()
    if kind == "distilbert":
        return tf.DistilBertModel(tf.DistilBertConfig(vocab_size=99, dim=32, n_layers=3, n_heads=4, hidden_dim=37)).eval()
    if kind == "mpnet":
        return tf.MPNetModel(tf.MPNetConfig(**common)).eval()
    if kind == "t5":
        config = tf.T5Config(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=3, num_heads=4)
        return tf.T5EncoderModel(config).eval()
    raise ValueError(kind)


def _tiny_inputs() -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 99, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    mask[2, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "mpnet", "t5"])
def test_tiny_architectures_match_reference(kind):
    model, inputs = _tiny(kind), _tiny_inputs()
    valid = inputs["attention_mask"].bool()
    taus = {0: 0.6, 1: 1.0, 2: 0.8}
    with torch.no_grad():
        plain = model(**inputs).last_hidden_state
        handle = apply_tempscale(model, taus)
        assert handle.patched_layers == [0, 2]
        patched = model(**inputs).last_hidden_state
        handle.remove()
        assert torch.equal(model(**inputs).last_hidden_state, plain)
        with reference_attention(model, taus):
            expected = model(**inputs).last_hidden_state
        assert torch.allclose(patched[valid], expected[valid], atol=TOL, rtol=0)
        assert (patched[valid] - plain[valid]).abs().max() > 1e-4

        lengths = inputs["attention_mask"].sum(-1).tolist()
        row_taus = torch.tensor([tau_for_length(n, 4, 0.5, 0.3) for n in lengths])
        handle = apply_length_adaptive_tempscale(model, n_ref=4, tau_min=0.3)
        adaptive = model(**inputs).last_hidden_state
        handle.remove()
        with reference_attention(model, {i: (lambda: row_taus) for i in range(3)}):
            expected = model(**inputs).last_hidden_state
        assert torch.allclose(adaptive[valid], expected[valid], atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", ["mpnet", "t5"])
def test_unscaled_position_bias_matches_reference(kind):
    """scale_position_bias=False (fixed and per-row tau) = the reference with tau on QK^T only."""
    model, inputs = _tiny(kind), _tiny_inputs()
    valid = inputs["attention_mask"].bool()
    taus = {0: 0.6, 1: 1.0, 2: 0.8}
    with torch.no_grad():
        plain = model(**inputs).last_hidden_state
        scaled = apply_tempscale(model, taus)
        with_bias_scaled = model(**inputs).last_hidden_state
        handle = apply_tempscale(model, taus, scale_position_bias=False)
        assert not scaled.active and handle.position_bias == "unscaled" and handle.patched_layers == [0, 2]
        patched = model(**inputs).last_hidden_state
        handle.remove()
        assert torch.equal(model(**inputs).last_hidden_state, plain)
        with reference_attention(model, taus, scale_bias=False):
            expected = model(**inputs).last_hidden_state
        assert torch.allclose(patched[valid], expected[valid], atol=TOL, rtol=0)
        assert (patched[valid] - with_bias_scaled[valid]).abs().max() > 1e-4

        lengths = inputs["attention_mask"].sum(-1).tolist()
        row_taus = torch.tensor([tau_for_length(n, 4, 0.5, 0.3) for n in lengths])
        handle = apply_length_adaptive_tempscale(model, n_ref=4, tau_min=0.3, scale_position_bias=False)
        assert handle.position_bias == "unscaled"
        adaptive = model(**inputs).last_hidden_state
        handle.remove()
        with reference_attention(model, {i: (lambda: row_taus) for i in range(3)}, scale_bias=False):
            expected = model(**inputs).last_hidden_state
        assert torch.allclose(adaptive[valid], expected[valid], atol=TOL, rtol=0)


def test_models_without_a_position_bias_report_none():
    handle = apply_tempscale(_tiny("roberta"), 0.8, scale_position_bias=False)
    assert handle.position_bias == "none"


def test_row_taus_are_summarised_per_tag(minilm):
    """Every forward's rows are counted under the current tag, not only the last batch."""
    tokenizer = minilm.tokenizer
    lengths = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    handle = apply_length_adaptive_tempscale(minilm, n_ref=8, tau_min=0.5)
    try:
        with handle.tagged("task", "test", "default", "query"):
            _encode(minilm, TEXTS[:1])
        with handle.tagged("task", "test", "default", "document"):
            _encode(minilm, TEXTS[1:2])
            _encode(minilm, TEXTS[2:])
        _encode(minilm, TEXTS[:1])
        summary = {tag: entry.as_dict() for tag, entry in handle.row_tau_summary().items()}
    finally:
        handle.remove()
    query, document = summary[("task", "test", "default", "query")], summary[("task", "test", "default", "document")]
    assert query["n_rows"] == 1 and query["tokens_mean"] == lengths[0] and query["tau_mean"] == 1.0
    assert document["n_rows"] == 2 and document["tokens_min"] == min(lengths[1:]) and document["tokens_max"] == max(lengths[1:])
    expected = [tau_for_law("power", n, 8, 0.5, 0.5) for n in lengths[1:]]
    assert math.isclose(document["tau_mean"], sum(expected) / 2) and document["tau_min"] == min(expected) < 1.0
    assert summary[()]["n_rows"] == 1  # untagged rows are kept apart


def test_unsupported_architecture_raises_and_patches_nothing():
    import transformers as tf

    gpt2 = tf.GPT2Model(tf.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32))
    with pytest.raises(UnsupportedArchitectureError, match="GPT2Model"):
        apply_tempscale(gpt2, 0.8)
    with pytest.raises(UnsupportedArchitectureError, match="GPT2Model"):
        apply_length_adaptive_tempscale(gpt2, n_ref=16)
    assert "forward" not in vars(gpt2)
    with pytest.raises(UnsupportedArchitectureError, match="no Hugging Face transformer"):
        apply_tempscale(nn.Linear(2, 2), 0.8)


def test_missing_model_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_encoder(str(missing))
