"""Interpreted Triton cases, collected only by tests/test_dcls_triton.py's subprocess (the file
name keeps the main pytest session from importing it: TRITON_INTERPRET=1 must be set before
``triton`` is first imported, and this process is started with it)."""

from __future__ import annotations

import logging
import os

import pytest
import torch
import torch.nn.functional as F

from tsdcls.dcls import Dcls2d
from tsdcls.dcls.kernels import dcls_conv, resolve_padding

if os.environ.get("TRITON_INTERPRET") != "1":
    raise RuntimeError("tests/triton_interpreted_cases.py needs TRITON_INTERPRET=1 before triton is imported; run tests/test_dcls_triton.py")

triton_dw = pytest.importorskip("tsdcls.dcls.triton_dw")
if triton_dw.triton is None:
    pytest.skip("triton is not importable", allow_module_level=True)

FP32_TOL = 1e-5
# bf16 keeps 8 mantissa bits: inputs, kernel and output each round by <= 2^-9 relative; the sums
# are fp32. 2e-2 of the largest magnitude bounds that with margin (measured ~6e-3).
BF16_TOL = 2e-2
FP16_TOL = 2e-3


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max() / b.detach().double().abs().max().clamp_min(1e-30))


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def _check_against_conv2d(x, kernel, bias, padding, run, tol: float, channels_last: bool = False) -> None:
    """Output and the gradients of input, kernel and bias of ``run`` vs fp64 F.conv2d."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours = _leaves(x, kernel, bias)
    ref = _leaves(x.double(), kernel.double(), bias.double())
    y = run(*ours)
    pads = resolve_padding(padding, kernel.shape[2:])
    y_ref = F.conv2d(F.pad(ref[0], (*pads[1], *pads[0])), ref[1], ref[2], groups=x.shape[1])
    assert y.shape == y_ref.shape and y.dtype == x.dtype
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn(y_ref.shape, dtype=torch.float64)
    (y.double() * grad).sum().backward()
    (y_ref * grad).sum().backward()
    assert _rel(y, y_ref) < tol, "output"
    for name, a, b in zip(("input", "kernel", "bias"), ours, ref, strict=True):
        assert _rel(a.grad, b.grad) < tol, name


CASES = [
    # (batch, channels, h, w, kh, kw, padding, channels_last)
    (3, 5, 9, 7, 5, 4, "same", False),  # even kernel width, non-square map, channel tail
    (1, 6, 4, 5, 7, 7, 3, True),  # map smaller than the kernel, channels_last
    (3, 7, 6, 8, 3, 5, (2, 1), False),  # integer pair padding (not 'same')
    (1, 3, 4, 3, 31, 4, "same", False),  # largest side, 31 > map: most cells read padding
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}c{c[1]}-{c[2]}x{c[3]}-k{c[4]}x{c[5]}-p{c[6]}-cl{int(c[7])}")
def test_depthwise_kernel_equals_conv2d_fp32(case: tuple) -> None:
    n, c, h, w, kh, kw, padding, channels_last = case
    torch.manual_seed(0)
    x, kernel, bias = torch.randn(n, c, h, w), torch.randn(c, 1, kh, kw), torch.randn(c)
    pads = resolve_padding(padding, (kh, kw))
    out_hw = (h + sum(pads[0]) - kh + 1, w + sum(pads[1]) - kw + 1)
    _check_against_conv2d(
        x, kernel, bias, padding, lambda a, k, b: triton_dw.depthwise_conv2d(a, k, b, pads, out_hw), FP32_TOL, channels_last
    )


@pytest.mark.parametrize(("dtype", "tol"), [(torch.bfloat16, BF16_TOL), (torch.float16, FP16_TOL)])
def test_low_precision_accumulates_in_fp32(dtype: torch.dtype, tol: float) -> None:
    torch.manual_seed(1)
    x, kernel, bias = torch.randn(2, 5, 8, 6), torch.randn(5, 1, 5, 5), torch.randn(5)
    x, kernel, bias = x.to(dtype), kernel.to(dtype), bias.to(dtype)
    run = lambda a, k, b: dcls_conv(a, k, b, (1, 1), "same", 5, "triton")  # noqa: E731
    _check_against_conv2d(x, kernel, bias, "same", run, tol, channels_last=True)


def test_device_support_bounds_the_loops_exactly() -> None:
    """Taps spread over part of a 17x17 grid: the uncropped kernel with the device-side support
    (shifted by the static crop of a map smaller than the grid) gives F.conv2d's output and the
    same gradients for input, weights, positions and bias (cells outside the support are zero
    and depend on no parameter, so skipping them is exact)."""
    torch.manual_seed(2)
    layer = Dcls2d(5, 5, 6, 17, groups=5, algorithm="triton")
    with torch.no_grad():
        layer.P[0].uniform_(-8, -2)  # rows in the upper part of the grid only
        layer.P[1].uniform_(1, 6)  # columns right of the centre
    support = layer.device_support()
    lo0, hi0, lo1, hi1 = support.tolist()
    assert lo0 <= 1 and hi0 < 17 and lo1 > 8 and hi1 <= 17  # a real crop
    x = torch.randn(1, 5, 6, 9)
    results = []
    for use_triton in (True, False):
        layer.zero_grad()
        xs = x.clone().requires_grad_(True)
        kernel = layer.construct_kernel()
        if use_triton:
            y = dcls_conv(xs, kernel, layer.bias, (1, 1), "same", 5, "triton", device_support=support)
        else:
            y = F.conv2d(xs, kernel, layer.bias, padding="same", groups=5)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append([y, xs.grad] + [p.grad.clone() for p in (layer.weight, layer.P, layer.bias)])
    for name, a, b in zip(("output", "input", "weight", "P", "bias"), *results, strict=True):
        assert _rel(a, b) < FP32_TOL, name


@pytest.mark.parametrize("version", ["v0", "gauss"])
def test_dcls2d_triton_matches_dcls_reference(version: str) -> None:
    reference = pytest.importorskip("DCLS.construct.modules")
    logging.getLogger().setLevel(logging.ERROR)  # dcls warns about its CUDA kernel on every init
    torch.manual_seed(3)
    ref = reference.Dcls2d(5, 5, kernel_count=4, padding=3, dilated_kernel_size=7, groups=5, version=version, use_implicit_gemm=False)
    with torch.no_grad():
        ref.P.uniform_(-3, 3)
        if ref.SIG is not None:
            ref.SIG.uniform_(-1, 1)
    ours = Dcls2d(5, 5, 4, 7, padding=3, groups=5, version=version, algorithm="triton")
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 5, 6)
    x_ref, x_ours = _leaves(x, x)
    y_ref, y_ours = ref(x_ref), ours(x_ours)
    grad = torch.randn_like(y_ref)
    (y_ref * grad).sum().backward()
    (y_ours * grad).sum().backward()
    assert _rel(y_ours, y_ref) < FP32_TOL
    assert _rel(x_ours.grad, x_ref.grad) < FP32_TOL
    ours_params = dict(ours.named_parameters())
    for name, param in ref.named_parameters():
        assert _rel(ours_params[name].grad, param.grad) < FP32_TOL, name




def test_forced_triton_falls_back_with_a_logged_reason(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(4)
    x, k = torch.randn(1, 3, 9, 9), torch.randn(3, 1, 5, 5)
    with caplog.at_level(logging.INFO, logger="tsdcls.dcls.kernels"):
        y = dcls_conv(x, k, None, (2, 2), 2, 3, "triton")
        dcls_conv(x, k, None, (2, 2), 2, 3, "triton")  # same shape: logged once
    assert _rel(y, F.conv2d(x, k, None, 2, 2, groups=3)) < FP32_TOL
    messages = [r.getMessage() for r in caplog.records if "Triton not used" in r.getMessage()]
    assert len(messages) == 1 and "stride (2, 2)" in messages[0]
