"""CPU speed of tsdcls DCLS layers against the authors' dcls 0.1.1 and a dense depthwise conv.

Two measurements, each interleaved round by round (A, B, C, A, B, C, ...) so that load from other
processes hits every candidate alike, reported as medians over rounds:

1. one layer, forward + backward: 96 channels, 56x56, batch 8, 34 taps in a 17x17 grid
   (ConvNeXt-T stage 1): dcls 0.1.1 vs ours (auto algorithm, v0 and gauss) vs dense 7x7;
2. a ConvNeXt training step (forward, backward, AdamW step, position clamp) on random images:
   timm convnext_atto dense vs the same model converted to DCLS.

Bilinear (v0) layers crop their kernel to the cells their taps cover, which is small at
initialisation (positions ~ N(0, 0.5)) and grows as the taps spread during training. So v0 is
timed twice: at init, and with "spread" taps (positions uniform over the whole grid, the
worst case, like the trained ConvNeXt-dcls kernels). The spread numbers are the headline ratios.

Usage: python benchmarks/bench_dcls_layers.py [--rounds 7] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable

import timm
import torch
from torch import nn

from tsdcls.dcls import Dcls2d, clamp_dcls_parameters, convert_model


def _reference_layer(channels: int, taps: int, dks: int, version: str) -> nn.Module:
    logging.disable(logging.WARNING)  # dcls warns about its missing CUDA kernel on every init
    from DCLS.construct.modules import Dcls2d as ReferenceDcls2d

    layer = ReferenceDcls2d(
        channels, channels, kernel_count=taps, dilated_kernel_size=dks, padding=dks // 2,
        groups=channels, version=version, use_implicit_gemm=False,
    )
    logging.disable(logging.NOTSET)
    return layer


def spread_taps(module: nn.Module, seed: int = 0) -> nn.Module:
    """Positions uniform over each DCLS layer's whole grid: the kernel support of a trained model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if getattr(layer, "is_dcls", False):
                for i, size in enumerate(layer.dilated_kernel_size):
                    lim = size // 2
                    layer.P[i].copy_(torch.rand(layer.P[i].shape, generator=generator) * 2 * lim - lim)
    return module


def _layer_step(layer: nn.Module, x: torch.Tensor) -> Callable[[], float]:
    def run() -> float:
        inp = x.detach().requires_grad_(True)
        layer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = layer(inp)
        out.backward(torch.ones_like(out))
        return time.perf_counter() - start

    return run


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def run() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        clamp_dcls_parameters(model)
        return time.perf_counter() - start

    return run


def interleaved(candidates: dict[str, Callable[[], float]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Times of each candidate, one call per round in turn; the first `warmup` rounds dropped."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(rounds + warmup):
        for name, fn in candidates.items():
            elapsed = fn()
            if r >= warmup:
                times[name].append(elapsed)
    return times


def ratio_spread(numerator: list[float], denominator: list[float]) -> tuple[float, float]:
    """Min and max over rounds of the per-round ratio (both timed in the same round, so the load
    of that moment hits both): how much the median ratio can be trusted."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return min(ratios), max(ratios)


def _table(title: str, times: dict[str, list[float]], baseline: str) -> list[dict[str, float | str]]:
    base = statistics.median(times[baseline])
    print(f"\n{title}")
    print(f"{'candidate':<34}{'median s':>10}{'min s':>10}{'x ' + baseline:>16}")
    rows = []
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<34}{med:>10.4f}{min(values):>10.4f}{med / base:>16.2f}")
        rows.append({"candidate": name, "median_s": med, "min_s": min(values), "relative": med / base})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", type=int, default=96)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default="convnext_atto")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--skip-reference", action="store_true", help="leave out dcls 0.1.1 (slow)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    taps, dks, channels = 34, 17, args.channels
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds (medians)")

    # 1. one layer, forward + backward
    x = torch.randn(args.batch, channels, args.size, args.size)
    ours_v0 = Dcls2d(channels, channels, taps, dks, groups=channels, version="v0")
    ours_v0_spread = spread_taps(Dcls2d(channels, channels, taps, dks, groups=channels, version="v0"))
    ours_gauss = Dcls2d(channels, channels, taps, dks, groups=channels, version="gauss")
    ours_direct = spread_taps(Dcls2d(channels, channels, taps, dks, groups=channels, version="v0", algorithm="direct"))
    dense = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
    layers: dict[str, Callable[[], float]] = {}
    if not args.skip_reference:
        reference = _reference_layer(channels, taps, dks, "v0")
        ours_v0.load_state_dict(reference.state_dict())
        layers["dcls 0.1.1 v0 (F.conv2d 17x17)"] = _layer_step(reference, x)
    layers["ours v0 (auto, spread taps)"] = _layer_step(ours_v0_spread, x)
    layers["ours v0 (auto, taps at init)"] = _layer_step(ours_v0, x)
    layers["ours gauss (auto)"] = _layer_step(ours_gauss, x)
    layers["ours v0 (direct, spread taps)"] = _layer_step(ours_direct, x)
    layers["dense 7x7 depthwise"] = _layer_step(dense, x)
    layer_times = interleaved(layers, args.rounds)
    baseline = "ours v0 (auto, spread taps)"
    layer_rows = _table(
        f"Layer fwd+bwd: batch {args.batch}, {channels} ch, {args.size}x{args.size}, {taps} taps in {dks}x{dks}",
        layer_times, baseline,
    )
    result: dict[str, object] = {"layer": layer_rows}
    ours_med = statistics.median(layer_times[baseline])
    if not args.skip_reference:
        ref_med = statistics.median(layer_times["dcls 0.1.1 v0 (F.conv2d 17x17)"])
        speedup = ref_med / ours_med
        result["layer_speedup_vs_dcls"] = speedup
        print(f"RATIO dcls-0.1.1 / ours (layer fwd+bwd, spread taps) = {speedup:.2f}x  (target >= 5)")
    dense_med = statistics.median(layer_times["dense 7x7 depthwise"])
    print(f"RATIO ours / dense-7x7 (layer fwd+bwd, spread taps) = {ours_med / dense_med:.2f}")

    # 2. ConvNeXt training step
    images = torch.randn(args.batch, 3, args.image_size, args.image_size)
    labels = torch.randint(0, 1000, (args.batch,))
    dense_model = timm.create_model(args.model)
    dcls_model = timm.create_model(args.model)
    report = convert_model(dcls_model, "dcls_v0", taps, dks, share_positions_per_stage=True)
    spread_model = timm.create_model(args.model)
    convert_model(spread_model, "dcls_v0", taps, dks, share_positions_per_stage=True)
    spread_taps(spread_model)
    gauss_model = timm.create_model(args.model)
    convert_model(gauss_model, "dcls_gauss", taps, dks, share_positions_per_stage=True)
    steps = {
        f"{args.model} dense": _train_step(dense_model, images, labels),
        f"{args.model} dcls v0 spread taps": _train_step(spread_model, images, labels),
        f"{args.model} dcls v0 taps at init": _train_step(dcls_model, images, labels),
        f"{args.model} dcls gauss": _train_step(gauss_model, images, labels),
    }
    step_times = interleaved(steps, args.rounds)
    step_rows = _table(
        f"Training step (fwd+bwd+AdamW): {args.model}, batch {args.batch}, {args.image_size}px, "
        f"{report.replaced} DCLS layers",
        step_times, f"{args.model} dense",
    )
    dense_step = statistics.median(step_times[f"{args.model} dense"])
    step_ratio = statistics.median(step_times[f"{args.model} dcls v0 spread taps"]) / dense_step
    init_ratio = statistics.median(step_times[f"{args.model} dcls v0 taps at init"]) / dense_step
    low, high = ratio_spread(step_times[f"{args.model} dcls v0 spread taps"], step_times[f"{args.model} dense"])
    print(f"RATIO step dcls-v0 / dense = {step_ratio:.2f} with spread taps (per-round range {low:.2f}..{high:.2f}; "
          f"target <= 1.3); {init_ratio:.2f} at init")
    result.update({"train_step": step_rows, "step_ratio_dcls_over_dense": step_ratio, "step_ratio_range": [low, high],
                   "step_ratio_at_init": init_ratio,
                   "params_dense": report.params_before, "params_dcls": report.params_after})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
