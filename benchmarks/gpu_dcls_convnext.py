"""GPU training throughput of ConvNeXt dense vs DCLS (paper: DCLS/dense ~ 0.94 for ConvNeXt-T).

Trains each model for --steps steps on random ImageNet-shaped tensors (bf16 autocast,
channels_last, AdamW, position clamp after every step), in alternating chunks so that clock and
thermal drift hit both alike, and prints img/s per model and one summary line:

    RATIO dcls/dense = X.XX

Runs on CPU for a syntax check: ``--device cpu --steps 2 --model convnext_atto --batch 4``.
Needs nothing beyond the project venv (torch, timm, tsdcls). Budget: < 4 min on one H100.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import timm
import torch
from torch import nn

from tsdcls.dcls import clamp_dcls_parameters, convert_model, dcls_modules


def build(model_name: str, variant: str, taps: int, dks: int, algorithm: str, device: torch.device) -> nn.Module:
    model = timm.create_model(model_name, num_classes=1000)
    if variant != "dense":
        convert_model(model, variant, taps, dks, share_positions_per_stage=True)
        for layer in dcls_modules(model):
            layer.algorithm = algorithm
    return model.to(device=device, memory_format=torch.channels_last)


def make_step(model: nn.Module, device: torch.device, batch: int, size: int, amp: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = nn.CrossEntropyLoss()
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        clamp_dcls_parameters(model)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="convnext_tiny")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per model first (15; CPU 1)")
    parser.add_argument("--chunk", type=int, default=25, help="steps per model before switching")
    parser.add_argument("--batch", type=int, default=None, help="128 (CPU: 4)")
    parser.add_argument("--image-size", type=int, default=None, help="224 (CPU: 64)")
    parser.add_argument("--taps", type=int, default=34)
    parser.add_argument("--dks", type=int, default=17)
    parser.add_argument("--variant", default="dcls_v0", choices=["dcls_v0", "dcls_gauss", "dcls_frozen"])
    parser.add_argument("--algorithm", default="auto", help="DCLS conv algorithm: auto|direct|fft")
    parser.add_argument("--extra-algorithms", default="", help="comma list of further algorithms to time too")
    parser.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    args.warmup = args.warmup if args.warmup is not None else (15 if on_gpu else 1)
    args.batch = args.batch or (128 if on_gpu else 4)
    args.image_size = args.image_size or (224 if on_gpu else 64)
    amp = not args.no_amp and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; torch {torch.__version__}; {args.model} batch {args.batch} {args.image_size}px; "
          f"amp={'bf16' if amp else 'off'}; channels_last; {args.steps} steps", flush=True)

    candidates = {"dense": ("dense", "auto"), "dcls": (args.variant, args.algorithm)}
    for algo in filter(None, args.extra_algorithms.split(",")):
        candidates[f"dcls[{algo}]"] = (args.variant, algo)
    steps = {}
    for label, (variant, algo) in candidates.items():
        model = build(args.model, variant, args.taps, args.dks, algo, device)
        params = sum(p.numel() for p in model.parameters())
        steps[label] = make_step(model, device, args.batch, args.image_size, amp)
        start = time.perf_counter()
        for _ in range(args.warmup):
            steps[label]()
        sync(device)
        print(f"{label:>12}: {params:,} params, warm-up {time.perf_counter() - start:.1f} s", flush=True)

    elapsed = dict.fromkeys(steps, 0.0)
    done = dict.fromkeys(steps, 0)
    while min(done.values()) < args.steps:
        for label, step in steps.items():
            n = min(args.chunk, args.steps - done[label])
            if n <= 0:
                continue
            sync(device)
            start = time.perf_counter()
            for _ in range(n):
                step()
            sync(device)
            elapsed[label] += time.perf_counter() - start
            done[label] += n
    throughput = {label: done[label] * args.batch / elapsed[label] for label in steps}
    for label, ips in throughput.items():
        print(f"{label:>12}: {ips:,.1f} img/s ({1000 * elapsed[label] / done[label]:.1f} ms/step)")
    if device.type == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    for label in steps:
        if label.startswith("dcls["):
            print(f"ratio {label}/dense = {throughput[label] / throughput['dense']:.2f}")
    print(f"RATIO dcls/dense = {throughput['dcls'] / throughput['dense']:.2f}  (paper ~0.94; target >= 0.94)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
