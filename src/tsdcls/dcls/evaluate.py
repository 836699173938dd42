"""Evaluation of one trained grid cell: top-1/top-5, per-class accuracy, robustness, throughput.

Runs on the final weights written by the trainer, so a change of evaluation settings (new
robustness sets, another batch size) never retrains. Also exports the learned tap positions
and weights of the DCLS layers as JSON for the kernel figures (figures read files, not models).

With ``dcls.evaluate.fold`` the model evaluated (accuracy, throughput, MACs) is the folded one
(``fold_dcls``: plain dense convs, what a deployment runs), after its logits were checked to
equal the DCLS model's; the same code evaluates a published ConvNeXt-dcls checkpoint
(``dcls.evaluate.official_checkpoint``, rule ``dcls_evaluate_official``).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from tsdcls.common.config import InputError, reject_unknown_keys
from tsdcls.common.io import read_json, write_json
from tsdcls.common.job import Job
from tsdcls.dcls.convert import count_parameters
from tsdcls.dcls.data import ImageSource, Normalize, build_source
from tsdcls.dcls.fold import fold_dcls
from tsdcls.dcls.layers import dcls_modules
from tsdcls.dcls.official import (
    arch_of,
    load_official_checkpoint,
    read_checkpoint,
    state_dict_entry,
    unwrap_checkpoint,
)
from tsdcls.dcls.train import RunSpec, build_run_model, load_weights

LOG = logging.getLogger("tsdcls.dcls.evaluate")
# Folded vs DCLS logits, relative to the largest logit: fp32 rounding of two conv algorithms
# (FFT or Triton vs a direct conv) is ~1e-6; a wrong fold is O(1).
FOLD_RTOL = 1e-4


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


STAGE = re.compile(r"^(stages\.\d+|layer\d+)")


def tap_positions(model: nn.Module) -> dict[str, torch.Tensor]:
    """Learnable tap positions by module name, each tensor once (shared per-stage positions
    appear under their first user's name)."""
    seen: set[int] = set()
    found = {}
    for name, module in model.named_modules():
        positions = getattr(module, "P", None) if getattr(module, "is_dcls", False) else None
        if isinstance(positions, torch.Tensor) and id(positions) not in seen:
            seen.add(id(positions))
            found[name] = positions.detach().clone().cpu()
    return found


def position_shift(initial: Mapping[str, torch.Tensor], final: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Mean |final - initial| tap position (pixels) per stage, plus 'all': how far training moved
    the taps from their random init (frozen positions: 0)."""
    per_stage: dict[str, list[torch.Tensor]] = {}
    for name, start in initial.items():
        match = STAGE.match(name)
        per_stage.setdefault(match.group(1) if match else "other", []).append((final[name] - start).abs().flatten())
    shifts = {stage: float(torch.cat(parts).mean()) for stage, parts in per_stage.items()}
    if per_stage:
        shifts["all"] = float(torch.cat([t for parts in per_stage.values() for t in parts]).mean())
    return shifts


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


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation settings (config key 'dcls.evaluate'); defaults equal config.yaml's."""

    batch_size: int = 250
    use_ema: bool = False
    throughput_batch: int = 128
    throughput_iterations: int = 5
    fold: bool = True  # evaluate the folded model (plain dense convs), checked against the DCLS one
    official_checkpoint: str | None = None  # a published ConvNeXt-dcls checkpoint (own rule)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> EvaluateConfig:
        reject_unknown_keys(section, cls.__dataclass_fields__, "dcls.evaluate")
        return cls(**section)


@dataclass(frozen=True)
class Runtime:
    """How the model runs (from 'dcls.train'), not how it was trained."""

    device: torch.device
    channels_last: bool
    amp: bool
    workers: int

    @classmethod
    def from_job(cls, job: Job) -> Runtime:
        train_cfg: Mapping[str, Any] = job.config.get("train", {})
        in_memory = job.config.get("data", {}).get("dataset", "fashion_mnist") == "fashion_mnist"
        return cls(torch.device(job.device if job.device != "auto" else "cpu"),
                   bool(train_cfg.get("channels_last", False)), bool(train_cfg.get("amp", True)),
                   0 if in_memory else int(train_cfg.get("num_workers", 0)))

    def place(self, model: nn.Module) -> nn.Module:
        model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


@contextlib.contextmanager
def _exact_fp32() -> Iterator[None]:
    """Full fp32 convolutions and matmuls on GPU (no TF32), so a comparison sees fp32 rounding only."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@torch.no_grad()
def fold_agreement(model: nn.Module, folded: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """Largest difference between the logits of the DCLS model and of its folded copy on
    ``images``, in fp32 without autocast; raises when it exceeds FOLD_RTOL (relative to the
    largest logit), since then the folded model would not be the model that was trained."""
    model.eval()
    folded.eval()
    with _exact_fp32():
        reference = model(images).float()
        got = folded(images).float()
    max_abs = float((got - reference).abs().max())
    max_rel = max_abs / max(float(reference.abs().max()), 1e-30)
    if not max_rel <= FOLD_RTOL:
        raise RuntimeError(f"the folded model's logits differ from the DCLS model's by {max_rel:.3g} (relative, "
                           f"tolerance {FOLD_RTOL:g}) on {images.shape[0]} images; set dcls.evaluate.fold: false "
                           "to evaluate the unfolded model and report this as a bug of tsdcls.dcls.fold")
    return {"images": int(images.shape[0]), "max_abs_diff": max_abs, "max_rel_diff": max_rel, "tolerance": FOLD_RTOL}


def probe_batch(dataset: Dataset, normalize: Normalize | None, runtime: Runtime, count: int = 32) -> torch.Tensor:
    """The first ``count`` evaluation images, prepared as the evaluation feeds them to the model."""
    images = torch.stack([dataset[i][0] for i in range(min(count, len(dataset)))]).to(runtime.device)
    if normalize is not None:
        images = normalize(images)
    return images.contiguous(memory_format=torch.channels_last) if runtime.channels_last else images


def evaluate_loaded(model: nn.Module, source: ImageSource, cfg: EvaluateConfig, runtime: Runtime,
                    label: str) -> dict[str, Any]:
    """Accuracy, robustness, throughput and MACs of ``model`` (folded first when ``cfg.fold``)."""
    val = source.dataset("val")
    folded = fold_dcls(model) if cfg.fold and dcls_modules(model) else None
    check = None
    if folded is not None:
        runtime.place(folded)
        check = fold_agreement(model, folded, probe_batch(val, source.normalize, runtime))
        LOG.info("%s: folded model agrees with the DCLS model to %.2g (relative)", label, check["max_rel_diff"])
    evaluated = folded if folded is not None else model
    args = (source.num_classes, runtime.device, cfg.batch_size, source.normalize)
    loader = dict(channels_last=runtime.channels_last, num_workers=runtime.workers, amp=runtime.amp)
    clean = evaluate_model(evaluated, val, *args, f"{label} val", **loader)
    robustness = {}
    for name, dataset in source.robustness_sets().items():
        result = evaluate_model(evaluated, dataset, *args, f"{label} {name}", **loader)
        robustness[name] = {"top1": result["top1"], "top5": result["top5"]}
    shape = tuple(val[0][0].shape)

    def throughput(net: nn.Module) -> float:
        return measure_throughput(net, shape, runtime.device, cfg.throughput_batch,
                                  iterations=cfg.throughput_iterations, channels_last=runtime.channels_last,
                                  amp=runtime.amp)

    return {
        "folded": folded is not None, "fold_check": check,
        "top1": clean["top1"], "top5": clean["top5"], "val_loss": clean["loss"], "val_images": clean["images"],
        "per_class_top1": clean["per_class_top1"], "class_names": list(source.class_names),
        "robustness": robustness, "gmacs": measure_gmacs(evaluated, shape, runtime.device),
        "img_per_s": throughput(evaluated),
        "img_per_s_unfolded": throughput(model) if folded is not None else None,
    }


def trained_run(job: Job, cfg: EvaluateConfig, runtime: Runtime) -> tuple[nn.Module, ImageSource, dict[str, Any]]:
    """The grid cell's model with its final (or EMA) weights, its data, and its metrics header."""
    spec = RunSpec.from_job(job)
    saved = load_weights(job.input("weights"))
    record = read_json(job.input("train"))
    source = build_source(job.config.get("data", {}), spec.seed)
    model, _ = build_run_model(job.config, spec, source.num_classes)  # seeded: the run's init
    initial_positions = tap_positions(model)
    use_ema = cfg.use_ema and saved.get("ema") is not None
    model.load_state_dict(saved["ema"] if use_ema else saved["model"])
    conversion = record.get("conversion", {})
    header = {
        "run": {"family": spec.family, "variant": spec.variant, "kernel_count": spec.kernel_count,
                "dks": spec.dks, "seed": spec.seed},
        "weights": "ema" if use_ema else "model",
        "params": record["params"], "trainable_params": record["trainable_params"],
        "params_before_conversion": conversion.get("params_before"), "dcls_layers": record["dcls_layers"],
        "taps_per_kernel": conversion.get("taps_per_kernel") if spec.variant != "dense" else None,
        "step_time_ms": record["step_time_ms"], "train_seconds": record["train_seconds"],
        "epochs": record["epochs"], "final_train_loss": record["final_train_loss"],
        "train_images": record["train_images"], "steps": record.get("steps"),
        "position_shift": position_shift(initial_positions, tap_positions(model)),
    }
    return runtime.place(model), source, header


def official_run(job: Job, cfg: EvaluateConfig, runtime: Runtime) -> tuple[nn.Module, ImageSource, dict[str, Any]]:
    """A published ConvNeXt-dcls checkpoint in our timm model, the evaluation data, and the header."""
    path = job.input("checkpoint")
    key = "dcls.evaluate.official_checkpoint"
    try:
        checkpoint = read_checkpoint(path)
        entry = state_dict_entry(checkpoint, cfg.use_ema)
        arch = arch_of({k.removeprefix("module."): v for k, v in unwrap_checkpoint(checkpoint, cfg.use_ema).items()})
        model = load_official_checkpoint(checkpoint, use_ema=cfg.use_ema)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise InputError(f"config key '{key}': {path} is not a loadable ConvNeXt-dcls checkpoint: "
                         f"{str(err).splitlines()[0]}") from err
    source = build_source(job.config.get("data", {}), 0, model=model)
    head = int(model.get_classifier().out_features)
    if head != source.num_classes:
        raise InputError(f"config key '{key}': {path} has a {head}-class head but 'dcls.data' has "
                         f"{source.num_classes} classes; point dcls.data (dataset: imagefolder, root) at ImageNet-1k")
    layers = dcls_modules(model)
    header = {
        "run": {"family": "official", "variant": "dcls_v0", "arch": arch,
                "kernel_count": layers[0].kernel_count, "dks": layers[0].dilated_kernel_size[0], "seed": None,
                "checkpoint": str(path)},
        "weights": {"model_ema": "ema", "model": "model"}.get(entry, entry),
        "params": count_parameters(model), "trainable_params": count_parameters(model, trainable_only=True),
        "params_before_conversion": None, "dcls_layers": len(layers), "taps_per_kernel": layers[0].kernel_count,
    }
    return runtime.place(model), source, header


def run_evaluate(job: Job) -> None:
    """Verb `dcls-evaluate`: metrics.json (accuracy, robustness, speed) and kernels.json of one
    trained run, or of the published checkpoint when the rule passes one (input 'checkpoint')."""
    cfg = EvaluateConfig.from_config(job.config.get("evaluate", {}))
    runtime = Runtime.from_job(job)
    official = "checkpoint" in job.inputs
    model, source, header = (official_run if official else trained_run)(job, cfg, runtime)
    label = "official" if official else RunSpec.from_job(job).run_id
    metrics = {**header, **evaluate_loaded(model, source, cfg, runtime, label)}
    provenance = job.prov(run=label, scale=job.config.get("scale"))
    write_json(job.output("metrics"), metrics, provenance)
    write_json(job.output("kernels"), {"run": metrics["run"], "layers": kernel_snapshot(model)}, provenance)
    LOG.info("%s: top1 %.2f top5 %.2f %.0f img/s", label, metrics["top1"], metrics["top5"], metrics["img_per_s"])
