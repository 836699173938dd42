"""Drop-in conversion of timm ConvNeXt / ResNet models to DCLS (or dilated) convolutions.

``convert_model`` swaps, in place, the depthwise 7x7 convs of every ConvNeXt block or the 3x3
convs of every ResNet basic/bottleneck block, and returns a ``ConversionReport`` with the
parameter counts before and after. The registered timm names (``convnext_tiny_dcls`` ...) build
the paper's configurations: ConvNeXt-T with 34 taps in a 17x17 grid and ConvNeXt-S/B with 40, the
positions shared by all blocks of a stage, which is what keeps the count equal to the dense model
(34 weights per block and channel + 2 x 34 positions per stage and channel vs 49 weights per block).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import timm
import torch
import torch.nn.functional as F
from timm.models import register_model
from timm.models.convnext import ConvNeXt, ConvNeXtBlock, ConvNeXtStage
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import Tensor, nn

from tsdcls.common.variants import DCLS_VARIANTS as VARIANTS
from tsdcls.dcls.layers import Dcls2d, dcls_modules, new_positions, new_sigma

# ConvNeXt-T-Gauss as published (DCLS Gaussian follow-up and the dcls tutorials)
GAUSS_TINY_TAPS = 26
GAUSS_TINY_DKS = 23

Variant = Literal["dense", "dilated", "dcls_v0", "dcls_gauss", "dcls_frozen"]


class GridDilatedConv2d(nn.Conv2d):
    """Classic dilated conv with a k x k fixed grid, zero-padded so that the output size equals the
    replaced conv's (asymmetric padding when the span is even, as torch's 'same' does)."""

    def __init__(self, in_channels: int, out_channels: int, grid: int, dilation: int, stride: int, groups: int, bias: bool) -> None:
        super().__init__(in_channels, out_channels, grid, stride=stride, padding=0, dilation=dilation, groups=groups, bias=bias)
        total = dilation * (grid - 1)
        self.pad_lrtb = (total // 2, total - total // 2, total // 2, total - total // 2)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, self.pad_lrtb))


@dataclass
class LayerChange:
    """One replaced convolution."""

    name: str
    before: str
    after: str
    params_before: int
    params_after: int
    shared_positions: bool = False


@dataclass
class ConversionReport:
    """What convert_model did: counts over unique parameter tensors (shared positions once)."""

    model: str
    variant: str
    kernel_count: int
    dilated_kernel_size: int
    share_positions_per_stage: bool
    params_before: int
    params_after: int
    trainable_params_after: int
    replaced: int
    taps_per_kernel: int
    layers: list[LayerChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def params_delta(self) -> int:
        return self.params_after - self.params_before

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["params_delta"] = self.params_delta
        return result


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Unique parameter elements (a tensor shared by several layers counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def dilated_grid(kernel_count: int, dilated_kernel_size: int) -> tuple[int, int]:
    """(grid side k, dilation d) of the classic dilated baseline: k*k nearest to kernel_count
    (34 -> 6x6 = 36 taps), d so that the span d*(k-1)+1 is nearest to the DCLS grid (17 -> 16)."""
    grid = max(1, round(math.sqrt(kernel_count)))
    dilation = 1 if grid == 1 else max(1, round((dilated_kernel_size - 1) / (grid - 1)))
    return grid, dilation


def _module_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _new_conv(
    old: nn.Conv2d,
    variant: str,
    kernel_count: int,
    dilated_kernel_size: int,
    shared: nn.Parameter | None,
    shared_sig: nn.Parameter | None = None,
) -> nn.Module:
    stride = old.stride[0]
    bias = old.bias is not None
    if variant == "dilated":
        grid, dilation = dilated_grid(kernel_count, dilated_kernel_size)
        new: nn.Module = GridDilatedConv2d(old.in_channels, old.out_channels, grid, dilation, stride, old.groups, bias)
    else:
        if stride > 1 and dilated_kernel_size % 2 == 0:
            raise ValueError(
                f"dilated_kernel_size {dilated_kernel_size} is even: a strided DCLS conv needs an odd "
                "grid to keep the replaced conv's output size; use e.g. "
                f"{dilated_kernel_size + 1}"
            )
        version = "gauss" if variant == "dcls_gauss" else "v0"
        new = Dcls2d(
            old.in_channels,
            old.out_channels,
            kernel_count,
            dilated_kernel_size,
            stride=stride,
            padding="same" if stride == 1 else dilated_kernel_size // 2,
            groups=old.groups,
            bias=bias,
            version=version,
            shared_positions=shared,
            shared_sigma=shared_sig if version == "gauss" else None,
        )
        if variant == "dcls_frozen":
            new.P.requires_grad_(False)
    return new.to(device=old.weight.device, dtype=old.weight.dtype)


def _targets(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module, str]]]]:
    """Groups (one per stage) of (qualified name, parent module, attribute) convs to replace."""
    names = {id(m): n for n, m in model.named_modules()}
    groups: list[tuple[str, list[tuple[str, nn.Module, str]]]] = []
    if isinstance(model, ConvNeXt):
        for stage in model.modules():
            if not isinstance(stage, ConvNeXtStage):
                continue
            members = []
            for block in stage.blocks:
                if isinstance(block, ConvNeXtBlock) and isinstance(block.conv_dw, nn.Conv2d):
                    members.append((f"{names[id(block)]}.conv_dw", block, "conv_dw"))
            groups.append((names[id(stage)], members))
        return groups
    if isinstance(model, ResNet):
        for layer_name in ("layer1", "layer2", "layer3", "layer4"):
            layer = getattr(model, layer_name, None)
            if layer is None:
                continue
            members = []
            for block in layer.modules():
                if not isinstance(block, BasicBlock | Bottleneck):
                    continue
                for attr, child in block.named_children():
                    if isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3):
                        members.append((f"{names[id(block)]}.{attr}", block, attr))
            groups.append((layer_name, members))
        return groups
    raise ValueError(
        f"convert_model supports timm ConvNeXt and ResNet models, got {type(model).__name__}; "
        "add its block type to tsdcls.dcls.convert._targets"
    )


def convert_model(
    model: nn.Module,
    variant: Variant,
    kernel_count: int,
    dilated_kernel_size: int,
    share_positions_per_stage: bool = False,
) -> ConversionReport:
    """Replace, in place, the spatial convs of a timm ConvNeXt (depthwise 7x7) or ResNet (3x3).

    Args:
        model: a timm ``ConvNeXt`` or ``ResNet`` instance.
        variant: "dense" (unchanged baseline), "dilated" (fixed k x k grid with dilation, see
            ``dilated_grid``), "dcls_v0" (bilinear), "dcls_gauss" (Gaussian), "dcls_frozen"
            (bilinear with random positions that are not learned).
        kernel_count: taps per kernel (34 for ConvNeXt-T, 40 for S/B).
        dilated_kernel_size: side of the DCLS grid (17 in the paper).
        share_positions_per_stage: one position tensor per stage, as the ConvNeXt-dcls models do
            (and, for "dcls_gauss", one SIG tensor per stage with it, as the authors publish).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if kernel_count < 1 or dilated_kernel_size < 1:
        raise ValueError(f"kernel_count ({kernel_count}) and dilated_kernel_size ({dilated_kernel_size}) must be >= 1")
    params_before = count_parameters(model)
    grid, dilation = dilated_grid(kernel_count, dilated_kernel_size)
    report = ConversionReport(
        model=type(model).__name__,
        variant=variant,
        kernel_count=kernel_count,
        dilated_kernel_size=dilated_kernel_size,
        share_positions_per_stage=share_positions_per_stage,
        params_before=params_before,
        params_after=params_before,
        trainable_params_after=count_parameters(model, trainable_only=True),
        replaced=0,
        taps_per_kernel=grid * grid if variant == "dilated" else kernel_count,
    )
    groups = _targets(model)
    if variant == "dense":
        report.notes.append("dense baseline: model left unchanged")
        return report
    if variant == "dilated":
        report.notes.append(
            f"dilated: {grid}x{grid} = {grid * grid} taps (nearest square to {kernel_count}), "
            f"dilation {dilation}, span {dilation * (grid - 1) + 1} (DCLS grid {dilated_kernel_size})"
        )
    for _stage_name, members in groups:
        shared: nn.Parameter | None = None
        shared_sig: nn.Parameter | None = None
        for qual_name, parent, attr in members:
            old = getattr(parent, attr)
            if old.dilation != (1, 1) or old.kernel_size[0] != old.kernel_size[1] or old.stride[0] != old.stride[1]:
                report.notes.append(f"{qual_name}: skipped (dilation/non-square/anisotropic stride unsupported)")
                continue
            if share_positions_per_stage and variant != "dilated" and shared is None:
                shared = new_positions(2, old.out_channels, old.in_channels // old.groups, kernel_count, dilated_kernel_size)
                shared.data = shared.data.to(device=old.weight.device, dtype=old.weight.dtype)
                if variant == "dcls_gauss":
                    shared_sig = new_sigma(2, old.out_channels, old.in_channels // old.groups, kernel_count)
                    shared_sig.data = shared_sig.data.to(device=old.weight.device, dtype=old.weight.dtype)
            new = _new_conv(old, variant, kernel_count, dilated_kernel_size, shared, shared_sig)
            setattr(parent, attr, new)
            report.layers.append(
                LayerChange(
                    name=qual_name,
                    before=f"Conv2d {old.in_channels}->{old.out_channels} k{old.kernel_size[0]} s{old.stride[0]} g{old.groups}",
                    after=f"{type(new).__name__} {new.extra_repr()}",
                    params_before=_module_params(old),
                    params_after=_module_params(new),
                    shared_positions=shared is not None,
                )
            )
            report.replaced += 1
    report.params_after = count_parameters(model)
    report.trainable_params_after = count_parameters(model, trainable_only=True)
    if variant == "dcls_frozen":
        report.notes.append("dcls_frozen: positions are buffers in effect (requires_grad False), counted in params_after, not in trainable_params_after")
    return report


def init_dcls_like_convnext_(model: nn.Module, std: float = 0.02) -> None:
    """ConvNeXt(-dcls) init for DCLS layers: trunc-normal(0.02) weights, zero bias."""
    for module in dcls_modules(model):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------- timm registrations
def _build(
    base: str,
    kernel_count: int,
    dilated_kernel_size: int,
    share: bool,
    pretrained: bool,
    kwargs: dict[str, Any],
) -> nn.Module:
    if pretrained:
        raise ValueError(f"{base} DCLS variants have no offline pretrained weights; use pretrained=False")
    variant = kwargs.pop("dcls_variant", "dcls_v0")
    kernel_count = int(kwargs.pop("kernel_count", kernel_count))
    dilated_kernel_size = int(kwargs.pop("dilated_kernel_size", dilated_kernel_size))
    share = bool(kwargs.pop("share_positions_per_stage", share))
    model = timm.create_model(base, pretrained=False, **kwargs)
    report = convert_model(model, variant, kernel_count, dilated_kernel_size, share_positions_per_stage=share)
    if isinstance(model, ConvNeXt):
        init_dcls_like_convnext_(model)
    model.dcls_report = report  # type: ignore[attr-defined]
    return model


@register_model
def convnext_tiny_dcls(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ConvNeXt-T-dcls (paper): 34 taps in 17x17, positions shared per stage. kwargs:
    dcls_variant, kernel_count, dilated_kernel_size, share_positions_per_stage, timm kwargs."""
    return _build("convnext_tiny", 34, 17, True, pretrained, kwargs)


@register_model
def convnext_tiny_dcls_gauss(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ConvNeXt-T-Gauss (DCLS with Gaussian interpolation, as published): 26 taps in 23x23,
    positions and widths shared per stage; iso-parameter with dense ConvNeXt-T."""
    kwargs.setdefault("dcls_variant", "dcls_gauss")
    return _build("convnext_tiny", GAUSS_TINY_TAPS, GAUSS_TINY_DKS, True, pretrained, kwargs)


@register_model
def convnext_small_dcls(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ConvNeXt-S-dcls (paper): 40 taps in 17x17, positions shared per stage."""
    return _build("convnext_small", 40, 17, True, pretrained, kwargs)


@register_model
def convnext_base_dcls(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ConvNeXt-B-dcls (paper): 40 taps in 17x17, positions shared per stage."""
    return _build("convnext_base", 40, 17, True, pretrained, kwargs)


@register_model
def convnext_atto_dcls(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm's 3.7M ConvNeXt-atto with the ConvNeXt-T DCLS setting (CPU-sized experiments)."""
    return _build("convnext_atto", 34, 17, True, pretrained, kwargs)


@register_model
def test_convnext_dcls(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm's tiny test_convnext with the ConvNeXt-T DCLS setting (unit tests)."""
    return _build("test_convnext", 34, 17, True, pretrained, kwargs)


@register_model
def resnet50_dcls(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 with DCLS 3x3 replacements: 3 taps in a 7x7 grid, positions per layer, which
    keeps the count exactly equal (3 weights + 2 x 3 positions = 9 per channel pair)."""
    return _build("resnet50", 3, 7, False, pretrained, kwargs)


@register_model
def resnet18_dcls(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 with the resnet50_dcls setting (CPU-sized experiments)."""
    return _build("resnet18", 3, 7, False, pretrained, kwargs)


def paper_parameter_counts() -> list[dict[str, Any]]:
    """Dense vs DCLS parameter counts of the paper's ConvNeXt-T/S/B and ResNet-50 (no forward)."""
    rows = []
    for dcls_name, base in (
        ("convnext_tiny_dcls", "convnext_tiny"),
        ("convnext_small_dcls", "convnext_small"),
        ("convnext_base_dcls", "convnext_base"),
        ("resnet50_dcls", "resnet50"),
    ):
        with torch.device("meta"):
            model = timm.create_model(dcls_name)
            dense = count_parameters(timm.create_model(base))
        report: ConversionReport = model.dcls_report
        rows.append({"model": dcls_name, "dense_params": dense, "dcls_params": report.params_after,
                     "delta": report.params_after - dense, "replaced": report.replaced,
                     "kernel_count": report.kernel_count, "dilated_kernel_size": report.dilated_kernel_size})
    return rows
