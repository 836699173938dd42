"""Eval-mode kernel caching and folding DCLS models into plain dense convolutions."""

from __future__ import annotations

import timm
import torch
from torch import nn

import tsdcls.dcls  # noqa: F401 - registers the DCLS timm models
from tsdcls.dcls import Dcls1d, Dcls2d, dcls_modules
from tsdcls.dcls.fold import fold_dcls


def _spread(model: nn.Module, seed: int) -> None:
    """Trained-like taps: positions anywhere in the grid, non-trivial biases."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in dcls_modules(model):
            lim = layer.dilated_kernel_size[0] // 2
            layer.P.copy_((torch.rand(layer.P.shape, generator=gen) * 2 - 1) * lim)
            layer.weight.normal_(0, 0.2, generator=gen)
            if layer.bias is not None:
                layer.bias.normal_(0, 0.1, generator=gen)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_fold_gives_the_same_timm_model_with_dense_convs() -> None:
    torch.manual_seed(0)
    model = timm.create_model("test_convnext_dcls").eval()
    _spread(model, seed=1)
    folded = fold_dcls(model).eval()
    assert type(folded) is type(model) and not dcls_modules(folded)
    assert len(dcls_modules(model)) > 0  # the original is untouched
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (17, 17)]
    assert len(convs) == len(dcls_modules(model))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y_dcls, y_folded = model(x), folded(x)
    assert _rel(y_folded, y_dcls) < 1e-6


def test_fold_handles_even_grids_integer_padding_stride_and_1d() -> None:
    torch.manual_seed(2)
    cases = [
        (Dcls2d(4, 4, 5, 6, groups=4), torch.randn(2, 4, 9, 7)),  # even grid, asymmetric 'same'
        (Dcls2d(3, 6, 4, 7, stride=2, padding=3, groups=3), torch.randn(1, 3, 11, 10)),  # multiplier 2
        (Dcls1d(4, 4, 3, 9, padding=4, groups=4, version="gauss"), torch.randn(3, 4, 20)),
    ]
    for layer, x in cases:
        _spread(layer, seed=3)
        holder = nn.Sequential(layer)
        folded = fold_dcls(holder)
        with torch.no_grad():
            assert _rel(folded(x), holder(x)) < 1e-6, layer


def test_eval_kernel_is_built_once_until_a_parameter_changes() -> None:
    torch.manual_seed(4)
    layer = Dcls2d(6, 6, 8, 9, groups=6).eval()
    x = torch.randn(1, 6, 12, 12)
    with torch.no_grad():
        y1 = layer(x)
        cached = layer._kernel_cache[1]
        y2 = layer(x)
        assert layer._kernel_cache[1] is cached and torch.equal(y1, y2)
        layer.P[0].add_(0.7)  # an optimiser step or load_state_dict: the version counter moves
        y3 = layer(x)
        assert layer._kernel_cache[1] is not cached
        assert torch.allclose(layer._kernel_cache[1], layer.construct_kernel())
        assert not torch.allclose(y3, y1)
        layer.load_state_dict({k: v.clone() for k, v in layer.state_dict().items()})
        layer(x)
        assert layer._kernel_cache[1] is not cached
    # no cache where autograd or training needs a fresh graph
    y = layer(x)
    assert layer._kernel_cache is None
    y.sum().backward()
    assert layer.P.grad is not None and layer.weight.grad is not None
    layer.train()
    with torch.no_grad():
        layer(x)
    assert layer._kernel_cache is None
