"""DCLS kernel construction and the convolution algorithms that apply the dense kernel.

Two costs dominate a DCLS layer: building the dense ``dks x dks`` kernel from a few taps with
learnable positions, and convolving with that (large) kernel. The reference ``dcls`` 0.1.1 builds
the kernel by broadcasting every tap against every grid cell (O(taps * dks^2) memory per channel)
and convolves directly with ``F.conv2d`` (O(dks^2) work per output pixel). Here:

* bilinear ("v0") kernels are a ``scatter_add`` of four corner weights per tap;
* Gaussian kernels are a batched matrix product of separable 1-D Gaussians per tap
  (``exp(-(dx^2+dy^2)/2) = exp(-dx^2/2) exp(-dy^2/2)``);
* the convolution crops the kernel to the taps that can touch the input at all, then runs either
  ``F.conv2d`` (cuDNN on GPU, small kernels) or an FFT convolution (CPU, large kernels) whose
  gradients come from autograd through ``torch.fft``.

Parametrisation matches ``DCLS.construct.modules.ConstructKernel{1,2}d`` exactly (see
``docs/dcls.md``): a position ``p`` sits at grid index ``p + dks // 2``. For bilinear kernels
``P[0]`` is the row (vertical) and ``P[1]`` the column; for Gaussian kernels the reference swaps
them (``P[0]`` is the column), and so do we so that parameters copy over unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

# sigma actually used by the Gaussian kernel is |SIG| + SIGMA_FLOOR, as in dcls 0.1.1.
SIGMA_FLOOR = 0.27
# Normaliser guard of the Gaussian kernel, as in dcls 0.1.1.
GAUSS_EPS = 1e-7
# CPU: a cropped kernel with at least this many cells per channel is convolved by FFT.
# Measured on 2 cores (benchmarks/bench_dcls_layers.py): FFT wins clearly from 9x9 up.
FFT_MIN_KERNEL_AREA = 81
# CPU: depthwise maps with at most this many pixels are convolved as a Toeplitz batched matmul,
# unless the cropped kernel is at most this small (then oneDNN's direct conv is faster: 3x3 maps
# with a 5x5 crop, 3.3 ms direct vs 5.6 ms matmul fwd+bwd at 320 channels, 1 thread).
MATMUL_MAX_PIXELS = 100
# CPU 'mixed' kernel gradient: spectra of this many bytes per channel block (stays in L2/L3).
FFT_GRAD_BLOCK_BYTES = 1_500_000
MATMUL_MIN_KERNEL_AREA = 26

Algorithm = Literal["auto", "direct", "cudnn", "triton", "fft", "matmul", "mixed"]
ALGORITHMS: tuple[str, ...] = ("auto", "direct", "cudnn", "triton", "fft", "matmul", "mixed")

log = logging.getLogger(__name__)
# (algorithm, reason, input shape without batch, kernel shape) already logged: once per layer shape
_LOGGED_CHOICES: set[tuple] = set()


# --------------------------------------------------------------------------- kernel construction
def bilinear_kernel_2d(weight: Tensor, positions: Tensor, dks: Sequence[int]) -> Tensor:
    """Dense (C_out, C_in/g, dks0, dks1) kernel: each tap's weight spread on its 4 grid neighbours.

    Taps whose neighbours fall outside the grid lose those corners, exactly as in dcls (this only
    happens for even ``dks`` at the clamp limit).
    """
    rows_count, cols_count = int(dks[0]), int(dks[1])
    c_out, c_in, _ = weight.shape
    rows = positions[0] + rows_count // 2
    cols = positions[1] + cols_count // 2
    row0 = rows.detach().floor()
    col0 = cols.detach().floor()
    frac_r = rows - row0
    frac_c = cols - col0
    corner_rows = torch.stack((row0, row0, row0 + 1, row0 + 1)).long()
    corner_cols = torch.stack((col0, col0 + 1, col0, col0 + 1)).long()
    corner_w = torch.stack(
        (
            (1 - frac_r) * (1 - frac_c),
            (1 - frac_r) * frac_c,
            frac_r * (1 - frac_c),
            frac_r * frac_c,
        )
    )
    inside = (corner_rows >= 0) & (corner_rows < rows_count) & (corner_cols >= 0) & (corner_cols < cols_count)
    values = torch.where(inside, corner_w * weight.unsqueeze(0), torch.zeros((), dtype=weight.dtype, device=weight.device))
    flat_index = torch.where(inside, corner_rows * cols_count + corner_cols, torch.zeros((), dtype=torch.long, device=weight.device))
    # (4, C_out, C_in, K) -> (C_out * C_in, 4 * K)
    values = values.permute(1, 2, 0, 3).reshape(c_out * c_in, -1)
    flat_index = flat_index.permute(1, 2, 0, 3).reshape(c_out * c_in, -1)
    kernel = torch.zeros(c_out * c_in, rows_count * cols_count, dtype=weight.dtype, device=weight.device)
    kernel = kernel.scatter_add(1, flat_index, values)
    return kernel.view(c_out, c_in, rows_count, cols_count)


def bilinear_kernel_1d(weight: Tensor, positions: Tensor, dks: Sequence[int]) -> Tensor:
    """Dense (C_out, C_in/g, dks) kernel: each tap's weight split linearly on 2 neighbours."""
    length = int(dks[0])
    c_out, c_in, _ = weight.shape
    pos = positions[0] + length // 2
    pos0 = pos.detach().floor()
    frac = pos - pos0
    corner_idx = torch.stack((pos0, pos0 + 1)).long()
    corner_w = torch.stack((1 - frac, frac))
    inside = (corner_idx >= 0) & (corner_idx < length)
    values = torch.where(inside, corner_w * weight.unsqueeze(0), torch.zeros((), dtype=weight.dtype, device=weight.device))
    flat_index = torch.where(inside, corner_idx, torch.zeros((), dtype=torch.long, device=weight.device))
    values = values.permute(1, 2, 0, 3).reshape(c_out * c_in, -1)
    flat_index = flat_index.permute(1, 2, 0, 3).reshape(c_out * c_in, -1)
    kernel = torch.zeros(c_out * c_in, length, dtype=weight.dtype, device=weight.device)
    return kernel.scatter_add(1, flat_index, values).view(c_out, c_in, length)


def _gauss_1d(centres: Tensor, sigmas: Tensor, length: int) -> Tensor:
    """exp(-((i - centre) / sigma)^2 / 2) on the grid i = 0..length-1, shape (..., length)."""
    grid = torch.arange(length, dtype=centres.dtype, device=centres.device)
    z = (grid - centres.unsqueeze(-1)) / sigmas.unsqueeze(-1)
    return torch.exp(-0.5 * z * z)


def gauss_kernel_2d(weight: Tensor, positions: Tensor, sig: Tensor, dks: Sequence[int]) -> Tensor:
    """Dense (C_out, C_in/g, dks0, dks1) kernel: sum over taps of weight * normalised 2-D Gaussian.

    Separable: the 2-D Gaussian of a tap is the outer product of two 1-D Gaussians, and its
    normaliser (sum over the grid) is the product of their sums, so the kernel is one batched
    matmul (dks0 x K) @ (K x dks1) per channel pair instead of a K x dks0 x dks1 tensor.
    """
    rows_count, cols_count = int(dks[0]), int(dks[1])
    c_out, c_in, taps = weight.shape
    sig = sig.abs() + SIGMA_FLOOR
    # dcls 0.1.1: P[0] / SIG[0] run along the columns (x), P[1] / SIG[1] along the rows (y).
    gx = _gauss_1d(positions[0] + rows_count // 2, sig[0], cols_count)  # (Co, Ci, K, dks1)
    gy = _gauss_1d(positions[1] + cols_count // 2, sig[1], rows_count)  # (Co, Ci, K, dks0)
    norm = gx.sum(-1) * gy.sum(-1) + GAUSS_EPS
    coef = weight / norm
    left = (gy * coef.unsqueeze(-1)).reshape(c_out * c_in, taps, rows_count).transpose(1, 2)
    right = gx.reshape(c_out * c_in, taps, cols_count)
    return torch.bmm(left, right).view(c_out, c_in, rows_count, cols_count)


def gauss_kernel_1d(weight: Tensor, positions: Tensor, sig: Tensor, dks: Sequence[int]) -> Tensor:
    """Dense (C_out, C_in/g, dks) kernel: sum over taps of weight * normalised 1-D Gaussian."""
    length = int(dks[0])
    sig = sig.abs() + SIGMA_FLOOR
    g = _gauss_1d(positions[0] + length // 2, sig[0], length)  # (Co, Ci, K, L)
    coef = weight / (g.sum(-1) + GAUSS_EPS)
    return torch.einsum("oik,oikl->oil", coef, g)


def construct_kernel(
    weight: Tensor, positions: Tensor, sig: Tensor | None, dks: Sequence[int], version: str
) -> Tensor:
    """Dense kernel for 1-D (len(dks) == 1) or 2-D DCLS, built on the parameters' device."""
    if version == "v0":
        return bilinear_kernel_1d(weight, positions, dks) if len(dks) == 1 else bilinear_kernel_2d(weight, positions, dks)
    if version == "gauss":
        if sig is None:
            raise ValueError("Gaussian DCLS needs sigma (SIG) parameters")
        return gauss_kernel_1d(weight, positions, sig, dks) if len(dks) == 1 else gauss_kernel_2d(weight, positions, sig, dks)
    raise ValueError(f"unknown DCLS version {version!r}: expected 'v0' or 'gauss'")


# --------------------------------------------------------------------------- convolution
def resolve_padding(padding: str | int | Sequence[int], kernel_size: Sequence[int]) -> list[tuple[int, int]]:
    """(before, after) zero padding per spatial dim, with torch's rules for 'same'/'valid'."""
    dims = len(kernel_size)
    if padding == "same":
        pads = []
        for k in kernel_size:
            total = int(k) - 1
            pads.append((total // 2, total - total // 2))
        return pads
    if padding == "valid":
        return [(0, 0)] * dims
    if isinstance(padding, int):
        return [(padding, padding)] * dims
    values = [int(p) for p in padding]
    if len(values) != dims:
        raise ValueError(f"padding {padding!r} must have {dims} entries")
    return [(p, p) for p in values]


def _crop_plan(size: int, k: int, pad: tuple[int, int], stride: int) -> tuple[int, int, int, int]:
    """Kernel taps [lo, hi) that can touch the input, and the output length.

    Output i reads input rows i*stride - pad_before + a for tap a; a tap that reads only zero
    padding for every i contributes nothing and is dropped (exact).
    """
    before, after = pad
    out_len = (size + before + after - k) // stride + 1
    if out_len <= 0:
        raise ValueError(f"input size {size} too small for kernel {k} with padding {pad}")
    lo = max(0, before - (out_len - 1) * stride)
    hi = min(k, size + before)
    return lo, hi, out_len, before - lo


def choose_algorithm(
    device: torch.device,
    kernel_area: int,
    in_per_group: int,
    pixels: int,
    algorithm: Algorithm = "auto",
    triton_reason: str | None = "not checked",
    mixed_ok: bool = False,
) -> str:
    """Per call: on CUDA 'triton' for depthwise stride-1 layers when Triton can take them
    (``triton_reason`` is None), else 'direct' (cuDNN); on CPU 'matmul' for small depthwise maps,
    for large kernels 'mixed' where it can run (``mixed_ok``: fp32 depthwise, stride 1) else
    'fft', else 'direct' (oneDNN). A forced 'triton' that cannot run falls back
    to 'direct'; 'cudnn' is 'direct'. CPU thresholds measured with
    benchmarks/bench_dcls_layers.py on a 2-core CPU."""
    if algorithm == "cudnn":
        return "direct"
    if algorithm == "triton":
        return "triton" if triton_reason is None else "direct"
    if algorithm != "auto":
        return algorithm
    if device.type == "cuda" and triton_reason is None:
        return "triton"
    if device.type != "cpu" or in_per_group != 1:
        return "direct"
    if pixels <= MATMUL_MAX_PIXELS and kernel_area >= MATMUL_MIN_KERNEL_AREA:
        return "matmul"
    if kernel_area >= FFT_MIN_KERNEL_AREA:
        return "mixed" if mixed_ok else "fft"
    return "direct"


def _fast_len(n: int) -> int:
    """Smallest m >= n whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _out_slices(dims: int, out_sizes: Sequence[int], stride: Sequence[int]) -> tuple[slice, ...]:
    return (slice(None), slice(None)) + tuple(
        slice(0, (out_sizes[d] - 1) * stride[d] + 1, stride[d]) for d in range(dims)
    )


class _FFTCorrelation(torch.autograd.Function):
    """Circular correlation of end-zero-padded inputs with rolled kernels, one input channel per
    group (depthwise, optional channel multiplier), with a hand-written backward that needs only
    real-to-complex / complex-to-real transforms (autograd's would add full complex FFTs and a
    zero-filled copy of the output gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, rolled_kernel: Tensor, fft_sizes: list[int], out_sizes: list[int], stride: list[int]) -> Tensor:
        dims = len(fft_sizes)
        fft_dims = tuple(range(-dims, 0))
        batch, c_in = x.shape[:2]
        c_out = rolled_kernel.shape[0]
        mult = c_out // c_in
        x_f = torch.fft.rfftn(x, s=fft_sizes, dim=fft_dims)
        k_f = torch.fft.rfftn(rolled_kernel[:, 0], dim=fft_dims)
        freq = x_f.shape[2:]
        y_f = x_f.unsqueeze(2) * k_f.conj().view(c_in, mult, *freq)
        y = torch.fft.irfftn(y_f.view(batch, c_out, *freq), s=fft_sizes, dim=fft_dims)
        ctx.save_for_backward(x_f, k_f)
        ctx.meta = (fft_sizes, out_sizes, stride, tuple(x.shape[2:]), mult)
        return y[_out_slices(dims, out_sizes, stride)].contiguous()

    @staticmethod
    def backward(ctx, grad_y: Tensor):  # type: ignore[override]
        x_f, k_f = ctx.saved_tensors
        fft_sizes, out_sizes, stride, in_sizes, mult = ctx.meta
        dims = len(fft_sizes)
        fft_dims = tuple(range(-dims, 0))
        batch, c_out = grad_y.shape[:2]
        c_in = c_out // mult
        if all(s == 1 for s in stride):
            g_full = grad_y
        else:
            g_full = grad_y.new_zeros(batch, c_out, *fft_sizes)
            g_full[_out_slices(dims, out_sizes, stride)] = grad_y
        g_f = torch.fft.rfftn(g_full, s=fft_sizes, dim=fft_dims)
        freq = g_f.shape[2:]
        g_f = g_f.view(batch, c_in, mult, *freq)
        grad_x = grad_k = None
        if ctx.needs_input_grad[0]:
            gx_f = (g_f * k_f.view(c_in, mult, *freq)).sum(2)
            grad_x = torch.fft.irfftn(gx_f, s=fft_sizes, dim=fft_dims)
            grad_x = grad_x[(slice(None), slice(None)) + tuple(slice(0, n) for n in in_sizes)].contiguous()
        if ctx.needs_input_grad[1]:
            gk_f = (x_f.unsqueeze(2) * g_f.conj()).sum(0).reshape(c_out, *freq)
            grad_k = torch.fft.irfftn(gk_f, s=fft_sizes, dim=fft_dims).unsqueeze(1)
        return grad_x, grad_k, None, None, None


def fft_conv(
    x: Tensor,
    kernel: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    pads: Sequence[tuple[int, int]],
    groups: int,
    out_sizes: Sequence[int],
) -> Tensor:
    """Cross-correlation like ``F.conv{1,2}d`` (zero padding, stride, groups) via real FFTs.

    The input is not padded in memory: the kernel is rolled by the leading padding so that the
    circular correlation of the end-zero-padded input equals the padded linear correlation. The
    FFT length n >= size + pad_before + pad_after keeps wrapped-around terms in the zero region.
    """
    dims = kernel.dim() - 2
    spatial = x.shape[-dims:]
    fft_sizes = [
        _fast_len(max(spatial[d] + pads[d][0] + pads[d][1], spatial[d] + kernel.shape[2 + d] - 1))
        for d in range(dims)
    ]
    fft_dims = tuple(range(-dims, 0))
    compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    xs = x.to(compute_dtype)
    ks = kernel.to(compute_dtype)
    kernel_padding: list[int] = []
    for d in reversed(range(dims)):
        kernel_padding += [0, fft_sizes[d] - kernel.shape[2 + d]]
    ks = torch.roll(F.pad(ks, kernel_padding), shifts=[-pads[d][0] for d in range(dims)], dims=fft_dims)
    c_out, in_per_group = kernel.shape[0], kernel.shape[1]
    if in_per_group == 1:
        y = _FFTCorrelation.apply(xs.contiguous(), ks, fft_sizes, list(out_sizes), list(stride))
    else:
        batch = x.shape[0]
        x_f = torch.fft.rfftn(xs, s=fft_sizes, dim=fft_dims)
        k_f = torch.fft.rfftn(ks, dim=fft_dims).conj()
        freq = x_f.shape[2:]
        y_f = torch.einsum(
            "ngi...,goi...->ngo...",
            x_f.view(batch, groups, in_per_group, *freq),
            k_f.view(groups, c_out // groups, in_per_group, *freq),
        )
        y = torch.fft.irfftn(y_f.reshape(batch, c_out, *freq), s=fft_sizes, dim=fft_dims)
        y = y[_out_slices(dims, out_sizes, stride)]
    if bias is not None:
        y = y + bias.to(y.dtype).view(1, -1, *([1] * dims))
    return y.to(x.dtype)


class _MixedDepthwise(torch.autograd.Function):
    """Depthwise stride-1 convolution for CPU (algorithm 'mixed'): the output and the input
    gradient by oneDNN's channels_last depthwise convolution (the input gradient is the output
    gradient convolved with the flipped kernel, itself a forward convolution), the kernel gradient
    by FFT (the batch-summed correlation of input and output gradient, a few r2c transforms).

    Why: oneDNN's channels_last depthwise forward is 10-70x faster than its NCHW one at 17x17 and
    faster than an FFT, but its kernel-gradient pass is slow (measured in
    benchmarks/bench_dcls_layers.py; see docs/dcls.md)."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Tensor, bias: Tensor | None, pads: list[tuple[int, int]]) -> Tensor:
        ctx.save_for_backward(x, kernel)
        ctx.pads, ctx.has_bias = pads, bias is not None
        return _channels_last_conv(x, kernel, bias, pads).contiguous(memory_format=_memory_format(x))

    @staticmethod
    def backward(ctx, grad_y: Tensor):  # type: ignore[override]
        x, kernel = ctx.saved_tensors
        pads = ctx.pads
        grad_x = grad_k = grad_b = None
        if ctx.needs_input_grad[0]:
            sizes = kernel.shape[2:]
            flipped_pads = [(k - 1 - before, k - 1 - after) for k, (before, after) in zip(sizes, pads, strict=True)]
            grad_x = _channels_last_conv(grad_y, kernel.flip(-2, -1), None, flipped_pads)
            grad_x = grad_x.contiguous(memory_format=_memory_format(x))
        if ctx.needs_input_grad[1]:
            grad_k = _fft_kernel_grad(x, grad_y, pads, kernel.shape[2:])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum((0, 2, 3))
        return grad_x, grad_k, grad_b, None


def _memory_format(x: Tensor) -> torch.memory_format:
    """The layout F.conv2d would give the output: channels_last for a channels_last input (also
    a cropped view of one: channels vary fastest)."""
    return torch.channels_last if x.stride(1) < x.stride(3) else torch.contiguous_format


def _channels_last_conv(x: Tensor, kernel: Tensor, bias: Tensor | None, pads: Sequence[tuple[int, int]]) -> Tensor:
    """Depthwise F.conv2d with (before, after) zero padding per dim (negative: crop), run on a
    channels_last copy of ``x`` (oneDNN's fast depthwise layout)."""
    if all(before == after >= 0 for before, after in pads):
        padding: tuple[int, ...] = tuple(before for before, _ in pads)
    else:
        x = F.pad(x, [pads[1][0], pads[1][1], pads[0][0], pads[0][1]])
        padding = (0, 0)
    x = x.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, kernel.contiguous(), bias, 1, padding, 1, x.shape[1])


def _fft_kernel_grad(x: Tensor, grad_y: Tensor, pads: Sequence[tuple[int, int]], kernel_sizes: Sequence[int]) -> Tensor:
    """d loss / d kernel of y = conv(pad(x), kernel): grad_k[a] = sum_{n,o} g[n, o] x[n, o + a - before],
    one circular correlation per channel of FFT length >= size + before + after (no wrap-around)."""
    sizes = x.shape[2:]
    fft_sizes = [_fast_len(n + before + after) for n, (before, after) in zip(sizes, pads, strict=True)]
    x, grad_y = x.contiguous(), grad_y.contiguous()
    # channel blocks whose spectra fit in cache: at 56x56 x 96 channels 3x faster than one block
    spectrum_bytes = x.shape[0] * fft_sizes[0] * (fft_sizes[1] // 2 + 1) * 8
    block = max(1, FFT_GRAD_BLOCK_BYTES // spectrum_bytes)
    blocks = []
    for start in range(0, x.shape[1], block):
        x_f = torch.fft.rfftn(x[:, start:start + block], s=fft_sizes, dim=(-2, -1))
        g_f = torch.fft.rfftn(grad_y[:, start:start + block], s=fft_sizes, dim=(-2, -1))
        blocks.append(torch.fft.irfftn((x_f * g_f.conj()).sum(0), s=fft_sizes, dim=(-2, -1)))
    correlation = torch.cat(blocks) if len(blocks) > 1 else blocks[0]
    rolled = torch.roll(correlation, shifts=tuple(before for before, _ in pads), dims=(-2, -1))
    return rolled[:, : kernel_sizes[0], : kernel_sizes[1]].unsqueeze(1).to(x.dtype)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient. CPU bmm's backward loops over the
    batch with a copy per matrix when the incoming gradient is strided (a channels_last gradient,
    as a timm ConvNeXt's LayerNorm2d sends back): one copy here instead (~2x on that layer)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad.contiguous()


def matmul_conv(
    x: Tensor,
    kernel: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    pads: Sequence[tuple[int, int]],
    out_sizes: Sequence[int],
) -> Tensor:
    """Depthwise convolution of a small map as one batched matmul per channel, y_c = T_c x_c, with
    the (out_pixels x in_pixels) Toeplitz matrix T_c unfolded from the flipped, padded kernel.

    Exact; on CPU it beats both direct and FFT convolution when the map is small (late ConvNeXt
    stages) and the kernel is large. Unfold's backward (fold) returns the kernel gradient.
    """
    dims = kernel.dim() - 2
    batch, c_in = x.shape[:2]
    c_out = kernel.shape[0]
    mult = c_out // c_in
    in_sizes = x.shape[2:]
    flipped = kernel[:, 0].flip(list(range(1, dims + 1)))  # (C_out, *k)
    # Z[c] = K[in - 1 + before - c]: windows Z[o*s : o*s + in] are the rows of T, input reversed.
    pad_arg: list[int] = []
    for d in reversed(range(dims)):
        k = kernel.shape[2 + d]
        offset = k - in_sizes[d] - pads[d][0]
        length = (out_sizes[d] - 1) * stride[d] + in_sizes[d]
        pad_arg += [-offset, length - k + offset]
    z = F.pad(flipped, pad_arg)
    for d in range(dims):
        z = z.unfold(1 + d, in_sizes[d], stride[d])  # (C, o_0, .., o_d, rest..., i_0..i_d)
    n_out = 1
    for o in out_sizes:
        n_out *= o
    # (C_out, in_px, out_px) contiguous: the layout for which CPU bmm and its backward are fastest
    order = [0, *range(dims + 1, 2 * dims + 1), *range(1, dims + 1)]
    toeplitz = z.permute(order).reshape(c_out, -1, n_out).to(x.dtype)
    xs = x.flip(list(range(2, dims + 2))).reshape(batch, c_in, -1).transpose(0, 1)  # (C_in, N, in_px)
    if mult > 1:
        xs = xs.repeat_interleave(mult, dim=0)
    y = _ContiguousGrad.apply(torch.bmm(xs.contiguous(), toeplitz))  # (C_out, N, out_px)
    y = y.transpose(0, 1).reshape(batch, c_out, *out_sizes)
    if bias is not None:
        y = y + bias.to(y.dtype).view(1, -1, *([1] * dims))
    return y


@dataclass(frozen=True)
class ConvPlan:
    """How ``dcls_conv`` will run one call: the algorithm that runs ('direct', 'fft', 'matmul'
    or 'triton'), the kernel crop, the input rows/cols kept, the padding and output size."""

    algorithm: str
    kernel_crop: tuple[slice, ...]
    input_narrow: tuple[slice, ...]
    pads: list[tuple[int, int]]
    out_sizes: list[int]
    triton_reason: str | None

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return tuple(sl.stop - sl.start for sl in self.kernel_crop[2:])


def plan_conv(
    x: Tensor,
    kernel: Tensor,
    stride: Sequence[int],
    padding: str | int | Sequence[int],
    groups: int,
    algorithm: Algorithm = "auto",
    support: Sequence[tuple[int, int]] | None = None,
) -> ConvPlan:
    """The crop (taps that reach the input, within ``support``) and the algorithm for one call.

    Exposed so that callers and tests can see which algorithm 'auto' dispatches to."""
    dims = kernel.dim() - 2
    if x.dim() != dims + 2:
        raise ValueError(f"expected a {dims + 2}-D input (batched), got shape {tuple(x.shape)}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown convolution algorithm {algorithm!r}: expected one of {ALGORITHMS}")
    pads = resolve_padding(padding, kernel.shape[2:])
    if padding == "same" and any(s != 1 for s in stride):
        raise ValueError("padding='same' is not supported for strided convolutions (as in torch)")
    crop: list[slice] = [slice(None), slice(None)]
    narrow: list[slice] = [slice(None), slice(None)]
    new_pads: list[tuple[int, int]] = []
    out_sizes: list[int] = []
    for d in range(dims):
        size = x.shape[2 + d]
        lo, hi, out_len, before = _crop_plan(size, kernel.shape[2 + d], pads[d], stride[d])
        if support is not None:
            support_lo, support_hi = support[d]
            lo, hi = max(lo, support_lo), min(hi, support_hi)
            if hi <= lo:  # no tap reaches the input: keep one (zero) cell
                hi = lo + 1
            before = pads[d][0] - lo
        # a negative pad means input rows no output reads: drop them instead of padding
        start = max(0, -before)
        before = max(0, before)
        after = (out_len - 1) * stride[d] + (hi - lo) - (size - start) - before
        narrow.append(slice(start, size + min(0, after)))
        crop.append(slice(lo, hi))
        new_pads.append((before, max(0, after)))
        out_sizes.append(out_len)
    cropped = kernel[tuple(crop)]
    x_shape = [sl.stop - sl.start for sl in narrow[2:]]
    triton_reason = _triton_reason(x, cropped, stride, groups, algorithm)
    mixed_reason = _mixed_reason(x, cropped, stride, groups)
    if algorithm == "mixed" and mixed_reason is not None:
        raise ValueError(f"algorithm 'mixed' cannot run this convolution: {mixed_reason}")
    algo = choose_algorithm(x.device, math.prod(cropped.shape[2:]), kernel.shape[1], math.prod(x_shape),
                            algorithm, triton_reason, mixed_reason is None)
    return ConvPlan(algo, tuple(crop), tuple(narrow), new_pads, out_sizes, triton_reason)


def dcls_conv(
    x: Tensor,
    kernel: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    padding: str | int | Sequence[int],
    groups: int,
    algorithm: Algorithm = "auto",
    support: Sequence[tuple[int, int]] | None = None,
    device_support: Tensor | None = None,
) -> Tensor:
    """``F.conv{1,2}d(x, kernel, bias, stride, padding, groups=groups)`` with dilation 1, faster.

    Crops the kernel to the taps that can reach the input (exact), then picks an algorithm
    (``plan_conv``). ``support``: per dim, the cells [lo, hi) outside which the kernel is zero and
    depends on no parameter (a bilinear DCLS kernel: the grid cells its taps' corners cover); the
    kernel is cropped to it too, which is exact for the output and for every parameter's gradient.
    ``device_support``: the same as an int32 device tensor [row_lo, row_hi, col_lo, col_hi]
    (no host sync); only the Triton path reads it, to bound its loops.
    """
    plan = plan_conv(x, kernel, stride, padding, groups, algorithm, support)
    return _run_plan(plan, x, kernel, bias, stride, groups, algorithm, device_support)


def _run_plan(plan: ConvPlan, x: Tensor, kernel: Tensor, bias: Tensor | None, stride: Sequence[int], groups: int,
              algorithm: str, device_support: Tensor | None) -> Tensor:
    kernel = kernel[plan.kernel_crop]
    if any(sl.start or sl.stop != x.shape[i] for i, sl in enumerate(plan.input_narrow) if i >= 2):
        x = x[plan.input_narrow]
    algo, new_pads, out_sizes = plan.algorithm, plan.pads, plan.out_sizes
    _log_choice(algo, algorithm, plan.triton_reason, x, kernel)
    if algo == "triton":
        from tsdcls.dcls.triton_dw import depthwise_conv2d

        offset = (plan.kernel_crop[2].start, plan.kernel_crop[3].start)
        return depthwise_conv2d(x, kernel, bias, new_pads, out_sizes, device_support, offset)
    if algo == "fft":
        return fft_conv(x, kernel, bias, stride, new_pads, groups, out_sizes)
    if algo == "mixed":
        return _MixedDepthwise.apply(x, kernel, bias, new_pads)
    if algo == "matmul":
        if kernel.shape[1] != 1:
            raise ValueError("algorithm 'matmul' needs one input channel per group (depthwise)")
        return matmul_conv(x, kernel, bias, stride, new_pads, out_sizes)
    conv = F.conv1d if kernel.dim() == 3 else F.conv2d
    if all(b == a for b, a in new_pads):
        return conv(x, kernel, bias, tuple(stride), tuple(b for b, _ in new_pads), 1, groups)
    flat_pads: list[int] = []
    for b, a in reversed(new_pads):
        flat_pads += [b, a]
    return conv(F.pad(x, flat_pads), kernel, bias, tuple(stride), 0, 1, groups)


def _mixed_reason(x: Tensor, kernel: Tensor, stride: Sequence[int], groups: int) -> str | None:
    """Why the 'mixed' CPU algorithm cannot take this call (None: it can)."""
    if x.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return "needs a CPU with oneDNN (torch.backends.mkldnn)"
    if x.dtype != torch.float32 or kernel.dtype != torch.float32:
        return f"dtype {x.dtype} (float32 only)"
    if kernel.dim() != 4 or any(int(s) != 1 for s in stride):
        return "only 2-D convolutions with stride 1"
    if kernel.shape[1] != 1 or groups != x.shape[1] or kernel.shape[0] != x.shape[1]:
        return "not depthwise with channel multiplier 1"
    return None


def _triton_reason(x: Tensor, kernel: Tensor, stride: Sequence[int], groups: int, algorithm: str) -> str | None:
    """Why the Triton kernel cannot take this call (None: it can); only asked where it matters."""
    if algorithm == "triton" or (algorithm == "auto" and x.device.type == "cuda"):
        from tsdcls.dcls.triton_dw import unsupported_reason

        return unsupported_reason(x, kernel, stride, groups)
    return "not requested"


def _log_choice(algo: str, requested: str, reason: str | None, x: Tensor, kernel: Tensor) -> None:
    """Log, once per layer shape, which algorithm runs on GPU (or a forced Triton that fell back)."""
    if x.device.type == "cpu" and requested != "triton":
        return
    key = (algo, requested, reason, tuple(x.shape[1:]), tuple(kernel.shape))
    if key in _LOGGED_CHOICES:
        return
    _LOGGED_CHOICES.add(key)
    why = "" if algo == "triton" or reason in (None, "not requested") else f" (Triton not used: {reason})"
    log.info("DCLS conv %s with kernel %s: algorithm %s (requested %s)%s",
             tuple(x.shape[1:]), tuple(kernel.shape), "cudnn" if algo == "direct" and x.device.type == "cuda" else algo, requested, why)
