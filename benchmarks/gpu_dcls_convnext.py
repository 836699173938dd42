"""GPU benchmark of DCLS ConvNeXt: each stage's depthwise layer, then whole-model throughput.

(a) Per ConvNeXt-T stage (maps 56/28/14/7, C 96/192/384/768, batch 128, bf16 autocast,
    channels_last): median ms of forward and forward+backward for the DCLS layer on the Triton
    kernel (34 taps in 17x17, trained-like spread taps), the same layer on cuDNN (17x17 kernel),
    and the dense 7x7 depthwise conv it replaces. Target: Triton-DCLS <= 2x dense 7x7.
(b) ConvNeXt-T training step (AdamW, bf16, channels_last, position clamp) and inference
    (eval, no_grad; DCLS folded into dense convs, and unfolded with the eval kernel cache) in
    img/s for dense, DCLS-v0 and DCLS-Gauss, in alternating chunks so that clock and thermal
    drift hit every model alike. Targets: DCLS/dense >= 0.90 for training and inference.

    python benchmarks/gpu_dcls_convnext.py            # full run, one GPU, about 5 minutes
    python benchmarks/gpu_dcls_convnext.py --tiny     # CPU, seconds: proves it runs end to end

``--tiny`` shrinks every shape (convnext_atto at 32 px, batch 2); its numbers mean nothing.
On a machine without CUDA the Triton rows fall back to another algorithm, and the output says
which algorithm actually ran in each row.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import timm
import torch
from torch import nn

import tsdcls.dcls  # noqa: F401 - registers the DCLS timm models
from tsdcls.dcls import Dcls2d, clamp_dcls_parameters, dcls_modules, fold_dcls
from tsdcls.dcls.kernels import _triton_reason, choose_algorithm

STAGES_FULL = ((56, 96), (28, 192), (14, 384), (7, 768))
STAGES_TINY = ((8, 8), (4, 16))


@dataclass
class Settings:
    device: torch.device
    batch: int
    image_size: int
    model: str
    stages: tuple[tuple[int, int], ...]
    warmup: int
    iters: int
    steps: int
    chunk: int
    amp: bool


def settings(args: argparse.Namespace) -> Settings:
    device = torch.device(args.device or ("cpu" if args.tiny or not torch.cuda.is_available() else "cuda"))
    if args.tiny:
        return Settings(device, 2, 32, "convnext_atto", STAGES_TINY, 1, 2, 2, 1, device.type == "cuda")
    return Settings(device, args.batch, 224, "convnext_tiny", STAGES_FULL, 10, args.iters, args.steps, 25, device.type == "cuda")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(s: Settings) -> contextlib.AbstractContextManager:
    return torch.autocast(s.device.type, dtype=torch.bfloat16) if s.amp else contextlib.nullcontext()


def median_ms(fn: Callable[[], object], s: Settings) -> float:
    """Median wall time of ``fn`` over ``s.iters`` calls after ``s.warmup``, synchronised."""
    for _ in range(s.warmup):
        fn()
    times = []
    for _ in range(s.iters):
        sync(s.device)
        start = time.perf_counter()
        fn()
        sync(s.device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


# --------------------------------------------------------------------------- (a) layers
def spread_layer(channels: int, algorithm: str, s: Settings) -> Dcls2d:
    """A DCLS-v0 depthwise layer with taps spread over the whole grid (as after training)."""
    layer = Dcls2d(channels, channels, 34, 17, groups=channels, algorithm=algorithm)
    with torch.no_grad():
        layer.P.uniform_(-8, 8)
    return layer.to(s.device)


def resolved_algorithm(layer: nn.Module, x: torch.Tensor) -> str:
    """The algorithm dcls_conv will actually run for this layer and input (for the printout)."""
    if not isinstance(layer, Dcls2d):
        return "cudnn" if x.device.type == "cuda" else "direct"
    kernel = torch.empty(layer.out_channels, 1, *layer.dilated_kernel_size, device=x.device)
    reason = _triton_reason(x, kernel, layer.stride, layer.groups, layer.algorithm)
    algo = choose_algorithm(x.device, kernel[0, 0].numel(), 1, x[0, 0].numel(), layer.algorithm, reason)
    return "cudnn" if algo == "direct" and x.device.type == "cuda" else algo


def time_layer(layer: nn.Module, size: int, channels: int, s: Settings) -> tuple[float, float]:
    x = torch.randn(s.batch, channels, size, size, device=s.device).contiguous(memory_format=torch.channels_last)
    if s.amp:
        x = x.to(torch.bfloat16)
    x.requires_grad_(True)
    with autocast(s):
        grad = torch.randn_like(layer(x))

    def forward() -> None:
        with torch.no_grad(), autocast(s):
            layer(x)

    def forward_backward() -> None:
        with autocast(s):
            y = layer(x)
        y.backward(grad)

    return median_ms(forward, s), median_ms(forward_backward, s)


def layer_table(s: Settings) -> list[dict]:
    print(f"\n(a) depthwise layers, batch {s.batch}, {'bf16' if s.amp else 'fp32'}, channels_last; median ms")
    print(f"{'stage':>10} {'layer':>14} {'runs as':>8} {'fwd':>8} {'fwd+bwd':>8}")
    rows = []
    for size, channels in s.stages:
        layers = {
            "dcls-triton": spread_layer(channels, "triton", s),
            "dcls-cudnn17": spread_layer(channels, "cudnn", s),
            "dense-7x7": nn.Conv2d(channels, channels, 7, padding=3, groups=channels).to(s.device),
        }
        for name, layer in layers.items():
            probe = torch.empty(1, channels, size, size, device=s.device)
            fwd, fwd_bwd = time_layer(layer, size, channels, s)
            runs_as = resolved_algorithm(layer, probe)
            rows.append({"size": size, "channels": channels, "layer": name, "runs_as": runs_as, "fwd": fwd, "fwd_bwd": fwd_bwd})
            print(f"{size:>4}x{size:<3}C{channels:<3} {name:>14} {runs_as:>8} {fwd:8.3f} {fwd_bwd:8.3f}", flush=True)
    for size, _ in s.stages:
        by = {r["layer"]: r for r in rows if r["size"] == size}
        print(f"  {size}x{size}: triton/dense7 fwd {by['dcls-triton']['fwd'] / by['dense-7x7']['fwd']:.2f}x, "
              f"fwd+bwd {by['dcls-triton']['fwd_bwd'] / by['dense-7x7']['fwd_bwd']:.2f}x (target <= 2); "
              f"triton vs cudnn17 fwd+bwd {by['dcls-cudnn17']['fwd_bwd'] / by['dcls-triton']['fwd_bwd']:.2f}x faster")
    return rows


# --------------------------------------------------------------------------- (b) models
def build_model(name: str, kwargs: dict, s: Settings) -> nn.Module:
    model = timm.create_model(name, num_classes=1000, **kwargs)
    return model.to(device=s.device, memory_format=torch.channels_last)


def model_names(s: Settings) -> dict[str, tuple[str, dict]]:
    """label -> (timm name, kwargs): ConvNeXt-T-Gauss is its own registration (26 taps, 23x23)."""
    base = s.model
    gauss = (f"{base}_dcls_gauss", {}) if base == "convnext_tiny" else (f"{base}_dcls", {"dcls_variant": "dcls_gauss"})
    return {"dense": (base, {}), "dcls_v0": (f"{base}_dcls", {}), "dcls_gauss": gauss}


def train_step(model: nn.Module, s: Settings) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = nn.CrossEntropyLoss()
    images = torch.randn(s.batch, 3, s.image_size, s.image_size, device=s.device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (s.batch,), device=s.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(s):
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        clamp_dcls_parameters(model)

    return step


def infer_step(model: nn.Module, s: Settings) -> Callable[[], None]:
    images = torch.randn(s.batch, 3, s.image_size, s.image_size, device=s.device).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.no_grad(), autocast(s):
            model(images)

    return step


def interleaved_throughput(steps: dict[str, Callable[[], None]], s: Settings) -> dict[str, float]:
    """img/s per step function, timed in alternating chunks after one warm-up each."""
    for step in steps.values():
        for _ in range(max(1, s.warmup // 2)):
            step()
    sync(s.device)
    elapsed = dict.fromkeys(steps, 0.0)
    done = dict.fromkeys(steps, 0)
    while min(done.values()) < s.steps:
        for label, step in steps.items():
            n = min(s.chunk, s.steps - done[label])
            sync(s.device)
            start = time.perf_counter()
            for _ in range(n):
                step()
            sync(s.device)
            elapsed[label] += time.perf_counter() - start
            done[label] += n
    return {label: done[label] * s.batch / elapsed[label] for label in steps}


def model_table(s: Settings) -> dict[str, float]:
    names = model_names(s)
    print(f"\n(b) {s.model}: batch {s.batch}, {s.image_size} px, {'bf16' if s.amp else 'fp32'}, channels_last")
    train_steps, infer_steps = {}, {}
    for label, (name, kwargs) in names.items():
        torch.manual_seed(0)
        model = build_model(name, kwargs, s)
        for layer in dcls_modules(model):  # trained-like taps
            with torch.no_grad():
                layer.P.uniform_(-(layer.dilated_kernel_size[0] // 2), layer.dilated_kernel_size[0] // 2)
        print(f"{label:>12}: {name}, {sum(p.numel() for p in model.parameters()):,} params", flush=True)
        train_steps[label] = train_step(model, s)
        eval_model = build_model(name, kwargs, s)
        eval_model.load_state_dict(model.state_dict())
        eval_model.eval()
        infer_steps[label] = infer_step(eval_model, s)
        if label != "dense":
            infer_steps[f"{label}-folded"] = infer_step(fold_dcls(eval_model), s)
    results = {}
    for kind, steps in (("train", train_steps), ("infer", infer_steps)):
        throughput = interleaved_throughput(steps, s)
        for label, ips in throughput.items():
            results[f"{kind}/{label}"] = ips
            ratio = ips / throughput["dense"]
            print(f"{kind:>6} {label:>18}: {ips:10,.1f} img/s   /dense {ratio:.2f}", flush=True)
    if s.device.type == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated(s.device) / 2**30:.1f} GiB")
    print("targets: train and infer DCLS/dense >= 0.90 (paper ~0.94 for training)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU-sized shapes, a few iterations (a run-through, not a measurement)")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--iters", type=int, default=30, help="timed calls per layer measurement")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per model")
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--skip-models", action="store_true")
    args = parser.parse_args(argv)
    s = settings(args)
    if s.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(s.device) if s.device.type == "cuda" else "cpu"
    print(f"device {name}; torch {torch.__version__}; triton {_triton_version()}", flush=True)
    if s.device.type != "cuda":
        print("NOTE: no CUDA device: Triton rows run another algorithm (see 'runs as'); numbers are not GPU numbers")
    if not args.skip_layers:
        layer_table(s)
    if not args.skip_models:
        model_table(s)
    return 0


def _triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "not installed"
    return triton.__version__


if __name__ == "__main__":
    sys.exit(main())
