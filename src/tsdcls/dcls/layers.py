"""DCLS convolution layers (ICLR 2023 bilinear "v0" and the Gaussian-interpolation follow-up).

A drop-in for ``nn.Conv{1,2}d`` whose kernel has ``kernel_count`` taps per (out, in) channel pair
with learnable positions inside a ``dilated_kernel_size`` grid. Parameters and initialisation are
those of the authors' ``dcls`` 0.1.1 (names ``weight``, ``P``, ``SIG``), so state dicts copy over;
the implementation is faster (see ``tsdcls.dcls.kernels``). In eval mode without autograd the
dense kernel is built once and reused until a parameter changes (their version counters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import init

from tsdcls.dcls.kernels import Algorithm, ConvPlan, construct_kernel, dcls_conv, plan_conv

VERSIONS = ("v0", "gauss")
# Raw SIG init of dcls 0.1.1 (effective sigma = |SIG| + 0.27 = 0.5 cells).
DEFAULT_SIGMA_INIT = 0.23
# Std of the N(0, std) position init, in grid cells (paper / dcls 0.1.1).
POSITION_INIT_STD = 0.5


def _tuple(value: int | Sequence[int], dims: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    result = tuple(int(v) for v in value)
    if len(result) != dims:
        raise ValueError(f"{name} must be an int or {dims} ints, got {value!r}")
    return result


class _DclsNd(nn.Module):
    """Shared body of Dcls1d / Dcls2d: parameters, init, clamp, kernel, forward."""

    is_dcls = True
    dims = 0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_count: int,
        dilated_kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = "same",
        groups: int = 1,
        bias: bool = True,
        version: str = "v0",
        sigma_init: float = DEFAULT_SIGMA_INIT,
        shared_positions: nn.Parameter | None = None,
        algorithm: Algorithm = "auto",
        shared_sigma: nn.Parameter | None = None,
    ) -> None:
        super().__init__()
        dims = self.dims
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})")
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
        if kernel_count < 1:
            raise ValueError(f"kernel_count must be >= 1, got {kernel_count}")
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same', 'valid', an int or {dims} ints, got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_count = kernel_count
        self.dilated_kernel_size = _tuple(dilated_kernel_size, dims, "dilated_kernel_size")
        self.stride = _tuple(stride, dims, "stride")
        self.padding = padding if isinstance(padding, str) else _tuple(padding, dims, "padding")
        if self.padding == "same" and any(s != 1 for s in self.stride):
            raise ValueError("padding='same' needs stride 1 (as in torch); pass an int padding, e.g. dks // 2")
        self.groups = groups
        self.version = version
        self.sigma_init = float(sigma_init)
        self.algorithm: Algorithm = algorithm
        per_group = in_channels // groups
        self.weight = nn.Parameter(torch.empty(out_channels, per_group, kernel_count))
        shape = (dims, out_channels, per_group, kernel_count)
        if shared_positions is not None:
            if tuple(shared_positions.shape) != shape:
                raise ValueError(f"shared_positions has shape {tuple(shared_positions.shape)}, expected {shape}")
            self.P = shared_positions
        else:
            self.P = nn.Parameter(torch.empty(shape))
        if version == "gauss" and shared_sigma is not None:
            if tuple(shared_sigma.shape) != shape:
                raise ValueError(f"shared_sigma has shape {tuple(shared_sigma.shape)}, expected {shape}")
            self.SIG = shared_sigma
        elif version == "gauss":
            self.SIG = nn.Parameter(torch.empty(shape))
        else:
            if shared_sigma is not None:
                raise ValueError("shared_sigma is for version='gauss' only")
            self.register_parameter("SIG", None)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        # eval-mode kernel cache: (key of parameter identities and versions, kernel, supports)
        self._kernel_cache: tuple[tuple, Tensor, object, Tensor | None] | None = None
        self.reset_parameters(reset_positions=shared_positions is None, reset_sigma=shared_sigma is None)

    @property
    def sigma(self) -> nn.Parameter | None:
        """The raw Gaussian width parameter (effective sigma = |SIG| + 0.27); None for v0."""
        return self.SIG

    def reset_parameters(self, reset_positions: bool = True, reset_sigma: bool = True) -> None:
        """Paper init: kaiming-uniform weights, conv-style bias, positions ~ N(0, 0.5) clamped."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)
        with torch.no_grad():
            if reset_positions:
                init_positions_(self.P, self.dilated_kernel_size)
            if self.SIG is not None and reset_sigma:
                init.constant_(self.SIG, self.sigma_init)

    def clamp_parameters(self) -> None:
        """Keep every position within +-dks//2 of the centre; call after each optimiser step."""
        with torch.no_grad():
            for i, size in enumerate(self.dilated_kernel_size):
                lim = size // 2
                self.P[i].clamp_(-lim, lim)

    def construct_kernel(self) -> Tensor:
        """Dense (C_out, C_in/groups, *dks) kernel, built on the parameters' device."""
        return construct_kernel(self.weight, self.P, self.SIG, self.dilated_kernel_size, self.version)

    def tap_grid_positions(self) -> Tensor:
        """(dims, C_out, C_in/groups, K) tap centres in grid cells, row first (version-independent).

        dcls 0.1.1 stores the Gaussian positions column first; this undoes that for plotting.
        """
        with torch.no_grad():
            positions = self.P.detach().clone()
            if self.version == "gauss" and self.dims == 2:
                positions = positions.flip(0)
            offsets = torch.tensor([s // 2 for s in self.dilated_kernel_size], dtype=positions.dtype, device=positions.device)
            if self.version == "gauss" and self.dims == 2:
                offsets = offsets.flip(0)
            return positions + offsets.view(-1, 1, 1, 1)

    def kernel_support(self) -> list[tuple[int, int]] | None:
        """Per dim, the grid cells [lo, hi) the bilinear taps' corners cover (None for Gaussian
        kernels, which are nonzero everywhere). Outside it the kernel is zero and depends on no
        parameter, so convolving with the cropped kernel is exact. Taps start near the centre
        (positions ~ N(0, 0.5)) and spread as they learn, so the crop shrinks early training."""
        if self.version != "v0":
            return None
        with torch.no_grad():
            support = []
            for i, size in enumerate(self.dilated_kernel_size):
                centres = self.P[i] + size // 2
                lo = int(torch.floor(centres.min()).item())
                hi = int(torch.floor(centres.max()).item()) + 2  # the far corner, exclusive
                support.append((max(0, lo), min(size, hi)))
            return support

    def device_support(self) -> Tensor | None:
        """``kernel_support`` as an int32 tensor [lo0, hi0, lo1, hi1] on the parameters' device,
        computed without a host sync (the Triton kernel reads it to bound its loops)."""
        if self.version != "v0" or self.dims != 2:
            return None
        with torch.no_grad():
            bounds = []
            for i, size in enumerate(self.dilated_kernel_size):
                low, high = torch.aminmax(self.P[i].detach() + size // 2)
                bounds += [torch.floor(low).clamp_min(0), (torch.floor(high) + 2).clamp_max(size)]
            return torch.stack(bounds).to(torch.int32)

    def _parameter_key(self, x: Tensor) -> tuple:
        params = (self.weight, self.P, self.SIG)
        return tuple((p.data_ptr(), p._version) for p in params if p is not None) + (x.device, x.dtype)

    def _kernel_and_supports(self, x: Tensor) -> tuple[Tensor, object, Tensor | None]:
        """Dense kernel plus host support (CPU: the crop needs it there; a sync elsewhere) and
        device support (GPU); cached in eval mode without autograd, rebuilt when a parameter's
        version or storage changes."""
        use_cache = not self.training and not torch.is_grad_enabled()
        key = self._parameter_key(x) if use_cache else None
        if use_cache and self._kernel_cache is not None and self._kernel_cache[0] == key:
            return self._kernel_cache[1:]
        kernel = self.construct_kernel()
        on_cpu = x.device.type == "cpu"
        support = self.kernel_support() if on_cpu else None
        device_support = self.device_support() if not on_cpu and self.algorithm in ("auto", "triton") else None
        self._kernel_cache = (key, kernel, support, device_support) if use_cache else None
        return kernel, support, device_support

    def forward(self, x: Tensor) -> Tensor:
        kernel, support, device_support = self._kernel_and_supports(x)
        return dcls_conv(
            x, kernel, self.bias, self.stride, self.padding, self.groups, self.algorithm, support, device_support
        )

    def conv_plan(self, x: Tensor) -> ConvPlan:
        """What ``forward(x)`` runs (the algorithm 'auto' picks, the kernel crop), without running it."""
        with torch.no_grad():
            kernel = self.construct_kernel()
            support = self.kernel_support() if x.device.type == "cpu" else None
        return plan_conv(x, kernel, self.stride, self.padding, self.groups, self.algorithm, support)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_count={self.kernel_count}, "
            f"dilated_kernel_size={self.dilated_kernel_size}, version={self.version}, stride={self.stride}, "
            f"padding={self.padding}"
        )
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if not self.P.requires_grad:
            s += ", positions frozen"
        return s


class Dcls1d(_DclsNd):
    """1-D DCLS convolution: input (N, C_in, L) -> (N, C_out, L_out); P is (1, C_out, C_in/g, K)."""

    dims = 1


class Dcls2d(_DclsNd):
    """2-D DCLS convolution: input (N, C_in, H, W); P is (2, C_out, C_in/g, K).

    Args:
        in_channels, out_channels, groups, stride, bias: as ``nn.Conv2d``.
        kernel_count: taps per (out, in) channel pair (the learnable weights).
        dilated_kernel_size: side of the grid the taps move in (e.g. 17).
        padding: "same" (stride 1 only), "valid", an int or a pair; ``dks // 2`` equals "same" for odd dks.
        version: "v0" (bilinear, ICLR 2023) or "gauss" (Gaussian interpolation with learnable SIG).
        sigma_init: initial raw SIG (effective sigma = |SIG| + 0.27).
        shared_positions: reuse this P parameter (e.g. one per ConvNeXt stage) instead of a new one.
        shared_sigma: likewise for SIG (Gaussian only; the authors share it per stage with P).
        algorithm: "auto" (CUDA: Triton for depthwise stride-1 layers when importable, else
            cuDNN; CPU: 'mixed' (oneDNN channels_last + FFT kernel gradient) / FFT / Toeplitz
            matmul for large kernels, else F.conv2d), or force one of "triton", "cudnn"
            (= "direct"), "fft", "matmul", "mixed". ``conv_plan(x)`` says which one runs.
    """

    dims = 2


def new_positions(
    dims: int, out_channels: int, in_per_group: int, kernel_count: int, dilated_kernel_size: int | Sequence[int]
) -> nn.Parameter:
    """A freshly initialised position parameter, e.g. to share across the blocks of a stage."""
    sizes = _tuple(dilated_kernel_size, dims, "dilated_kernel_size")
    param = nn.Parameter(torch.empty(dims, out_channels, in_per_group, kernel_count))
    with torch.no_grad():
        init_positions_(param, sizes)
    return param


def new_sigma(
    dims: int, out_channels: int, in_per_group: int, kernel_count: int, sigma_init: float = DEFAULT_SIGMA_INIT
) -> nn.Parameter:
    """A fresh Gaussian width parameter SIG (constant ``sigma_init``), e.g. shared per stage."""
    return nn.Parameter(torch.full((dims, out_channels, in_per_group, kernel_count), float(sigma_init)))


def init_positions_(positions: Tensor, dilated_kernel_size: Sequence[int]) -> Tensor:
    """In place: N(0, 0.5) per coordinate, clamped to +-dks//2 (as the paper and dcls 0.1.1)."""
    with torch.no_grad():
        for i, size in enumerate(dilated_kernel_size):
            lim = size // 2
            init.normal_(positions[i], 0.0, POSITION_INIT_STD).clamp_(-lim, lim)
    return positions


def dcls_modules(model: nn.Module) -> list[_DclsNd]:
    """All DCLS layers of a model."""
    return [m for m in model.modules() if getattr(m, "is_dcls", False)]


def clamp_dcls_parameters(model: nn.Module) -> None:
    """Clamp the positions of every DCLS layer (shared positions are clamped once per user: idempotent)."""
    for module in dcls_modules(model):
        module.clamp_parameters()


# parameter names of the position group: positions and (Gaussian) widths, no decay, lr x scale
POSITION_GROUP_NAMES = ("P", "SIG")


def in_position_group(name: str) -> bool:
    """Whether a parameter belongs to the DCLS position group (``P`` and, as published for the
    Gaussian variant, ``SIG``: no weight decay, the position learning-rate scale)."""
    return name.rsplit(".", 1)[-1] in POSITION_GROUP_NAMES


def position_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Unique trainable ``P`` and ``SIG`` tensors (for a separate optimiser group: 5x lr, no decay)."""
    seen: set[int] = set()
    result: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if in_position_group(name) and param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            result.append(param)
    return result
