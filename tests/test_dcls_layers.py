"""DCLS layers: init, clamp, shared positions, device, and the convolution algorithms vs F.conv2d."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from tsdcls.dcls import (
    Dcls1d,
    Dcls2d,
    clamp_dcls_parameters,
    dcls_conv,
    dcls_modules,
    new_positions,
    position_parameters,
)
from tsdcls.dcls.kernels import plan_conv


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def test_parameter_shapes_names_and_flag() -> None:
    layer = Dcls2d(8, 16, 5, 9, groups=4, version="gauss")
    assert layer.is_dcls is True
    assert layer.weight.shape == (16, 2, 5)
    assert layer.P.shape == (2, 16, 2, 5)
    assert layer.SIG.shape == (2, 16, 2, 5) and layer.sigma is layer.SIG
    assert layer.construct_kernel().shape == (16, 2, 9, 9)
    assert Dcls2d(4, 4, 3, 7, version="v0").SIG is None
    assert Dcls1d(4, 4, 3, 7).P.shape == (1, 4, 4, 3)
    assert {n for n, _ in layer.named_parameters()} == {"weight", "P", "SIG", "bias"}


def test_init_statistics_match_the_paper() -> None:
    torch.manual_seed(0)
    layer = Dcls2d(256, 256, 34, 17, groups=256, version="gauss", sigma_init=0.23)
    positions = layer.P.detach()
    assert abs(float(positions.mean())) < 0.02
    assert abs(float(positions.std()) - 0.5) < 0.02  # N(0, 0.5); clamp at +-8 never bites
    # kaiming-uniform(a=sqrt(5)) on fan_in = 1 * 34 -> U(-1/sqrt(34), 1/sqrt(34))
    bound = 1 / 34**0.5
    weight = layer.weight.detach()
    assert float(weight.abs().max()) <= bound + 1e-6
    assert abs(float(weight.std()) - bound / 3**0.5) < 0.05 * bound
    assert torch.all(layer.SIG == 0.23)


def test_init_clamps_small_grids() -> None:
    torch.manual_seed(0)
    layer = Dcls2d(64, 64, 50, 3, groups=64)  # lim = 1: N(0, 0.5) often exceeds it
    assert float(layer.P.detach().abs().max()) == 1.0


def test_clamp_parameters_limits_positions() -> None:
    layer = Dcls2d(4, 4, 3, (7, 5), groups=4)
    with torch.no_grad():
        layer.P.fill_(100.0)
        layer.P[0, 0, 0, 0] = -100.0
    layer.clamp_parameters()
    assert float(layer.P[0].detach().max()) == 3.0 and float(layer.P[0].detach().min()) == -3.0
    assert float(layer.P[1].detach().max()) == 2.0


def test_shared_positions_are_one_parameter() -> None:
    shared = new_positions(2, 8, 1, 6, 9)
    model = torch.nn.Sequential(
        Dcls2d(8, 8, 6, 9, groups=8, shared_positions=shared),
        Dcls2d(8, 8, 6, 9, groups=8, shared_positions=shared),
    )
    assert model[0].P is model[1].P is shared
    assert position_parameters(model) == [shared]
    model(torch.randn(1, 8, 10, 10)).sum().backward()
    assert shared.grad is not None
    with torch.no_grad():
        shared.fill_(50.0)
    clamp_dcls_parameters(model)
    assert float(shared.detach().max()) == 4.0
    with pytest.raises(ValueError, match="shared_positions"):
        Dcls2d(8, 8, 5, 9, groups=8, shared_positions=shared)


def test_kernel_is_built_on_the_parameters_device_without_cached_indices() -> None:
    layer = Dcls2d(4, 4, 3, 7, groups=4, version="gauss")
    kernel = layer.construct_kernel()
    assert kernel.device == layer.weight.device
    layer = layer.to(torch.float64)  # a moved module rebuilds everything from its parameters
    out = layer(torch.randn(1, 4, 9, 9, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert not [k for k, v in vars(layer).items() if isinstance(v, torch.Tensor)]
    with torch.device("meta"):
        on_meta = Dcls2d(4, 4, 3, 7, groups=4)
    assert on_meta.construct_kernel().device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_kernel_follows_module_to_cuda() -> None:
    layer = Dcls2d(4, 4, 3, 7, groups=4)
    layer(torch.randn(1, 4, 9, 9))
    layer = layer.cuda()
    out = layer(torch.randn(1, 4, 9, 9, device="cuda"))
    assert out.device.type == "cuda"


CONV_CASES = [
    # (c_in, c_out, groups, k, stride, padding, size)
    (6, 6, 6, 7, 1, "same", (13, 13)),
    (6, 6, 6, 8, 1, "same", (12, 15)),  # even kernel: asymmetric 'same'
    (6, 6, 6, 17, 1, 8, (9, 11)),  # kernel larger than the map
    (6, 6, 6, 17, 1, 8, (5, 5)),  # only the central 9x9 taps reach the map: cropped
    (4, 4, 4, 9, 2, 4, (15, 14)),  # stride 2, odd/even sizes
    (4, 8, 4, 5, 3, 1, (16, 17)),  # multiplier, stride 3
    (4, 6, 2, 7, 1, 0, (12, 12)),  # grouped, valid
    (3, 5, 1, 10, 2, (2, 5), (20, 19)),  # dense, even kernel, anisotropic padding
    (6, 6, 6, 17, 1, 8, (24, 20)),  # ConvNeXt-DCLS-like: large kernel, map of 480 pixels
    (6, 6, 6, 10, 1, "same", (16, 11)),  # even large kernel: asymmetric padding
]
# What algorithm="auto" runs on CPU for each case (kernels.choose_algorithm's thresholds), and the
# kernel after the crop: small kernels oneDNN, small depthwise maps Toeplitz matmul, large kernels
# 'mixed' (fp32 depthwise stride 1: oneDNN channels_last + FFT kernel gradient), else FFT.
AUTO_ON_CPU = ["direct", "direct", "matmul", "matmul", "fft", "direct", "direct", "direct", "mixed", "mixed"]
CROPPED = [(7, 7), (8, 8), (17, 17), (9, 9), (9, 9), (5, 5), (7, 7), (10, 10), (17, 17), (10, 10)]


def _conv_case(case: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple]:
    """Input, kernel, bias (all requiring grad), F.conv2d's output, and dcls_conv's arguments."""
    c_in, c_out, groups, k, stride, padding, size = case
    torch.manual_seed(0)
    x = torch.randn(2, c_in, *size, requires_grad=True)
    kernel = torch.randn(c_out, c_in // groups, k, k, requires_grad=True)
    bias = torch.randn(c_out, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: even 'same' kernels copy the input
        expected = F.conv2d(x, kernel, bias, stride, padding, 1, groups)
    return x, kernel, bias, expected, ((stride, stride), padding, groups)


def _assert_equals_conv2d(got: torch.Tensor, expected: torch.Tensor, inputs: tuple) -> None:
    assert got.shape == expected.shape
    assert _rel(got, expected) < 1e-5
    grad = torch.randn_like(expected)
    want = torch.autograd.grad(expected, inputs, grad, retain_graph=True)
    have = torch.autograd.grad(got, inputs, grad, retain_graph=True)
    for w, h in zip(want, have, strict=True):
        assert _rel(h, w) < 1e-5


CASE_IDS = [f"k{c[3]}-s{c[4]}-g{c[2]}-p{c[5]}-n{c[6][0]}" for c in CONV_CASES]


@pytest.mark.parametrize("case", CONV_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("algorithm", ["fft", "matmul", "direct", "mixed"])
def test_conv_algorithms_equal_conv2d(case: tuple, algorithm: str) -> None:
    x, kernel, bias, expected, args = _conv_case(case)
    if algorithm == "matmul" and kernel.shape[1] != 1:
        pytest.skip("matmul is for one input channel per group")
    if algorithm == "mixed" and (args[0] != (1, 1) or kernel.shape[0] != x.shape[1] or args[2] != x.shape[1]):
        with pytest.raises(ValueError, match="'mixed' cannot run"):
            plan_conv(x, kernel, args[0], args[1], args[2], algorithm)
        return
    assert plan_conv(x, kernel, args[0], args[1], args[2], algorithm).algorithm == algorithm  # forced
    _assert_equals_conv2d(dcls_conv(x, kernel, bias, *args, algorithm), expected, (x, kernel, bias))


@pytest.mark.parametrize(("case", "auto", "cropped"), list(zip(CONV_CASES, AUTO_ON_CPU, CROPPED, strict=True)),
                         ids=[f"{i}-{a}" for i, a in zip(CASE_IDS, AUTO_ON_CPU, strict=True)])
def test_auto_dispatches_as_documented_and_equals_conv2d(case: tuple, auto: str, cropped: tuple) -> None:
    """'auto' on CPU: the planned algorithm and crop are the documented ones, the output is
    bit-for-bit the forced algorithm's (so that is what ran), and it equals F.conv2d."""
    x, kernel, bias, expected, args = _conv_case(case)
    plan = plan_conv(x, kernel, *args, "auto")
    assert (plan.algorithm, plan.kernel_shape) == (auto, cropped)
    got = dcls_conv(x, kernel, bias, *args, "auto")
    assert torch.equal(got, dcls_conv(x, kernel, bias, *args, auto))
    _assert_equals_conv2d(got, expected, (x, kernel, bias))


def test_auto_cases_cover_every_cpu_algorithm() -> None:
    assert set(AUTO_ON_CPU) == {"direct", "fft", "matmul", "mixed"}
    layer = Dcls2d(6, 6, 8, 17, groups=6)  # the layer reports what its forward runs
    with torch.no_grad():
        layer.P.uniform_(-8, 8)
    assert layer.conv_plan(torch.randn(1, 6, 28, 28)).algorithm == "mixed"
    assert layer.double().conv_plan(torch.randn(1, 6, 28, 28, dtype=torch.float64)).algorithm == "fft"
    layer = layer.float()
    assert layer.conv_plan(torch.randn(1, 6, 7, 7)).algorithm == "matmul"
    assert layer.conv_plan(torch.randn(1, 6, 7, 7)).kernel_shape == (13, 13)  # 17x17 on 7x7: 13x13 reach it


@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
@pytest.mark.parametrize("crop", [None, [(2, 9), (0, 4)]], ids=["full", "support"])
def test_mixed_keeps_the_layout_and_equals_conv2d(layout: str, crop: list | None) -> None:
    """'mixed' on a channels_last input (as inside a timm ConvNeXt) and on a support crop that
    leaves output rows reading only padding (negative padding of the input gradient's conv)."""
    torch.manual_seed(3)
    x = torch.randn(3, 5, 13, 11)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    kernel = torch.zeros(5, 1, 17, 17)
    rows, cols = crop or [(0, 17), (0, 17)]
    kernel[:, :, rows[0]:rows[1], cols[0]:cols[1]] = torch.randn(5, 1, rows[1] - rows[0], cols[1] - cols[0])
    kernel.requires_grad_(True)
    bias = torch.randn(5, requires_grad=True)
    got = dcls_conv(x, kernel, bias, (1, 1), "same", 5, "mixed", crop)
    if crop is None:  # 17x17 on 143 pixels: what 'auto' runs
        assert dcls_conv(x, kernel, bias, (1, 1), "same", 5, "auto").grad_fn.name() == "_MixedDepthwiseBackward"
    assert got.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    expected = F.conv2d(x, kernel, bias, 1, "same", 1, 5)
    assert _rel(got, expected) < 1e-5
    grad = torch.randn_like(expected)
    want = torch.autograd.grad(expected, (x, kernel, bias), grad)
    have = torch.autograd.grad(got, (x, kernel, bias), grad)
    inside = (slice(None), slice(None), slice(*rows), slice(*cols))  # outside the support: not computed
    for name, w, h in zip(("x", "kernel", "bias"), want, have, strict=True):
        assert _rel(h[inside] if name == "kernel" else h, w[inside] if name == "kernel" else w) < 1e-5, name


def test_fft_conv_1d_equals_conv1d() -> None:
    x = torch.randn(3, 5, 40, requires_grad=True)
    kernel = torch.randn(5, 1, 21, requires_grad=True)
    expected = F.conv1d(x, kernel, None, 2, 10, 1, 5)
    got = dcls_conv(x, kernel, None, (2,), 10, 5, "fft")
    assert _rel(got, expected) < 1e-5
    gx_w, gk_w = torch.autograd.grad(expected.sum(), (x, kernel))
    gx_h, gk_h = torch.autograd.grad(got.sum(), (x, kernel))
    assert _rel(gx_h, gx_w) < 1e-5 and _rel(gk_h, gk_w) < 1e-5


def test_fft_conv_keeps_low_precision_dtype() -> None:
    x = torch.randn(1, 4, 12, 12).to(torch.bfloat16)
    kernel = torch.randn(4, 1, 9, 9).to(torch.bfloat16)
    out = dcls_conv(x, kernel, None, (1, 1), "same", 4, "fft")
    assert out.dtype == torch.bfloat16
    expected = F.conv2d(x.float(), kernel.float(), None, 1, "same", 1, 4)
    assert _rel(out.float(), expected) < 2e-2


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="version"):
        Dcls2d(4, 4, 3, 7, version="v9")
    with pytest.raises(ValueError, match="divisible"):
        Dcls2d(4, 6, 3, 7, groups=4)
    with pytest.raises(ValueError, match="stride"):
        Dcls2d(4, 4, 3, 7, stride=2, padding="same")
    with pytest.raises(ValueError, match="algorithm"):
        dcls_conv(torch.randn(1, 2, 5, 5), torch.randn(2, 1, 3, 3), None, (1, 1), 1, 2, "winograd")  # type: ignore[arg-type]


SUPPORT_CASES = [
    # (channels, size, kernel_count, dks, stride, padding, position spread)
    (6, 28, 8, 17, 1, "same", 0.5),   # taps near the centre: a small crop, FFT -> direct
    (6, 7, 8, 17, 1, 8, 0.5),         # small map: matmul/direct on the crop
    (6, 3, 8, 17, 1, 8, 3.0),         # tiny map, spread taps
    (4, 11, 3, 7, 2, 3, 1.0),         # strided (ResNet-style)
    (4, 12, 5, 8, 1, "same", 9.0),    # even grid, taps clamped to the edges: the full grid
    (4, 9, 2, 9, 1, 0, 0.3),          # 'valid': taps may reach no output row at all
]


@pytest.mark.parametrize("case", SUPPORT_CASES, ids=lambda c: f"c{c[0]}-n{c[1]}-k{c[3]}-s{c[4]}-p{c[5]}-sd{c[6]}")
@pytest.mark.parametrize("algorithm", ["auto", "direct"])
def test_support_crop_is_exact_for_output_and_gradients(case: tuple, algorithm: str) -> None:
    """Cropping a bilinear kernel to its taps' corners changes neither the output nor any grad."""
    channels, size, count, dks, stride, padding, spread = case
    torch.manual_seed(0)
    layer = Dcls2d(channels, channels, count, dks, stride=stride, padding=padding, groups=channels,
                   version="v0", algorithm=algorithm).double()
    with torch.no_grad():
        layer.P.normal_(0, spread)
    layer.clamp_parameters()
    support = layer.kernel_support()
    assert support is not None
    x = torch.randn(2, channels, size, size, dtype=torch.float64, requires_grad=True)
    results = []
    for crop in (support, None):
        for tensor in (x, layer.weight, layer.P, layer.bias):
            tensor.grad = None
        kernel = layer.construct_kernel()
        out = dcls_conv(x, kernel, layer.bias, layer.stride, layer.padding, layer.groups, algorithm, crop)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append([out.detach(), x.grad.clone(), layer.weight.grad.clone(), layer.P.grad.clone(), layer.bias.grad.clone()])
    reference = F.conv2d(x.detach(), layer.construct_kernel().detach(), layer.bias.detach(), stride,
                         padding, 1, channels)
    assert _rel(results[0][0], reference) < 1e-10
    for name, cropped, full in zip(("output", "x", "weight", "P", "bias"), *results, strict=True):
        assert cropped.shape == full.shape, name
        assert _rel(cropped, full) < 1e-10, name


def test_support_is_none_for_gauss_and_covers_every_corner() -> None:
    assert Dcls2d(4, 4, 3, 9, groups=4, version="gauss").kernel_support() is None
    torch.manual_seed(1)
    layer = Dcls2d(4, 4, 6, 9, groups=4, version="v0")
    (r_lo, r_hi), (c_lo, c_hi) = layer.kernel_support()
    kernel = layer.construct_kernel().detach()
    rows, cols = kernel.abs().sum(dim=(0, 1, 3)).nonzero(), kernel.abs().sum(dim=(0, 1, 2)).nonzero()
    assert r_lo <= int(rows.min()) and int(rows.max()) < r_hi and r_hi - r_lo < 9
    assert c_lo <= int(cols.min()) and int(cols.max()) < c_hi


# --------------------------------------------------------------------------- Gaussian variant
def test_convnext_t_gauss_is_iso_parameter_with_sigma_shared_per_stage() -> None:
    import timm

    from tsdcls.dcls.convert import count_parameters

    with torch.device("meta"):
        dense = count_parameters(timm.create_model("convnext_tiny"))
        gauss = timm.create_model("convnext_tiny_dcls_gauss")
    layers = dcls_modules(gauss)
    assert {(m.version, m.kernel_count, m.dilated_kernel_size) for m in layers} == {("gauss", 26, (23, 23))}
    assert len({id(m.SIG) for m in layers}) == 4 and len({id(m.P) for m in layers}) == 4  # one per stage
    assert abs(count_parameters(gauss) - dense) / dense < 1e-3  # 28,586,536 vs 28,589,128


def test_gauss_sigma_and_positions_train_in_the_position_group() -> None:
    import timm

    from tsdcls.dcls.train import TrainConfig, param_groups

    torch.manual_seed(0)
    model = timm.create_model("test_convnext_dcls", dcls_variant="dcls_gauss", num_classes=3)
    cfg = TrainConfig(weight_decay=0.05, position_lr_scale=5.0)
    groups = {g["group_name"]: g for g in param_groups(model, cfg)}
    position_ids = {id(p) for p in groups["positions"]["params"]}
    expected = {id(m.P) for m in dcls_modules(model)} | {id(m.SIG) for m in dcls_modules(model)}
    assert position_ids == expected and position_ids == {id(p) for p in position_parameters(model)}
    assert groups["positions"]["weight_decay"] == 0.0 and groups["positions"]["lr_scale"] == 5.0
    assert not position_ids & {id(p) for p in groups["decay"]["params"]}
    # one optimiser step moves the shared widths, and they stay shared
    sig_before = [m.SIG.detach().clone() for m in dcls_modules(model)]
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "lr_scale"} for g in groups.values()], lr=1e-2)
    model(torch.randn(2, 3, 32, 32)).logsumexp(1).sum().backward()
    optimizer.step()
    layers = dcls_modules(model)
    assert all(not torch.equal(m.SIG, before) for m, before in zip(layers, sig_before, strict=True))
    assert all((a.SIG is b.SIG) == (a.P is b.P) for a in layers for b in layers)
