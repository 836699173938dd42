"""Parity with the authors' dcls 0.1.1: same parameters -> same kernel, output and gradients."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from tsdcls.dcls import Dcls1d, Dcls2d

logging.getLogger().setLevel(logging.ERROR)  # dcls warns about its CUDA kernel on every init
reference = pytest.importorskip("DCLS.construct.modules")

TOL = 1e-5


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _randomise(ref: torch.nn.Module, dks: tuple[int, ...], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ref.P.copy_((torch.rand(ref.P.shape, generator=gen) * 2 - 1) * (max(dks) // 2 + 1))
        ref.clamp_parameters()
        if ref.SIG is not None:
            ref.SIG.copy_(torch.rand(ref.SIG.shape, generator=gen) * 2 - 1)


def _compare(ref: torch.nn.Module, ours: torch.nn.Module, x: torch.Tensor) -> None:
    ours.load_state_dict(ref.state_dict())
    x_ref = x.clone().requires_grad_(True)
    x_ours = x.clone().requires_grad_(True)
    y_ref = ref(x_ref)
    y_ours = ours(x_ours)
    assert y_ours.shape == y_ref.shape
    assert _rel(y_ours, y_ref) < TOL
    grad = torch.randn_like(y_ref)
    (y_ref * grad).sum().backward()
    (y_ours * grad).sum().backward()
    assert _rel(x_ours.grad, x_ref.grad) < TOL
    ours_params = dict(ours.named_parameters())
    for name, param in ref.named_parameters():
        assert ours_params[name].grad is not None, name
        assert _rel(ours_params[name].grad, param.grad) < TOL, name


CASES_2D = [
    # (dks, c_in, c_out, groups, stride, padding, taps)
    (7, 6, 6, 6, 1, 3, 5),  # depthwise, "same"
    (6, 4, 4, 4, 1, 3, 4),  # even grid: taps at the clamp limit lose corners
    (9, 4, 8, 4, 2, 4, 6),  # depthwise with multiplier 2, stride 2
    (5, 3, 5, 1, 2, 1, 3),  # dense groups=1, stride 2, small padding
    ((7, 5), 4, 4, 2, 1, (3, 2), 4),  # non-square grid, grouped
]


@pytest.mark.parametrize("version", ["v0", "gauss"])
@pytest.mark.parametrize("case", CASES_2D, ids=lambda c: f"dks{c[0]}-g{c[3]}-s{c[4]}")
@pytest.mark.parametrize("algorithm", ["direct", "fft", "matmul", "mixed"])
def test_dcls2d_matches_reference(version: str, case: tuple, algorithm: str) -> None:
    dks, c_in, c_out, groups, stride, padding, taps = case
    if algorithm == "matmul" and c_in != groups:
        pytest.skip("matmul algorithm is for one input channel per group")
    if algorithm == "mixed" and not (c_in == c_out == groups and stride == 1):
        pytest.skip("mixed is for depthwise stride-1 layers")
    torch.manual_seed(0)
    ref = reference.Dcls2d(
        c_in, c_out, kernel_count=taps, stride=stride, padding=padding, dilated_kernel_size=dks,
        groups=groups, version=version, use_implicit_gemm=False,
    )
    dks_t = dks if isinstance(dks, tuple) else (dks, dks)
    _randomise(ref, dks_t, seed=1)
    ours = Dcls2d(c_in, c_out, taps, dks, stride=stride, padding=padding, groups=groups, version=version, algorithm=algorithm)
    _compare(ref, ours, torch.randn(2, c_in, 11, 10))
    # the dense kernels agree too
    with torch.no_grad():
        assert _rel(ours.construct_kernel(), ref.DCK(ref.weight, ref.P, ref.SIG)) < TOL


@pytest.mark.parametrize("version", ["v0", "gauss"])
@pytest.mark.parametrize("algorithm", ["direct", "fft", "matmul"])
def test_dcls1d_matches_reference(version: str, algorithm: str) -> None:
    torch.manual_seed(0)
    ref = reference.Dcls1d(4, 4, kernel_count=3, padding=4, dilated_kernel_size=9, groups=4, version=version)
    _randomise(ref, (9,), seed=2)
    ours = Dcls1d(4, 4, 3, 9, padding=4, groups=4, version=version, algorithm=algorithm)
    _compare(ref, ours, torch.randn(3, 4, 20))


def test_convnext_t_sized_layer_matches_reference_with_auto_algorithm() -> None:
    """The benchmark's configuration (17x17 grid, 34 taps, depthwise), smaller map and batch."""
    torch.manual_seed(0)
    ref = reference.Dcls2d(16, 16, kernel_count=34, padding=8, dilated_kernel_size=17, groups=16, version="v0", use_implicit_gemm=False)
    ours = Dcls2d(16, 16, 34, 17, groups=16)
    _compare(ref, ours, torch.randn(2, 16, 24, 24))


@pytest.mark.parametrize(("algorithm", "runs"), [("auto", "mixed"), ("fft", "fft")])
@pytest.mark.parametrize(("version", "taps", "dks"), [("v0", 34, 17), ("gauss", 26, 23)])
def test_convnext_sized_layer_with_spread_taps_matches_reference_through_fft(
        version: str, taps: int, dks: int, algorithm: str, runs: str) -> None:
    """Trained-like taps spread over the whole grid (the support crop is then the full grid),
    at ConvNeXt-T stage-1 size (96 channels, 56x56), through both CPU paths that take a large
    kernel: the default ('mixed': oneDNN + FFT kernel gradient) and the all-FFT one."""
    torch.manual_seed(5)
    ref = reference.Dcls2d(96, 96, kernel_count=taps, padding=dks // 2, dilated_kernel_size=dks, groups=96,
                           version=version, use_implicit_gemm=False)
    _randomise(ref, (dks, dks), seed=6)
    ours = Dcls2d(96, 96, taps, dks, groups=96, version=version, algorithm=algorithm)
    ours.load_state_dict(ref.state_dict())
    support = ours.kernel_support() or [(0, dks), (0, dks)]
    area = (support[0][1] - support[0][0]) * (support[1][1] - support[1][0])
    assert area >= (dks - 2) ** 2  # spread: (nearly) the whole grid, not the ~6x6 of init taps
    x = torch.randn(2, 96, 56, 56)
    plan = ours.conv_plan(x)  # what ours' forward runs on this input
    assert plan.algorithm == runs and math.prod(plan.kernel_shape) == area
    _compare(ref, ours, x)
