"""Training step time and inference throughput of dense vs DCLS variants, as the trainer runs them.

Uses the trainer's own model builder, optimiser groups, autocast and clamp, on synthetic batches
(no data loading), interleaving the variants round by round and reporting medians, because
shared machines are noisy. Prints one line per variant and the ratio to dense.

    python benchmarks/bench_dcls_train.py                       # CPU, tiny ConvNeXt, 32 px
    python benchmarks/bench_dcls_train.py --device cuda --arch convnext_tiny --image-size 224 \
        --batch 64 --kernel-count 34 --dks 17 --channels-last
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from tsdcls.dcls.layers import clamp_dcls_parameters
from tsdcls.dcls.train import RunSpec, TrainConfig, build_run_model, param_groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="convnext_atto")
    parser.add_argument("--tiny", action="store_true", help="depths 2x4, dims 16..128, patch 2 (default on CPU)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--kernel-count", type=int, default=24)
    parser.add_argument("--dks", type=int, default=9)
    parser.add_argument("--variants", default="dense,dilated,dcls_v0,dcls_gauss")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tiny = args.tiny or device.type == "cpu"
    family = {"arch": args.arch, "share_positions_per_stage": True,
              "kwargs": {"depths": [2, 2, 2, 2], "dims": [16, 32, 64, 128], "patch_size": 2} if tiny else {}}
    config = {"families": {"f": family}}
    cfg = TrainConfig(channels_last=args.channels_last)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext())
    runs = {}
    for variant in args.variants.split(","):
        k, d = (0, 0) if variant == "dense" else (args.kernel_count, args.dks)
        model, report = build_run_model(config, RunSpec("f", variant, k, d, 0), num_classes=1000 if not tiny else 10)
        model.to(device)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=1e-4)
        runs[variant] = {"model": model, "opt": optimizer, "params": report["params_after"], "train": [], "infer": []}
    memory = torch.channels_last if args.channels_last else torch.contiguous_format
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device).contiguous(memory_format=memory)
    labels = torch.randint(0, 10, (args.batch,), device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for round_index in range(args.rounds + 1):  # round 0 warms up (cuDNN autotune, allocator)
        for run in runs.values():
            model, optimizer = run["model"], run["opt"]
            model.train()
            for _ in range(args.steps):
                sync()
                start = time.perf_counter()
                with autocast:
                    loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                clamp_dcls_parameters(model)
                sync()
                if round_index:
                    run["train"].append(time.perf_counter() - start)
            model.eval()
            with torch.no_grad():
                for _ in range(args.steps):
                    sync()
                    start = time.perf_counter()
                    with autocast:
                        model(images)
                    sync()
                    if round_index:
                        run["infer"].append(time.perf_counter() - start)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{args.threads}"
    print(f"device {name}; {args.arch}{' (tiny)' if tiny else ''} {args.image_size}px batch {args.batch}; "
          f"K={args.kernel_count} dks={args.dks}; medians of {args.rounds}x{args.steps} interleaved steps")
    dense = runs.get("dense")
    for variant, run in runs.items():
        step_ms = 1000 * statistics.median(run["train"])
        img_s = args.batch / statistics.median(run["infer"])
        ratio = ""
        if dense is not None:
            low, high = _round_ratio_range(run["train"], dense["train"], args.steps)
            ratio = (f"  step x{step_ms / (1000 * statistics.median(dense['train'])):.2f} vs dense "
                     f"(per-round range {low:.2f}..{high:.2f})")
        print(f"{variant:12s} params {run['params']:>11,}  train step {step_ms:8.1f} ms  "
              f"inference {img_s:9.0f} img/s{ratio}")


def _round_ratio_range(times: list[float], dense: list[float], steps: int) -> tuple[float, float]:
    """Min and max over rounds of (median step of the variant / median dense step) in that round:
    both ran back to back, so the range shows how much the machine's load moved the ratio."""
    ratios = [statistics.median(times[i:i + steps]) / statistics.median(dense[i:i + steps])
              for i in range(0, len(times), steps)]
    return min(ratios), max(ratios)


if __name__ == "__main__":
    main()
