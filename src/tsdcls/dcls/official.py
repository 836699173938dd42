"""Load the authors' released ConvNeXt-dcls ImageNet checkpoints into our timm models.

The authors' models (``convnext_dcls_{tiny,small,base}``, dcls 0.1.1 + the original ConvNeXt code)
name their parameters as the original ConvNeXt does (``downsample_layers``, ``stages.i.j.dwconv``,
``pwconv1`` ...); timm's ConvNeXt names them ``stem``, ``stages.i.blocks.j.conv_dw``,
``mlp.fc1`` ... The DCLS layer's own parameters (``weight`` (C, 1, K), ``P`` (2, C, 1, K),
``bias``) have the same names and meaning in both, so only the module paths change. Positions
are shared per stage: the state dict repeats the one ``P`` under each block's key, and we check
that the copies agree before loading them into the one shared parameter.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

import tsdcls.dcls.convert  # noqa: F401 - registers the convnext_*_dcls timm models

# (stem width, blocks of stage 3) -> our timm name; T/S share the width, S/B the depths
ARCHS: dict[tuple[int, int], str] = {
    (96, 9): "convnext_tiny_dcls",
    (96, 27): "convnext_small_dcls",
    (128, 27): "convnext_base_dcls",
}
_BLOCK = re.compile(r"^stages\.(\d+)\.(\d+)\.")
_DOWNSAMPLE = re.compile(r"^downsample_layers\.(\d+)\.(\d+)\.")


def timm_key(key: str) -> str:
    """Our timm model's name for one key of the authors' state dict."""
    key = key.removeprefix("module.")
    if key.startswith("downsample_layers.0."):
        return "stem." + key.removeprefix("downsample_layers.0.")
    key = _DOWNSAMPLE.sub(r"stages.\1.downsample.\2.", key)
    key = _BLOCK.sub(r"stages.\1.blocks.\2.", key)
    key = key.replace(".dwconv.", ".conv_dw.").replace(".pwconv1.", ".mlp.fc1.").replace(".pwconv2.", ".mlp.fc2.")
    if key.startswith("norm."):
        return "head." + key
    if key.startswith("head."):
        return "head.fc." + key.removeprefix("head.")
    return key


def unwrap_checkpoint(checkpoint: Mapping[str, Any], use_ema: bool = True) -> dict[str, Tensor]:
    """The state dict inside a ConvNeXt training checkpoint (``model_ema`` first when
    ``use_ema``, as the released weights are EMA; then ``model``), or the bare state dict."""
    name = state_dict_entry(checkpoint, use_ema)
    return dict(checkpoint) if name == "state_dict" else dict(checkpoint[name])


def state_dict_entry(checkpoint: Mapping[str, Any], use_ema: bool = True) -> str:
    """Which entry of the checkpoint holds the weights to load: 'model_ema', 'model', or
    'state_dict' (the checkpoint is a bare state dict)."""
    for name in (("model_ema", "model") if use_ema else ("model",)):
        inner = checkpoint.get(name)
        if isinstance(inner, Mapping) and inner:
            return name
    if checkpoint and all(isinstance(v, Tensor) for v in checkpoint.values()):
        return "state_dict"
    raise ValueError(
        f"checkpoint has no state dict under 'model_ema'/'model' and is not a bare state dict "
        f"(top-level keys: {sorted(checkpoint)[:8]}); pass the dict torch.load returned for a ConvNeXt-dcls checkpoint"
    )


def arch_of(state_dict: Mapping[str, Tensor]) -> str:
    """Which of convnext_{tiny,small,base}_dcls this state dict belongs to (from its shapes)."""
    stem = state_dict.get("downsample_layers.0.0.weight")
    if stem is None:
        raise ValueError("not a ConvNeXt-dcls state dict: key 'downsample_layers.0.0.weight' is missing")
    depth2 = 1 + max(int(m.group(2)) for k in state_dict if (m := _BLOCK.match(k)) and m.group(1) == "2")
    arch = ARCHS.get((int(stem.shape[0]), depth2))
    if arch is None:
        raise ValueError(f"unknown ConvNeXt-dcls size: stem width {stem.shape[0]}, {depth2} blocks in stage 2; known: {ARCHS}")
    return arch


def convert_state_dict(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """The authors' state dict under our model's keys, with shapes checked and the per-stage
    positions checked to be one tensor repeated (our model holds one shared ``P`` per stage)."""
    target = model.state_dict()
    converted: dict[str, Tensor] = {}
    shared: dict[int, tuple[str, Tensor]] = {}
    for key, value in state_dict.items():
        new_key = timm_key(key)
        if new_key not in target:
            raise ValueError(f"checkpoint key {key!r} (-> {new_key!r}) has no place in {type(model).__name__}")
        if tuple(value.shape) != tuple(target[new_key].shape):
            raise ValueError(f"checkpoint key {key!r}: shape {tuple(value.shape)}, model expects {tuple(target[new_key].shape)}")
        if new_key.endswith("conv_dw.P"):
            first = shared.setdefault(id(_param_of(model, new_key)), (key, value))
            if not torch.equal(first[1], value):
                raise ValueError(f"checkpoint positions {key!r} differ from {first[0]!r}: this model shares P per stage")
        converted[new_key] = value
    missing = sorted(set(target) - set(converted))
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} of the model's keys, e.g. {missing[:4]}")
    return converted


def _param_of(model: nn.Module, key: str) -> Tensor:
    module_name, _, attr = key.rpartition(".")
    return getattr(model.get_submodule(module_name), attr)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` of a ConvNeXt checkpoint without running pickled code: tensors and plain
    values only, plus the ``argparse.Namespace`` that ConvNeXt's training script stores as ``args``."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: holds a {type(loaded).__name__}, not a checkpoint dict or state dict")
    return dict(loaded)


def load_official_checkpoint(
    path_or_state_dict: str | Path | Mapping[str, Any],
    model: nn.Module | None = None,
    use_ema: bool = True,
    **create_kwargs: Any,
) -> nn.Module:
    """A ``convnext_{tiny,small,base}_dcls`` model holding the authors' released weights.

    Args:
        path_or_state_dict: a checkpoint file, the dict ``torch.load`` gives for it (with
            ``model`` / ``model_ema``), or a bare state dict in the authors' layout.
        model: load into this model instead of creating one (must be the matching size).
        use_ema: take ``model_ema`` when the checkpoint has it (the published weights are EMA).
        create_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """
    checkpoint = path_or_state_dict
    if isinstance(checkpoint, str | Path):
        checkpoint = read_checkpoint(checkpoint)
    state_dict = {k.removeprefix("module."): v for k, v in unwrap_checkpoint(checkpoint, use_ema).items()}
    if model is None:
        num_classes = int(state_dict["head.weight"].shape[0]) if "head.weight" in state_dict else 1000
        model = timm.create_model(arch_of(state_dict), num_classes=num_classes, **create_kwargs)
    model.load_state_dict(convert_state_dict(state_dict, model), strict=True)
    return model
