"""Fold a trained DCLS model into the same model with plain dense convolutions.

After training, a DCLS layer's dense kernel is a constant; a ``nn.Conv{1,2}d`` holding it is what
export tools (ONNX, TorchScript, TensorRT) and other runtimes understand, and it needs no
kernel construction per call. ``fold_dcls`` swaps every DCLS layer for such a conv.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from tsdcls.dcls.kernels import resolve_padding
from tsdcls.dcls.layers import _DclsNd


def dense_conv_of(layer: _DclsNd) -> nn.Module:
    """The ``nn.Conv{1,2}d`` computing exactly what ``layer`` computes, with its dense kernel."""
    kernel = layer.construct_kernel().detach()
    dks = tuple(kernel.shape[2:])
    conv_cls = nn.Conv1d if layer.dims == 1 else nn.Conv2d
    padding: str | tuple[int, ...]
    if isinstance(layer.padding, str):
        padding = layer.padding
    else:
        pads = resolve_padding(layer.padding, dks)
        padding = tuple(before for before, _ in pads)
    conv = conv_cls(
        layer.in_channels, layer.out_channels, dks, stride=layer.stride, padding=padding,
        groups=layer.groups, bias=layer.bias is not None, device=kernel.device, dtype=kernel.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(kernel)
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    return conv


def fold_dcls(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``model`` (a copy unless ``inplace``) with every DCLS layer replaced by its dense conv.

    The result is the same timm model class, loads no DCLS code at run time, and computes the
    same outputs (up to float rounding of a different convolution algorithm).
    """
    target = model if inplace else copy.deepcopy(model)
    replacements = [
        (name, module) for name, module in target.named_modules() if isinstance(module, _DclsNd)
    ]
    for name, module in replacements:
        parent_name, _, attr = name.rpartition(".")
        parent = target.get_submodule(parent_name) if parent_name else target
        setattr(parent, attr, dense_conv_of(module))
    if hasattr(target, "dcls_report"):
        target.dcls_folded = True  # type: ignore[attr-defined]
    return target
