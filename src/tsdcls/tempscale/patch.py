"""TempScale: a temperature tau in the encoder's self-attention softmax, exact and reversible.

softmax(Q K^T / (tau sqrt(d)) + mask) sharpens attention; tau < 1 undoes part of the low-pass
attenuation that grows with text length (arXiv 2410.24200). The patch keeps the model's own
attention kernel (SDPA stays SDPA) and changes only the logit scale:

* BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, DistilBERT pass ``module.scaling`` to the attention
  interface as SDPA's ``scale``; a fixed tau sets ``scaling = d^-1/2 / tau`` (no extra op at all).
  The padding mask reaches SDPA as a boolean mask (masked keys -> -inf), so dividing the logits
  by tau before adding the mask is exactly softmax(QK^T/(tau sqrt d) + mask).
* MPNet adds a relative position bias B to the logits; like the paper's T5 handling we scale
  it too: softmax((QK^T/sqrt d + B)/tau + mask). The query and B are divided by tau by hooks.
* T5 encoders (GTR, sentence-T5): softmax((QK^T + B)/tau + mask), same reasoning.
* ``scale_position_bias=False`` (the ablation of that choice) leaves B as it is:
  softmax(QK^T/(tau sqrt d) + B + mask) (MPNet; T5: softmax(QK^T/tau + B + mask)).
* Length-adaptive tau (one tau per input row from its non-padding token count) divides each
  row's query (and bias) by its own tau: per example, not per batch.

tau == 1 on a layer leaves that layer untouched, so tau = 1 is bit-identical to the plain model.
An architecture without a known self-attention layout raises ``UnsupportedArchitectureError``;
the patch counts the layers it changed and never leaves a requested layer silently unpatched.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tsdcls.common.lowpass import TAU_LAWS, tau_for_law
from tsdcls.common.variants import BIAS_UNSCALED_SUFFIX

LayerSpec = str | Sequence[int]
TauSpec = float | Sequence[float] | Mapping[int, float]

_HANDLE_ATTR = "_tempscale_handle"


class UnsupportedArchitectureError(TypeError):
    """The model's self-attention layout is unknown to TempScale: nothing was patched."""


@dataclass(frozen=True)
class _Layout:
    """How one attention class computes its logits (which knobs TempScale turns)."""

    query_attr: str  # the query projection (nn.Linear) inside the attention module
    uses_scaling_attr: bool  # passes ``self.scaling`` to the attention interface
    position_bias: str | None = None  # None, "mpnet" (positional arg 2) or "t5" (kwarg, computed in layer 0)


# Self-attention classes by name: matching names (not isinstance) keeps the import of every
# transformers model family out of this module.
_LAYOUTS: dict[str, _Layout] = {
    "BertSelfAttention": _Layout("query", True),
    "RobertaSelfAttention": _Layout("query", True),
    "XLMRobertaSelfAttention": _Layout("query", True),
    "CamembertSelfAttention": _Layout("query", True),
    "ElectraSelfAttention": _Layout("query", True),
    "DistilBertSelfAttention": _Layout("q_lin", True),
    "MPNetSelfAttention": _Layout("q", False, "mpnet"),
    "T5Attention": _Layout("q", True, "t5"),
}
SUPPORTED_ATTENTION = tuple(sorted(_LAYOUTS))


@dataclass
class _RowState:
    """Per-batch inverse temperatures for length-adaptive TempScale (filled by a model pre-hook)."""

    n_ref: int
    exponent: float
    tau_min: float
    tau_max: float
    law: str = "power"
    inv_tau: torch.Tensor | None = None
    last_taus: list[float] = field(default_factory=list)
    tag: tuple[str, ...] = ()  # what the rows belong to now (set by TempScaleHandle.tagged)
    summary: dict[tuple[str, ...], RowTauSummary] = field(default_factory=dict)

    def record(self, lengths: list[int], taus: list[float]) -> None:
        """Add one forward batch's rows to the running summary of the current tag."""
        entry = self.summary.setdefault(self.tag, RowTauSummary())
        for n, tau in zip(lengths, taus, strict=True):
            entry.add(int(n), float(tau))


@dataclass
class RowTauSummary:
    """Running count, sum, min and max of the token counts and taus of the rows of one tag."""

    n_rows: int = 0
    tokens_sum: int = 0
    tokens_min: int = 0
    tokens_max: int = 0
    tau_sum: float = 0.0
    tau_min: float = math.inf
    tau_max: float = -math.inf

    def add(self, tokens: int, tau: float) -> None:
        self.merge(RowTauSummary(1, tokens, tokens, tokens, tau, tau, tau))

    def merge(self, other: RowTauSummary) -> None:
        if not other.n_rows:
            return
        self.tokens_min = other.tokens_min if self.n_rows == 0 else min(self.tokens_min, other.tokens_min)
        self.tokens_max = max(self.tokens_max, other.tokens_max)
        self.tau_min, self.tau_max = min(self.tau_min, other.tau_min), max(self.tau_max, other.tau_max)
        self.n_rows += other.n_rows
        self.tokens_sum += other.tokens_sum
        self.tau_sum += other.tau_sum

    def as_dict(self) -> dict[str, float]:
        """n_rows, tokens_mean/min/max, tau_mean/min/max (token counts include special tokens)."""
        n = self.n_rows
        return {"n_rows": n, "tokens_mean": self.tokens_sum / n if n else math.nan,
                "tokens_min": self.tokens_min if n else math.nan, "tokens_max": self.tokens_max if n else math.nan,
                "tau_mean": self.tau_sum / n if n else math.nan,
                "tau_min": self.tau_min if n else math.nan, "tau_max": self.tau_max if n else math.nan}


@dataclass
class TempScaleHandle:
    """A live TempScale patch: ``taus`` (layer -> tau, 1.0 = untouched), ``remove()`` undoes it."""

    taus: dict[int, float]
    architecture: str
    n_layers: int
    adaptive: dict[str, float] | None = None
    position_bias: str = "none"  # 'none' (no relative bias), 'scaled' (B / tau) or 'unscaled' (B kept)
    _undo: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _models: list[nn.Module] = field(default_factory=list, repr=False)
    _row_state: _RowState | None = field(default=None, repr=False)
    active: bool = True

    @property
    def patched_layers(self) -> list[int]:
        """Layers whose attention was changed: tau != 1 (NaN, i.e. per-row tau, for adaptive layers)."""
        return sorted(i for i, tau in self.taus.items() if tau != 1.0)

    @property
    def last_row_taus(self) -> list[float]:
        """Length-adaptive only: the tau each row of the last forward batch used."""
        return list(self._row_state.last_taus) if self._row_state else []

    @contextlib.contextmanager
    def tagged(self, *tag: str) -> Iterator[None]:
        """Length-adaptive only: count the rows of every forward inside under ``tag`` (e.g. task,
        split, subset, 'query'/'document') in :meth:`row_tau_summary`; no-op for a fixed tau."""
        state = self._row_state
        if state is None:
            yield
            return
        previous, state.tag = state.tag, tuple(str(t) for t in tag)
        try:
            yield
        finally:
            state.tag = previous

    def row_tau_summary(self, reset: bool = False) -> dict[tuple[str, ...], RowTauSummary]:
        """Length-adaptive only: tag -> summary of the token counts and taus of every row seen
        since the patch (or the last reset); untagged rows are under (). Empty for a fixed tau."""
        if self._row_state is None:
            return {}
        summary = dict(self._row_state.summary)
        if reset:
            self._row_state.summary = {}
        return summary

    def remove(self) -> None:
        """Restore the exact original model (idempotent)."""
        if not self.active:
            return
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        for model in self._models:
            if getattr(model, _HANDLE_ATTR, None) is self:
                delattr(model, _HANDLE_ATTR)
        self.active = False


# --- locating the encoder and its attention layers ------------------------------------------


def _hf_models(model: nn.Module) -> list[nn.Module]:
    """The outermost Hugging Face PreTrainedModel(s) inside ``model`` (itself, or ST modules)."""
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        return [model]
    found: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and not any(_contains(outer, module) for outer in found):
            found.append(module)
    if not found:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} holds no Hugging Face transformer: TempScale patches "
            "sentence_transformers.SentenceTransformer or transformers.PreTrainedModel encoders"
        )
    return found


def _contains(outer: nn.Module, inner: nn.Module) -> bool:
    return any(sub is inner for sub in outer.modules())


def _architecture(hf_model: nn.Module) -> str:
    config = getattr(hf_model, "config", None)
    names = getattr(config, "architectures", None) or [type(hf_model).__name__]
    return f"{','.join(names)} (model_type={getattr(config, 'model_type', '?')})"


def _attention_layers(hf_model: nn.Module) -> list[tuple[nn.Module, _Layout]]:
    """Encoder self-attention modules in depth order; raises for unknown or partial layouts."""
    config = hf_model.config
    arch = _architecture(hf_model)
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        raise UnsupportedArchitectureError(
            f"TempScale patches bidirectional encoders; {arch} is configured as a decoder"
        )
    layers = []
    for module in hf_model.modules():
        layout = _LAYOUTS.get(type(module).__name__)
        if layout is None:
            continue
        if layout.position_bias == "t5" and getattr(module, "is_decoder", False):
            continue  # T5 decoder attention (full seq2seq models): not part of the encoder
        if not isinstance(getattr(module, layout.query_attr, None), nn.Linear):
            raise UnsupportedArchitectureError(
                f"{arch}: {type(module).__name__} has no query projection '{layout.query_attr}'"
            )
        layers.append((module, layout))
    if not layers:
        raise UnsupportedArchitectureError(
            f"TempScale does not support architecture {arch}: no known self-attention module "
            f"(supported: {', '.join(SUPPORTED_ATTENTION)})"
        )
    expected = getattr(config, "num_hidden_layers", None)
    if getattr(config, "model_type", "") in {"t5", "mt5", "umt5"}:
        expected = getattr(config, "num_layers", expected)
    if expected is not None and len(layers) != expected:
        raise UnsupportedArchitectureError(
            f"{arch}: found {len(layers)} self-attention layers but the config declares {expected}; "
            "refusing to patch part of the model"
        )
    return layers


# --- resolving which layers get which tau ---------------------------------------------------


def _is_scalar(tau: object) -> bool:
    """One tau for all chosen layers: any real number (numpy.float32 included), not a bool."""
    return isinstance(tau, numbers.Real) and not isinstance(tau, bool)


def resolve_layers(layers: LayerSpec, n_layers: int) -> list[int]:
    """'all' | 'first_half' ([0, n//2)) | 'last_half' ([n//2, n)) | explicit indices (negatives ok)."""
    if isinstance(layers, str):
        named = {
            "all": range(n_layers),
            "first_half": range(n_layers // 2),
            "last_half": range(n_layers // 2, n_layers),
        }
        if layers not in named:
            raise ValueError(f"layers must be 'all', 'first_half', 'last_half' or indices, got {layers!r}")
        return list(named[layers])
    chosen = []
    for index in layers:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"layer indices must be integers, got {index!r}")
        if not -n_layers <= index < n_layers:
            raise ValueError(f"layer index {index} out of range for a {n_layers}-layer encoder")
        chosen.append(index % n_layers)
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"layer indices repeat: {list(layers)}")
    return sorted(chosen)


def resolve_taus(tau: TauSpec, layers: LayerSpec, n_layers: int) -> dict[int, float]:
    """Every layer -> its tau (1.0 where untouched). A list gives one tau per selected layer
    (or one per layer of the model when its length equals the depth); a mapping is layer -> tau."""
    chosen = resolve_layers(layers, n_layers)
    taus = {i: 1.0 for i in range(n_layers)}
    if isinstance(tau, Mapping):
        if layers != "all":
            raise ValueError("give either a layer -> tau mapping or layers=, not both")
        for index, value in tau.items():
            taus[resolve_layers([int(index)], n_layers)[0]] = float(value)
    elif _is_scalar(tau):
        for index in chosen:
            taus[index] = float(tau)
    else:
        values = [float(v) for v in tau]
        if len(values) == len(chosen):
            taus.update(zip(chosen, values, strict=True))
        elif len(values) == n_layers and layers == "all":
            taus.update(enumerate(values))
        else:
            raise ValueError(f"{len(values)} taus for {len(chosen)} selected layers (model has {n_layers})")
    bad = {i: t for i, t in taus.items() if not (math.isfinite(t) and t > 0)}
    if bad:
        raise ValueError(f"tau must be a positive finite number, got {bad}")
    return taus


# --- the patch itself -----------------------------------------------------------------------


def apply_tempscale(
    model: nn.Module, tau: TauSpec, layers: LayerSpec = "all", scale_position_bias: bool = True
) -> TempScaleHandle:
    """Divide the attention logits of the chosen encoder layers by tau; returns a removable handle.

    ``model`` is a SentenceTransformer or a transformers PreTrainedModel. A previous TempScale
    patch on the same model is removed first, so patches never stack. ``scale_position_bias``
    (MPNet, T5): True divides the relative position bias by tau too (our default), False leaves
    it unscaled; models without such a bias ignore it (``handle.position_bias`` is 'none').
    """
    hf_models = _hf_models(model)
    remove_tempscale(model)
    handle: TempScaleHandle | None = None
    for hf_model in hf_models:
        attention = _attention_layers(hf_model)
        taus = resolve_taus(tau, layers, len(attention))
        if handle is None:
            handle = TempScaleHandle(taus=taus, architecture=_architecture(hf_model), n_layers=len(attention),
                                     position_bias=_bias_mode(attention, scale_position_bias))
        patched = 0
        for index, (module, layout) in enumerate(attention):
            if taus[index] != 1.0:
                handle._undo.append(_patch_layer(module, layout, inv_tau=1.0 / taus[index], rows=None,
                                                 scale_bias=scale_position_bias))
                patched += 1
        expected = sum(1 for t in taus.values() if t != 1.0)
        if patched != expected:  # pragma: no cover - guards future edits of the loop above
            raise RuntimeError(f"TempScale patched {patched} layers, expected {expected}")
        _attach(hf_model, handle)
    assert handle is not None
    return handle


def apply_length_adaptive_tempscale(
    model: nn.Module,
    n_ref: int,
    exponent: float = 0.5,
    tau_min: float = 0.5,
    tau_max: float = 1.0,
    layers: LayerSpec = "all",
    law: str = "power",
    scale_position_bias: bool = True,
) -> TempScaleHandle:
    """TempScale with one tau per input row: tau = tau_for_law(law, non-padding tokens, n_ref, ...).

    ``law`` 'power': (n_ref/n)^exponent; 'log': log n_ref / log n (Scalable-Softmax style).
    ``scale_position_bias`` as in :func:`apply_tempscale` (each row's bias by its own tau).
    Every row's token count and tau is summarised per tag (``handle.tagged``, ``row_tau_summary``).

    Rows of one padded batch get different temperatures (a per-row scaling of the logits), so a
    text's embedding does not depend on which other texts share its batch.
    """
    if n_ref <= 0:
        raise ValueError(f"n_ref must be positive, got {n_ref}")
    if not 0 < tau_min <= tau_max:
        raise ValueError(f"need 0 < tau_min <= tau_max, got {tau_min}, {tau_max}")
    if law not in TAU_LAWS:
        raise ValueError(f"unknown temperature law {law!r} (have {TAU_LAWS})")
    hf_models = _hf_models(model)
    remove_tempscale(model)
    state = _RowState(n_ref=int(n_ref), exponent=float(exponent), tau_min=float(tau_min), tau_max=float(tau_max), law=law)
    handle: TempScaleHandle | None = None
    for hf_model in hf_models:
        attention = _attention_layers(hf_model)
        chosen = resolve_layers(layers, len(attention))
        if handle is None:
            handle = TempScaleHandle(
                taus={i: 1.0 for i in range(len(attention))},
                architecture=_architecture(hf_model),
                n_layers=len(attention),
                adaptive={"law": law, "n_ref": n_ref, "exponent": exponent, "tau_min": tau_min, "tau_max": tau_max},
                position_bias=_bias_mode(attention, scale_position_bias),
                _row_state=state,
            )
            handle.taus = {i: (math.nan if i in chosen else 1.0) for i in range(len(attention))}
        handle._undo.append(_wrap_forward_for_row_taus(hf_model, state))
        for index in chosen:
            module, layout = attention[index]
            handle._undo.append(_patch_layer(module, layout, inv_tau=None, rows=state, scale_bias=scale_position_bias))
        _attach(hf_model, handle)
    assert handle is not None
    return handle


def remove_tempscale(model: nn.Module) -> None:
    """Undo any TempScale patch on ``model`` (no-op when there is none)."""
    for hf_model in _hf_models(model):
        handle = getattr(hf_model, _HANDLE_ATTR, None)
        if handle is not None:
            handle.remove()


def active_handle(model: nn.Module) -> TempScaleHandle | None:
    """The active TempScale patch of ``model`` (None when unpatched)."""
    for hf_model in _hf_models(model):
        handle = getattr(hf_model, _HANDLE_ATTR, None)
        if handle is not None:
            return handle
    return None


def architecture(model: nn.Module) -> str:
    """'BertModel (model_type=bert)': the first transformer's architecture, for messages."""
    return _architecture(_hf_models(model)[0])


def tempscale_taus(model: nn.Module) -> dict[int, float]:
    """Layer -> tau of the active patch ({} when unpatched; NaN marks length-adaptive layers)."""
    for hf_model in _hf_models(model):
        handle = getattr(hf_model, _HANDLE_ATTR, None)
        if handle is not None:
            return dict(handle.taus)
    return {}


def _attach(hf_model: nn.Module, handle: TempScaleHandle) -> None:
    object.__setattr__(hf_model, _HANDLE_ATTR, handle)
    handle._models.append(hf_model)


def _wrap_forward_for_row_taus(hf_model: nn.Module, state: _RowState) -> Callable[[], None]:
    """Record per-row taus from the raw attention mask at every forward; returns the undo.

    sentence-transformers calls ``model.forward(**features)`` directly (no ``__call__``, so no
    module hooks fire): wrapping the instance's ``forward`` catches both call paths.
    """
    original = hf_model.forward
    signature = inspect.signature(original)

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs).arguments
        _set_row_taus(state, bound.get("attention_mask"), bound.get("input_ids"), bound.get("inputs_embeds"))
        try:
            return original(*args, **kwargs)
        finally:
            state.inv_tau = None

    object.__setattr__(hf_model, "forward", forward)

    def undo() -> None:
        if "forward" in vars(hf_model):
            object.__delattr__(hf_model, "forward")

    return undo


def _set_row_taus(
    state: _RowState, mask: torch.Tensor | None, ids: torch.Tensor | None, embeds: torch.Tensor | None
) -> None:
    """tau per row from its non-padding token count (every position counts without a mask)."""
    if mask is not None:
        lengths = mask.reshape(mask.shape[0], -1).ne(0).sum(dim=-1).tolist()
        device = mask.device
    else:
        reference = ids if ids is not None else embeds
        if reference is None:
            raise ValueError("length-adaptive TempScale needs input_ids, inputs_embeds or attention_mask")
        lengths = [int(reference.shape[1])] * int(reference.shape[0])
        device = reference.device
    taus = [tau_for_law(state.law, max(1, n), state.n_ref, state.exponent, state.tau_min, state.tau_max) for n in lengths]
    state.last_taus = taus
    state.record(lengths, taus)
    state.inv_tau = 1.0 / torch.tensor(taus, dtype=torch.float32, device=device)


def _factor(inv_tau: float | None, rows: _RowState | None, like: torch.Tensor) -> float | torch.Tensor:
    """1/tau as a scalar, or per row shaped (B, 1, ..., 1) to broadcast against ``like``."""
    if rows is None:
        assert inv_tau is not None
        return inv_tau
    if rows.inv_tau is None:
        raise RuntimeError("length-adaptive TempScale: the model pre-hook did not run before attention")
    factor = rows.inv_tau.to(device=like.device, dtype=like.dtype)
    if like.shape[0] not in (1, factor.shape[0]):  # a batch-1 bias broadcasts to per-row copies
        raise RuntimeError(f"batch of {like.shape[0]} rows but {factor.shape[0]} per-row taus")
    return factor.view(-1, *([1] * (like.dim() - 1)))


def _bias_mode(attention: list[tuple[nn.Module, _Layout]], scale_bias: bool) -> str:
    """'none' when no layer adds a relative position bias, else 'scaled' or 'unscaled'."""
    if not any(layout.position_bias for _module, layout in attention):
        return "none"
    return "scaled" if scale_bias else "unscaled"


def _patch_layer(module: nn.Module, layout: _Layout, inv_tau: float | None, rows: _RowState | None,
                 scale_bias: bool = True) -> Callable[[], None]:
    """Scale one layer's logits by 1/tau (its position bias too unless ``scale_bias`` is False);
    returns the function that restores it exactly."""
    undo: list[Callable[[], None]] = []
    if rows is None and layout.uses_scaling_attr:
        original = module.scaling
        module.scaling = original * inv_tau  # SDPA's `scale`: zero extra work per forward

        def restore_scaling() -> None:
            module.scaling = original

        undo.append(restore_scaling)
    else:
        query = getattr(module, layout.query_attr)

        def scale_query(_linear: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            return output * _factor(inv_tau, rows, output)

        undo.append(query.register_forward_hook(scale_query).remove)
    # without scale_bias the bias B enters the logits as it is: softmax(QK^T/(tau sqrt d) + B + mask)
    if scale_bias and layout.position_bias == "mpnet":
        undo.extend(_patch_mpnet_bias(module, inv_tau, rows))
    elif scale_bias and layout.position_bias == "t5":
        undo.extend(_patch_t5_bias(module, inv_tau, rows))

    def restore() -> None:
        for step in reversed(undo):
            step()

    return restore


def _patch_mpnet_bias(module: nn.Module, inv_tau: float | None, rows: _RowState | None) -> list[Callable[[], None]]:
    """MPNetSelfAttention(hidden, mask, position_bias, ...): divide the bias by tau on the way in."""

    def pre(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        if "position_bias" in kwargs and kwargs["position_bias"] is not None:
            bias = kwargs["position_bias"]
            kwargs = {**kwargs, "position_bias": bias * _factor(inv_tau, rows, bias)}
        elif len(args) > 2 and args[2] is not None:
            args = (*args[:2], args[2] * _factor(inv_tau, rows, args[2]), *args[3:])
        return args, kwargs

    return [module.register_forward_pre_hook(pre, with_kwargs=True).remove]


def _patch_t5_bias(module: nn.Module, inv_tau: float | None, rows: _RowState | None) -> list[Callable[[], None]]:
    """T5Attention: divide the (shared) relative bias by tau for this layer only.

    Layer 0 computes the bias and returns it for the next layers; the pre-hook computes it here
    when absent, and the forward hook hands the unscaled bias on, so each layer scales once.
    """
    unscaled: list[torch.Tensor] = []

    def pre(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        bias = kwargs.get("position_bias")
        if bias is None:
            hidden = args[0] if args else kwargs["hidden_states"]
            length = hidden.shape[1]
            if mod.has_relative_attention_bias:
                bias = mod.compute_bias(length, length, device=hidden.device)
            else:
                bias = torch.zeros((1, mod.n_heads, length, length), device=hidden.device, dtype=hidden.dtype)
        unscaled[:] = [bias]
        return args, {**kwargs, "position_bias": bias * _factor(inv_tau, rows, bias)}

    def post(_mod: nn.Module, _args: Any, output: tuple[Any, ...]) -> tuple[Any, ...]:
        return (output[0], unscaled.pop(), *output[2:])

    handles = [module.register_forward_pre_hook(pre, with_kwargs=True), module.register_forward_hook(post)]
    return [h.remove for h in handles]


# --- loading encoders by config name --------------------------------------------------------

_CANONICAL_NAMES = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet": "sentence-transformers/all-mpnet-base-v2",
    "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
}


def canonical_model_name(name: str) -> str:
    """'org/model' form that mteb requires: known aliases -> hub id, a folder -> local/<folder>."""
    if name in _CANONICAL_NAMES:
        return _CANONICAL_NAMES[name]
    if Path(name).exists():
        return f"local/{Path(name).resolve().name}"
    return name if "/" in name else f"local/{name}"


def _layers_label(layers: LayerSpec) -> str:
    if isinstance(layers, str):
        return layers
    return "L" + ".".join(str(int(i)) for i in layers)


def _tau_label(tau: TauSpec) -> str:
    if isinstance(tau, Mapping):
        return "tau" + "_".join(f"{int(k)}:{float(v):g}" for k, v in sorted(tau.items()))
    if _is_scalar(tau):
        return f"tau{float(tau):g}"
    return "tau" + "_".join(f"{float(v):g}" for v in tau)


def variant_name(base_name: str, tau: TauSpec = 1.0, layers: LayerSpec = "all", scale_position_bias: bool = True) -> str:
    """Model name recording the TempScale variant, e.g. 'sentence-transformers/all-MiniLM-L6-v2
    -tempscale-tau0.9-all', so mteb results of different tau (or layers) never share a folder.
    tau = 1 returns the plain model name (the unpatched baseline); an unscaled position bias
    appends '-biasunscaled'."""
    base = canonical_model_name(base_name)
    if _is_scalar(tau) and float(tau) == 1.0:
        return base
    suffix = "" if scale_position_bias else BIAS_UNSCALED_SUFFIX
    return f"{base}-tempscale-{_tau_label(tau)}-{_layers_label(layers)}{suffix}"


def law_variant_name(base_name: str, law: str, n_ref: int, exponent: float = 0.5, tau_min: float = 0.5) -> str:
    """Model name of a length-adaptive TempScale variant (temperature law tau(n))."""
    shape = f"power{exponent:g}" if law == "power" else law
    return f"{canonical_model_name(base_name)}-tempscale-law-{shape}-nref{n_ref}-min{tau_min:g}"


def load_encoder(
    name: str,
    tau: TauSpec = 1.0,
    layers: LayerSpec = "all",
    device: str = "cpu",
    max_seq_length: int | None = None,
    revision: str | None = None,
    scale_position_bias: bool = True,
) -> Any:
    """A SentenceTransformer for config model ``name`` with TempScale applied (tau = 1: plain).

    ``name`` is an offline alias (minilm, mpnet), a local folder, or a hub id read from the
    Hugging Face cache at ``revision`` (pinned in ``tempscale.model_revisions``; a missing
    cache entry raises HubEntryMissingError naming the model, revision and `snakemake stage`).

    The variant is recorded in ``model.model_card_data.model_name`` (what mteb keys results on)
    and in ``model.tempscale`` (a dict: base, tau, layers, taus per layer, position_bias:
    'none', 'scaled' or 'unscaled', see :func:`apply_tempscale`).
    """
    from sentence_transformers import SentenceTransformer

    from tsdcls.common.assets import model_path

    resolved = model_path(name, revision)
    model = SentenceTransformer(resolved, device=device)
    if max_seq_length is not None:
        limit = position_limit(model)
        if limit is not None and max_seq_length > limit:
            raise ValueError(f"max_seq_length {max_seq_length} exceeds the model's {limit} positions")
        model.max_seq_length = int(max_seq_length)
    model.eval()
    handle = apply_tempscale(model, tau, layers, scale_position_bias=scale_position_bias)
    model.model_card_data.model_name = variant_name(name, tau, layers, scale_position_bias)
    model.tempscale = {
        "base": canonical_model_name(name),
        "tau": float(tau) if _is_scalar(tau) else list(tau.items()) if isinstance(tau, Mapping) else list(tau),
        "layers": layers if isinstance(layers, str) else list(layers),
        "taus": dict(handle.taus),
        "position_bias": handle.position_bias,
    }
    return model


def model_revision(config: Mapping[str, Any], name: str) -> str | None:
    """The pinned hub revision of model ``name`` (config key 'tempscale.model_revisions')."""
    return (config.get("model_revisions") or {}).get(name)


def position_limit(model: Any) -> int | None:
    """Usable positions of the first transformer (RoBERTa-style models reserve pad+1 slots)."""
    hf_model = _hf_models(model)[0]
    limit = getattr(hf_model.config, "max_position_embeddings", None)
    if limit is None:
        return None
    if getattr(hf_model.config, "model_type", "") in {"roberta", "xlm-roberta", "camembert", "mpnet"}:
        limit -= 2
    return int(limit)


