"""convert_model on real timm models, and the registered DCLS timm names."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from tsdcls.dcls import (
    VARIANTS,
    Dcls2d,
    GridDilatedConv2d,
    convert_model,
    count_parameters,
    dilated_grid,
)
from tsdcls.dcls.convert import paper_parameter_counts


def _tiny_input() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32)


def _depthwise_convs(model: nn.Module) -> list[str]:
    """Names of the plain depthwise nn.Conv2d of a model, found by walking it (not from timm's config)."""
    return [name for name, m in model.named_modules()
            if type(m) is nn.Conv2d and m.groups > 1 and m.groups == m.in_channels == m.out_channels]


def _resnet_spatial_convs(model: nn.Module) -> list[str]:
    """Names of the plain 3x3 nn.Conv2d inside ResNet's residual stages (layer1..layer4)."""
    return [name for name, m in model.named_modules()
            if type(m) is nn.Conv2d and m.kernel_size == (3, 3) and name.startswith("layer")]


@pytest.mark.parametrize("variant", VARIANTS)
def test_convnext_atto_conversion(variant: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model("convnext_atto")
    x = _tiny_input()
    shape = model(x).shape
    dense_params = count_parameters(model)
    depthwise = _depthwise_convs(model)
    assert len(depthwise) == 12  # convnext_atto: depths (2, 2, 6, 2)
    share = variant != "dilated"
    report = convert_model(model, variant, kernel_count=34, dilated_kernel_size=17, share_positions_per_stage=share)
    out = model(x)
    assert out.shape == shape
    out.sum().backward()
    assert report.params_before == dense_params
    assert report.params_after == count_parameters(model)
    if variant == "dense":
        assert report.replaced == 0 and report.params_after == dense_params
        return
    assert [layer.name for layer in report.layers] == depthwise and report.replaced == len(depthwise)
    assert _depthwise_convs(model) == []  # none left behind
    new_type = GridDilatedConv2d if variant == "dilated" else Dcls2d
    assert all(type(model.get_submodule(name)) is new_type for name in depthwise)
    dims_by_block = [40] * 2 + [80] * 2 + [160] * 6 + [320] * 2
    if variant == "dilated":
        grid, dilation = dilated_grid(34, 17)
        assert (grid, dilation) == (6, 3)
        assert all(isinstance(b.conv_dw, GridDilatedConv2d) for s in model.stages for b in s.blocks)
        expected = dense_params + sum(d * (36 - 49) for d in dims_by_block)
        assert report.params_after == expected
        return
    layers = [b.conv_dw for s in model.stages for b in s.blocks]
    assert all(isinstance(layer, Dcls2d) for layer in layers)
    # one shared position tensor per stage: 34 weights per block + 68 positions per stage
    expected = dense_params + sum(d * (34 - 49) for d in dims_by_block) + 68 * (40 + 80 + 160 + 320)
    if variant == "dcls_gauss":
        expected += 68 * (40 + 80 + 160 + 320)  # SIG: 2 per tap, shared per stage with P
        assert all(layer.version == "gauss" for layer in layers)
        assert layers[0].SIG is layers[1].SIG and layers[1].SIG is not layers[2].SIG
    assert report.params_after == expected
    assert layers[0].P is layers[1].P and layers[1].P is not layers[2].P
    if variant == "dcls_frozen":
        assert not layers[0].P.requires_grad and layers[0].P.grad is None
        assert report.trainable_params_after == expected - 68 * (40 + 80 + 160 + 320)
    else:
        assert layers[0].P.grad is not None


@pytest.mark.parametrize("variant", ["dilated", "dcls_v0"])
def test_resnet18_conversion(variant: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model("resnet18")
    x = _tiny_input()
    shape = model(x).shape
    before = count_parameters(model)
    spatial = _resnet_spatial_convs(model)
    report = convert_model(model, variant, kernel_count=3, dilated_kernel_size=7)
    assert model(x).shape == shape
    assert [layer.name for layer in report.layers] == spatial and report.replaced == len(spatial) == 16
    assert _resnet_spatial_convs(model) == []
    assert report.params_before == before
    if variant == "dcls_v0":
        assert report.params_after == before  # 3 weights + 2 x 3 positions = 3x3
    assert any(layer.name == "layer2.0.conv1" and " s2" in layer.before for layer in report.layers)


def test_unsupported_model_and_variant_raise() -> None:
    with pytest.raises(ValueError, match="ConvNeXt and ResNet"):
        convert_model(nn.Sequential(nn.Conv2d(3, 3, 3)), "dcls_v0", 5, 7)
    with pytest.raises(ValueError, match="variant"):
        convert_model(timm.create_model("test_convnext"), "sparse", 5, 7)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["test_convnext_dcls", "resnet18_dcls"])
def test_registered_timm_names_create_working_models(name: str) -> None:
    assert name in timm.list_models("*_dcls")
    model = timm.create_model(name, num_classes=7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    base = timm.create_model(name.removesuffix("_dcls"), num_classes=7)
    targets = _depthwise_convs(base) if "convnext" in name else _resnet_spatial_convs(base)
    layers = [n for n, m in model.named_modules() if isinstance(m, Dcls2d)]
    assert model.dcls_report.replaced == len(targets) == len(layers) > 0 and layers == targets
    gauss = timm.create_model(name, num_classes=7, dcls_variant="dcls_gauss")
    assert all(m.version == "gauss" for m in gauss.modules() if isinstance(m, Dcls2d))


def test_paper_parameter_counts_are_iso() -> None:
    rows = {row["model"]: row for row in paper_parameter_counts()}
    tiny = rows["convnext_tiny_dcls"]
    assert tiny["dense_params"] == 28_589_128
    # 34 x 6624 weights + 68 x 1440 shared positions vs 49 x 6624: 1440 fewer
    assert tiny["delta"] == -1440
    for dcls_name, row in rows.items():
        with torch.device("meta"):
            base = timm.create_model(dcls_name.removesuffix("_dcls"))
        targets = _depthwise_convs(base) if "convnext" in dcls_name else _resnet_spatial_convs(base)
        assert row["replaced"] == len(targets), dcls_name
    assert tiny["replaced"] == 18  # depths (3, 3, 9, 3)
    assert abs(rows["convnext_small_dcls"]["delta"]) < 1e-3 * rows["convnext_small_dcls"]["dense_params"]
    assert abs(rows["convnext_base_dcls"]["delta"]) < 1e-3 * rows["convnext_base_dcls"]["dense_params"]
    assert rows["resnet50_dcls"]["delta"] == 0


def test_even_grid_keeps_shapes_or_fails_clearly() -> None:
    model = timm.create_model("test_convnext", num_classes=5)
    convert_model(model, "dcls_v0", kernel_count=8, dilated_kernel_size=6, share_positions_per_stage=True)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)  # asymmetric 'same' padding
    with pytest.raises(ValueError, match="odd"):
        convert_model(timm.create_model("resnet18"), "dcls_v0", kernel_count=3, dilated_kernel_size=6)
