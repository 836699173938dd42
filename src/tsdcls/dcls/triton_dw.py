"""Triton depthwise convolution for large kernels (stride 1), forward and both gradients.

cuDNN's depthwise kernels are slow for DCLS's 17x17 (and larger) kernels; the authors hand them
to RepLKNet's implicit-GEMM CUDA kernel. This module is the Triton counterpart:

* one kernel ``_dw_corr`` computes ``out[o] = sum_k inp[o + k - pad] w[k]`` (the forward) and,
  with ``SIGN=-1``, ``out[i] = sum_k inp[i - k + pad] w[k]`` (the input gradient, a correlation of
  the output gradient with the flipped kernel);
* ``_dw_grad_w`` reduces ``dy * shifted x`` over batch and pixels per kernel cell into per-split
  partial sums (deterministic, no atomics), summed by torch;
* both read the kernel's support (rows/cols ``[lo, hi)`` of the cells the DCLS taps cover) from a
  small device tensor, so cells that are zero by construction cost nothing and no host sync is
  needed to know where they are.

Tiles are (pixels x channels) with arbitrary strides, so NCHW and channels_last inputs work
unchanged; loads are cast to fp32 and accumulated in fp32, the output keeps the input dtype.
Kernels are jitted on first use, so ``TRITON_INTERPRET=1`` set before that first call runs them
on CPU tensors (the CI tests do this).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from types import SimpleNamespace

import torch
from torch import Tensor

MAX_KERNEL_SIDE = 31
# the gradient-w.r.t.-weight reduction is split so that this many programs run (fills a GPU)
TARGET_PROGRAMS = 1024

try:  # triton ships with CUDA builds of torch; CPU-only installs may lack it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only without triton
    triton = None
    tl = None


def interpreting() -> bool:
    """True when Triton's interpreter (TRITON_INTERPRET=1) would run kernels on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def available(device: torch.device) -> bool:
    """Whether the Triton kernels can run on tensors of this device."""
    if triton is None:
        return False
    if interpreting():
        return True
    return device.type == "cuda"


def unsupported_reason(
    x: Tensor, kernel: Tensor, stride: Sequence[int], groups: int
) -> str | None:
    """Why the Triton path cannot take this convolution (None when it can)."""
    if triton is None:
        return "triton is not importable"
    if not available(x.device):
        return f"device {x.device.type} (Triton needs CUDA, or TRITON_INTERPRET=1)"
    if kernel.dim() != 4:
        return "only 2-D convolutions"
    if any(int(s) != 1 for s in stride):
        return f"stride {tuple(stride)} (only stride 1)"
    c_out, in_per_group = kernel.shape[:2]
    if in_per_group != 1 or groups != x.shape[1] or c_out != x.shape[1]:
        return "not depthwise with channel multiplier 1"
    if max(kernel.shape[2:]) > MAX_KERNEL_SIDE:
        return f"kernel {tuple(kernel.shape[2:])} larger than {MAX_KERNEL_SIDE}"
    return None


# --------------------------------------------------------------------------- kernels
def _dw_corr(
    inp, w, bias, out, sup,
    C, IH, IW, OH, OW,
    s_in_n, s_in_c, s_in_h, s_in_w,
    s_out_n, s_out_c, s_out_h, s_out_w,
    KH, KW, OFF_H, OFF_W, SUP_OFF_H, SUP_OFF_W,
    SIGN: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = p < OH * OW
    c_ok = c < C
    oh = p // OW
    ow = p % OW
    kh_lo = tl.minimum(tl.maximum(tl.load(sup + 0) - SUP_OFF_H, 0), KH)
    kh_hi = tl.minimum(tl.maximum(tl.load(sup + 1) - SUP_OFF_H, kh_lo), KH)
    kw_lo = tl.minimum(tl.maximum(tl.load(sup + 2) - SUP_OFF_W, 0), KW)
    kw_hi = tl.minimum(tl.maximum(tl.load(sup + 3) - SUP_OFF_W, kw_lo), KW)
    base = inp + n * s_in_n + c[None, :].to(tl.int64) * s_in_c
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for kh in range(kh_lo, kh_hi):
        ih = oh + SIGN * kh + OFF_H
        row_ok = p_ok & (ih >= 0) & (ih < IH)
        for kw in range(kw_lo, kw_hi):
            iw = ow + SIGN * kw + OFF_W
            ok = row_ok & (iw >= 0) & (iw < IW)
            ptrs = base + ih[:, None].to(tl.int64) * s_in_h + iw[:, None].to(tl.int64) * s_in_w
            xv = tl.load(ptrs, mask=ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
            wv = tl.load(w + c * (KH * KW) + kh * KW + kw, mask=c_ok, other=0.0).to(tl.float32)
            acc += xv * wv[None, :]
    if HAS_BIAS:
        acc += tl.load(bias + c, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    out_ptrs = (
        out + n * s_out_n + c[None, :].to(tl.int64) * s_out_c
        + oh[:, None].to(tl.int64) * s_out_h + ow[:, None].to(tl.int64) * s_out_w
    )
    tl.store(out_ptrs, acc.to(out.dtype.element_ty), mask=p_ok[:, None] & c_ok[None, :])


def _dw_grad_w(
    x, dy, part, sup,
    C, IH, IW, OH, OW,
    s_x_n, s_x_c, s_x_h, s_x_w,
    s_dy_n, s_dy_c, s_dy_h, s_dy_w,
    KH, KW, PAD_H, PAD_W, SUP_OFF_H, SUP_OFF_W, TOTAL, PER_SPLIT,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    k = tl.program_id(0)
    pid_c = tl.program_id(1)
    split = tl.program_id(2)
    kh = k // KW
    kw = k % KW
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    c64 = c[None, :].to(tl.int64)
    inside = (
        (kh >= tl.load(sup + 0) - SUP_OFF_H) & (kh < tl.load(sup + 1) - SUP_OFF_H)
        & (kw >= tl.load(sup + 2) - SUP_OFF_W) & (kw < tl.load(sup + 3) - SUP_OFF_W)
    )
    begin = split * PER_SPLIT
    end = tl.minimum(begin + PER_SPLIT, TOTAL)
    end = tl.where(inside, end, begin)
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for start in range(begin, end, BLOCK_P):
        q = start + tl.arange(0, BLOCK_P)
        q_ok = q < end
        n = (q // (OH * OW)).to(tl.int64)
        r = q % (OH * OW)
        oh = r // OW
        ow = r % OW
        ih = oh + kh - PAD_H
        iw = ow + kw - PAD_W
        ok = q_ok & (ih >= 0) & (ih < IH) & (iw >= 0) & (iw < IW)
        m = ok[:, None] & c_ok[None, :]
        dyv = tl.load(
            dy + n[:, None] * s_dy_n + c64 * s_dy_c + oh[:, None].to(tl.int64) * s_dy_h + ow[:, None].to(tl.int64) * s_dy_w,
            mask=m, other=0.0,
        ).to(tl.float32)
        xv = tl.load(
            x + n[:, None] * s_x_n + c64 * s_x_c + ih[:, None].to(tl.int64) * s_x_h + iw[:, None].to(tl.int64) * s_x_w,
            mask=m, other=0.0,
        ).to(tl.float32)
        acc += dyv * xv
    total = tl.sum(acc, axis=0)
    tl.store(part + (split.to(tl.int64) * (KH * KW) + k) * C + c, total, mask=c_ok)


@functools.cache
def _jitted(interpret: bool) -> SimpleNamespace:
    """The jitted kernels; keyed on interpreter mode, which Triton fixes at decoration time."""
    del interpret  # part of the cache key only
    return SimpleNamespace(corr=triton.jit(_dw_corr), grad_w=triton.jit(_dw_grad_w))


def _kernels() -> SimpleNamespace:
    if triton is None:
        raise RuntimeError("tsdcls.dcls.triton_dw needs triton; install torch with CUDA (it ships triton) or use algorithm='cudnn'")
    return _jitted(interpreting())


# --------------------------------------------------------------------------- launchers
def _blocks(t: Tensor) -> tuple[int, int]:
    """(BLOCK_P, BLOCK_C): channels along the contiguous axis for channels_last, pixels for NCHW."""
    if interpreting():
        return 64, 4  # few programs (each interpreted op costs ~10 us); still a channel tail
    if t.stride(1) == 1 and t.shape[1] > 1:
        return 64, 32
    return 128, 4


def _empty_like_layout(ref: Tensor, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
    channels_last = ref.dim() == 4 and ref.stride(1) == 1 and ref.shape[1] > 1 and not ref.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(tuple(shape), dtype=dtype, device=ref.device, memory_format=fmt)


def _corr(inp: Tensor, w: Tensor, bias: Tensor | None, sup: Tensor, out_hw: tuple[int, int],
          offsets: tuple[int, int], sup_off: tuple[int, int], flip: bool) -> Tensor:
    n, c, ih, iw = inp.shape
    kh, kw = w.shape[-2:]
    out = _empty_like_layout(inp, (n, c, *out_hw), inp.dtype)
    block_p, block_c = _blocks(inp)
    grid = (triton.cdiv(out_hw[0] * out_hw[1], block_p), triton.cdiv(c, block_c), n)
    _kernels().corr[grid](
        inp, w, bias if bias is not None else w, out, sup,
        c, ih, iw, out_hw[0], out_hw[1],
        *inp.stride(), *out.stride(),
        kh, kw, offsets[0], offsets[1], sup_off[0], sup_off[1],
        SIGN=-1 if flip else 1, HAS_BIAS=bias is not None, BLOCK_P=block_p, BLOCK_C=block_c,
    )
    return out


def _grad_weight(x: Tensor, dy: Tensor, sup: Tensor, kernel_hw: tuple[int, int], pads: tuple[int, int],
                 sup_off: tuple[int, int]) -> Tensor:
    n, c, ih, iw = x.shape
    oh, ow = dy.shape[-2:]
    kh, kw = kernel_hw
    block_p, block_c = _blocks(x)
    total = n * oh * ow
    c_blocks = triton.cdiv(c, block_c)
    target = 2 * kh * kw * c_blocks if interpreting() else TARGET_PROGRAMS  # interpreter: 2 splits
    splits = max(1, min(triton.cdiv(total, block_p), target // max(1, kh * kw * c_blocks)))
    per_split = triton.cdiv(triton.cdiv(total, splits), block_p) * block_p
    splits = triton.cdiv(total, per_split)
    part = torch.empty((splits, kh * kw, c), dtype=torch.float32, device=x.device)
    _kernels().grad_w[(kh * kw, c_blocks, splits)](
        x, dy, part, sup,
        c, ih, iw, oh, ow,
        *x.stride(), *dy.stride(),
        kh, kw, pads[0], pads[1], sup_off[0], sup_off[1], total, per_split,
        BLOCK_P=block_p, BLOCK_C=block_c,
    )
    return part.sum(0).t().reshape(c, 1, kh, kw)


class DepthwiseConv2d(torch.autograd.Function):
    """Depthwise (multiplier 1), stride-1 cross-correlation with zero padding (top, left) and a
    given output size; the kernel's support ``sup`` (int32 [row_lo, row_hi, col_lo, col_hi] in
    the coordinates of the uncropped grid, minus ``sup_off``) bounds the loops."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Tensor, bias: Tensor | None, sup: Tensor,  # type: ignore[override]
                pads: tuple[int, int], out_hw: tuple[int, int], sup_off: tuple[int, int]) -> Tensor:
        w = kernel.detach().contiguous()
        b = bias.detach().contiguous() if bias is not None else None
        y = _corr(x.detach(), w, b, sup, out_hw, (-pads[0], -pads[1]), sup_off, flip=False)
        ctx.save_for_backward(x, w, sup)
        ctx.meta = (pads, sup_off, bias is not None, kernel.dtype)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):  # type: ignore[override]
        x, w, sup = ctx.saved_tensors
        pads, sup_off, has_bias, w_dtype = ctx.meta
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _corr(dy, w, None, sup, tuple(x.shape[-2:]), pads, sup_off, flip=True)
        if ctx.needs_input_grad[1]:
            grad_w = _grad_weight(x, dy, sup, tuple(w.shape[-2:]), pads, sup_off).to(w_dtype)
        if has_bias and ctx.needs_input_grad[2]:
            grad_b = dy.sum((0, 2, 3), dtype=torch.float32).to(w_dtype)
        return grad_x, grad_w, grad_b, None, None, None, None


def full_support(kernel_hw: Sequence[int], device: torch.device) -> Tensor:
    """The support covering the whole kernel (Gaussian kernels, plain convolutions)."""
    return torch.tensor([0, int(kernel_hw[0]), 0, int(kernel_hw[1])], dtype=torch.int32, device=device)


def depthwise_conv2d(
    x: Tensor,
    kernel: Tensor,
    bias: Tensor | None,
    pads: Sequence[tuple[int, int]],
    out_hw: Sequence[int],
    support: Tensor | None = None,
    support_offset: Sequence[int] = (0, 0),
) -> Tensor:
    """``F.conv2d(F.pad(x, pads), kernel, bias, groups=C)`` for a (C, 1, kh, kw) kernel.

    ``pads``: ((top, bottom), (left, right)); only top/left and ``out_hw`` are needed.
    ``support``: int32 device tensor [row_lo, row_hi, col_lo, col_hi] of the nonzero cells, in
    grid coordinates offset by ``support_offset`` from the kernel's (a cropped kernel).
    Under CUDA autocast the input is cast to the autocast dtype (the kernel stays as given:
    loads are fp32 anyway), as F.conv2d would.
    """
    if x.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        x = x.to(torch.get_autocast_dtype("cuda"))
    if support is None:
        support = full_support(kernel.shape[-2:], x.device)
        support_offset = (0, 0)
    return DepthwiseConv2d.apply(
        x, kernel, bias, support.to(device=x.device, dtype=torch.int32),
        (int(pads[0][0]), int(pads[1][0])), (int(out_hw[0]), int(out_hw[1])),
        (int(support_offset[0]), int(support_offset[1])),
    )
