"""Evaluation of one trained grid cell: top-1/top-5, per-class accuracy, robustness, throughput.

Runs on the final weights written by the trainer, so a change of evaluation settings (new
robustness sets, another batch size) never retrains. Also exports the learned tap positions
and weights of the DCLS layers as JSON for the kernel figures (figures read files, not models).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from tsdcls.common.io import read_json, write_json
from tsdcls.common.job import Job
from tsdcls.dcls.data import Normalize, build_source
from tsdcls.dcls.layers import dcls_modules
from tsdcls.dcls.train import RunSpec, build_run_model, load_weights

LOG = logging.getLogger("tsdcls.dcls.evaluate")


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, num_classes: int, device: torch.device,
                   batch_size: int = 256, normalize: Normalize | None = None, desc: str = "eval",
                   channels_last: bool = False, num_workers: int = 0, amp: bool = False) -> dict[str, Any]:
    """Top-1, top-5 (in %), mean loss and per-class top-1 over ``dataset`` (bf16 autocast on GPU)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    correct1 = correct5 = seen = 0
    loss_sum = 0.0
    per_class_correct = np.zeros(num_classes, dtype=np.int64)
    per_class_seen = np.zeros(num_classes, dtype=np.int64)
    top_k = min(5, num_classes)
    for images, labels in tqdm(loader, desc=desc, leave=False, mininterval=15.0):
        images, labels = images.to(device), labels.to(device)
        if normalize is not None:
            images = normalize(images)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            logits = model(images).float()
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        top = logits.topk(top_k, dim=-1).indices
        hit1 = top[:, 0] == labels
        correct1 += int(hit1.sum())
        correct5 += int((top == labels[:, None]).any(dim=-1).sum())
        seen += labels.numel()
        labels_np, hit_np = labels.cpu().numpy(), hit1.cpu().numpy()
        np.add.at(per_class_seen, labels_np, 1)
        np.add.at(per_class_correct, labels_np, hit_np.astype(np.int64))
    per_class = np.where(per_class_seen > 0, 100.0 * per_class_correct / np.maximum(per_class_seen, 1), np.nan)
    return {
        "top1": 100.0 * correct1 / max(seen, 1), "top5": 100.0 * correct5 / max(seen, 1),
        "loss": loss_sum / max(seen, 1), "images": seen,
        "per_class_top1": [None if np.isnan(v) else float(v) for v in per_class],
    }


def _autocast(device: torch.device, amp: bool) -> Any:
    """bf16 autocast on GPU when configured; never on CPU."""
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def measure_gmacs(model: nn.Module, image_shape: tuple[int, ...], device: torch.device) -> float:
    """Multiply-accumulates (G) of one forward pass of one image, as executed: torch's
    FlopCounterMode counts 2 FLOPs per MAC; the papers' "FLOPs" are MACs. A DCLS layer counts
    the conv it really runs (on CPU, the kernel cropped to its taps' support)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, *image_shape, device=device))
    model.train(was_training)
    return counter.get_total_flops() / 2e9


@torch.no_grad()
def measure_throughput(model: nn.Module, image_shape: tuple[int, ...], device: torch.device,
                       batch_size: int = 128, warmup: int = 2, iterations: int = 5,
                       channels_last: bool = False, amp: bool = False) -> float:
    """Inference images per second: median over ``iterations`` timed forward passes."""
    model.eval()
    batch = torch.randn((batch_size, *image_shape), device=device)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    timings = []
    for i in range(warmup + iterations):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with _autocast(device, amp):
            model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            timings.append(time.perf_counter() - start)
    return float(batch_size / np.median(timings))


def kernel_snapshot(model: nn.Module, max_channels: int = 8) -> list[dict[str, Any]]:
    """Learned tap positions and weights of every DCLS layer (first ``max_channels`` channels)."""
    layers = []
    name_of = {module: name for name, module in model.named_modules()}
    for module in dcls_modules(model):
        positions = getattr(module, "P", None)
        weight = getattr(module, "weight", None)
        if positions is None or weight is None:
            continue
        channels = min(max_channels, positions.shape[1])
        dks = getattr(module, "dilated_kernel_size", None)
        layers.append({
            "layer": name_of.get(module, "?"),
            "version": getattr(module, "version", "v0"),
            # bilinear taps store (row, column); the Gaussian ones (column, row), as dcls 0.1.1
            "axes": "col,row" if getattr(module, "version", "v0") == "gauss" else "row,col",
            "dilated_kernel_size": list(dks) if isinstance(dks, tuple | list) else dks,
            "kernel_count": int(positions.shape[-1]),
            "positions": positions.detach()[:, :channels, 0, :].cpu().tolist(),  # (2, channels, K)
            "weights": weight.detach()[:channels, 0, :].cpu().tolist() if weight.ndim == 3 else None,
            "sigma": (module.SIG.detach()[:, :channels, 0, :].abs().cpu().tolist()
                      if getattr(module, "SIG", None) is not None and module.SIG.ndim == 4 else None),
        })
    return layers


def run_evaluate(job: Job) -> None:
    """Verb `dcls-evaluate`: metrics.json (accuracy, robustness, speed) and kernels.json of one run."""
    spec = RunSpec.from_job(job)
    device = torch.device(job.device if job.device != "auto" else "cpu")
    eval_cfg: Mapping[str, Any] = job.config.get("evaluate", {})
    train_cfg: Mapping[str, Any] = job.config.get("train", {})
    channels_last = bool(train_cfg.get("channels_last", False))
    amp = bool(train_cfg.get("amp", True))
    workers = 0 if job.config.get("data", {}).get("dataset", "fashion_mnist") == "fashion_mnist" \
        else int(train_cfg.get("num_workers", 0))
    saved = load_weights(job.input("weights"))
    record = read_json(job.input("train"))

    source = build_source(job.config.get("data", {}), spec.seed)
    model, _ = build_run_model(job.config, spec, source.num_classes)
    use_ema = bool(eval_cfg.get("use_ema", False)) and saved.get("ema") is not None
    model.load_state_dict(saved["ema"] if use_ema else saved["model"])
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    batch_size = int(eval_cfg.get("batch_size", 256))

    val = source.dataset("val")
    clean = evaluate_model(model, val, source.num_classes, device, batch_size, source.normalize,
                           f"{spec.run_id} val", channels_last, workers, amp)
    robustness = {}
    for name, dataset in source.robustness_sets().items():
        result = evaluate_model(model, dataset, source.num_classes, device, batch_size, source.normalize,
                                f"{spec.run_id} {name}", channels_last, workers, amp)
        robustness[name] = {"top1": result["top1"], "top5": result["top5"]}
    sample, _ = val[0]
    img_per_s = measure_throughput(
        model, tuple(sample.shape), device, int(eval_cfg.get("throughput_batch", 128)),
        iterations=int(eval_cfg.get("throughput_iterations", 5)), channels_last=channels_last, amp=amp,
    )
    gmacs = measure_gmacs(model, tuple(sample.shape), device)
    conversion = record.get("conversion", {})
    metrics = {
        "run": {"family": spec.family, "variant": spec.variant, "kernel_count": spec.kernel_count,
                "dks": spec.dks, "seed": spec.seed},
        "weights": "ema" if use_ema else "model",
        "params": record["params"], "trainable_params": record["trainable_params"],
        "params_before_conversion": conversion.get("params_before"), "dcls_layers": record["dcls_layers"],
        "taps_per_kernel": conversion.get("taps_per_kernel") if spec.variant != "dense" else None,
        "top1": clean["top1"], "top5": clean["top5"], "val_loss": clean["loss"], "val_images": clean["images"],
        "per_class_top1": clean["per_class_top1"], "class_names": list(source.class_names),
        "robustness": robustness, "gmacs": gmacs, "img_per_s": img_per_s, "step_time_ms": record["step_time_ms"],
        "train_seconds": record["train_seconds"], "epochs": record["epochs"],
        "final_train_loss": record["final_train_loss"], "train_images": record["train_images"],
    }
    provenance = job.prov(run=spec.run_id, scale=job.config.get("scale"))
    write_json(job.output("metrics"), metrics, provenance)
    write_json(job.output("kernels"), {"run": metrics["run"], "layers": kernel_snapshot(model)}, provenance)
    LOG.info("%s: top1 %.2f top5 %.2f %.0f img/s", spec.run_id, clean["top1"], clean["top5"], img_per_s)
