"""One plain training loop for CPU and GPU, single process or DDP (started by torchrun).

Read top to bottom: typed config -> distributed setup -> data -> model (timm + DCLS conversion)
-> optimiser groups -> resume -> loop -> final weights. The loop follows the ConvNeXt-dcls
recipe: AdamW with warmup + cosine (a pure ``lr_at(step)``), positions (parameters named ``P``)
at 5x the learning rate and without weight decay, ``clamp_parameters()`` on every DCLS module
after each optimiser step, and the optional repulsion loss on positions. bf16 autocast and
channels_last on GPU only where configured; never autocast on CPU.

The loop is ``train_run`` -> ``train_one_epoch`` -> ``train_step`` over a :class:`TrainState`
(what a checkpoint restores) and a :class:`Loop` (what stays fixed). A checkpoint is written at
the end of every epoch (and every ``checkpoint_every_steps``) into a directory passed as a rule
*param* (``dcls/checkpoint.py``: last.pt + prev.pt, keyed on the trajectory identity), and the
job resumes from it automatically, so a killed or preempted job that is retried continues where
it stopped and ends, on CPU, with bit-identical weights and metrics. SIGTERM stops the run at the
next step with a checkpoint and without final outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from tsdcls.common.config import ConfigError, config_hash, reject_unknown_keys
from tsdcls.common.io import atomic_path, write_json
from tsdcls.common.job import Job
from tsdcls.common.seeding import derive_seed, seed_everything
from tsdcls.common.signals import StopFlag, Terminated
from tsdcls.common.variants import DCLS_VARIANTS as VARIANTS
from tsdcls.dcls.checkpoint import CheckpointStore
from tsdcls.dcls.data import ImageSource, ShardedEpochSampler, build_source
from tsdcls.dcls.layers import clamp_dcls_parameters, dcls_modules
from tsdcls.dcls.schedule import lr_at

LOG = logging.getLogger("tsdcls.dcls.train")


# --- typed configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class RepulsionConfig:
    """Repulsion between the taps of one kernel (ConvNeXt-dcls recipe): loss + weight * rep**2."""

    enabled: bool = False
    weight: float = 1.0
    start_epoch: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Every training hyper-parameter as a plain typed value (from config key 'dcls.train').

    Defaults equal config.yaml's (tests/test_one_source.py); they serve keys a preset omits."""

    epochs: int = 4
    batch_size: int = 64  # global batch, split over DDP processes
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 0.2
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    position_lr_scale: float = 5.0
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    random_erasing: float = 0.0
    auto_augment: str = ""
    flip: bool = True
    crop_padding: int = 2
    ema_decay: float = 0.0
    amp: bool = True
    amp_dtype: str = "bfloat16"
    channels_last: bool = False
    compile: bool = False
    num_workers: int = 0
    checkpoint_every_steps: int = 0
    accumulation_steps: int = 1
    repulsion: RepulsionConfig = field(default_factory=RepulsionConfig)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TrainConfig:
        reject_unknown_keys(section, cls.__dataclass_fields__, "dcls.train")
        values = dict(section)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        if "repulsion" in values:
            values["repulsion"] = RepulsionConfig(**values["repulsion"])
        cfg = cls(**values)
        if cfg.epochs < 1:
            raise ConfigError("config key 'dcls.train.epochs' must be >= 1")
        if cfg.batch_size % cfg.accumulation_steps:
            raise ConfigError("config key 'dcls.train.accumulation_steps' must divide 'dcls.train.batch_size'")
        if cfg.amp_dtype not in ("bfloat16", "float16"):
            raise ConfigError("config key 'dcls.train.amp_dtype' must be bfloat16 or float16")
        return cfg


@dataclass(frozen=True)
class RunSpec:
    """One cell of the ablation grid: which model, which conv variant, which seed."""

    family: str
    variant: str
    kernel_count: int
    dks: int
    seed: int

    @property
    def run_id(self) -> str:
        return f"{self.family}/{self.variant}/k{self.kernel_count}_d{self.dks}/seed{self.seed}"

    @classmethod
    def from_job(cls, job: Job) -> RunSpec:
        params = job.params
        for key in ("family", "variant", "kernel_count", "dks"):
            if key not in params:
                raise ConfigError(f"dcls job needs --param {key}=... (the rule passes the grid wildcards)")
        spec = cls(str(params["family"]), str(params["variant"]), int(params["kernel_count"]),
                   int(params["dks"]), int(job.seed))
        if spec.variant not in VARIANTS:
            raise ConfigError(f"config key 'dcls.grid': unknown variant {spec.variant!r} ({', '.join(VARIANTS)})")
        families = job.config.get("families", {})
        if spec.family not in families:
            raise ConfigError(f"config key 'dcls.families' has no family {spec.family!r} (has {sorted(families)})")
        return spec


# --- distributed setup ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a torchrun job (rank 0 of 1 when started as plain python)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup_distributed(device: str) -> Dist:
    """Detect torchrun (RANK/WORLD_SIZE/LOCAL_RANK) and join the group: gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("config key 'device' is cuda but no GPU is visible (set device: cpu)")
    if use_cuda:
        index = local_rank if world > 1 or ":" not in device else torch.device(device).index
        torch_device = torch.device("cuda", index)
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank, torch_device)


def teardown_distributed(ctx: Dist) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# --- model ---------------------------------------------------------------------------------------


def build_model(family_cfg: Mapping[str, Any], num_classes: int) -> nn.Module:
    """A timm model from 'dcls.families.<name>' ({arch, kwargs, small_input}), dense convs."""
    import timm

    arch = family_cfg.get("arch")
    if not arch:
        raise ConfigError("config key 'dcls.families.<family>.arch' is missing")
    kwargs = dict(family_cfg.get("kwargs", {}))
    for key in ("depths", "dims", "layers", "channels"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    except (RuntimeError, TypeError, IndexError, ValueError) as err:
        raise ConfigError(f"config key 'dcls.families.*.arch/kwargs': timm cannot build {arch!r}: {err}") from err
    if family_cfg.get("small_input", False):
        _adapt_stem_for_small_images(model, int(family_cfg.get("small_input_stride", 1)))
    return model


def _adapt_stem_for_small_images(model: nn.Module, stride: int = 1) -> None:
    """CIFAR-style ResNet stem for 32 px inputs: one 3x3 conv (stride 1 or 2) and no max-pool."""
    conv1 = getattr(model, "conv1", None)
    if isinstance(conv1, nn.Conv2d):
        model.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, stride, 1, bias=conv1.bias is not None)
    elif isinstance(conv1, nn.Sequential) and isinstance(conv1[0], nn.Conv2d):
        first = conv1[0]
        conv1[0] = nn.Conv2d(first.in_channels, first.out_channels, 3, stride, 1, bias=first.bias is not None)
    else:
        raise ConfigError("config key 'dcls.families.*.small_input' only applies to ResNet-style models "
                          "(a conv1 stem)")
    if hasattr(model, "maxpool"):
        model.maxpool = nn.Identity()


def convert(model: nn.Module, spec: RunSpec, family_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Swap convolutions for the run's variant (ConvNeXt-dcls init for ConvNeXt); report as dict."""
    from timm.models.convnext import ConvNeXt

    from tsdcls.dcls.convert import convert_model, init_dcls_like_convnext_

    kernel_count, dks = (spec.kernel_count, spec.dks) if spec.variant != "dense" else (1, 1)
    report = convert_model(
        model, spec.variant, kernel_count, dks,
        share_positions_per_stage=bool(family_cfg.get("share_positions_per_stage", False)),
    )
    if isinstance(model, ConvNeXt):
        init_dcls_like_convnext_(model)
    summary = report.to_dict()
    summary["layers"] = [layer["name"] for layer in summary["layers"]]
    return summary


def build_run_model(config: Mapping[str, Any], spec: RunSpec, num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """Model of one grid cell, initialised from the run seed (identical on every DDP rank)."""
    family_cfg = config["families"][spec.family]
    torch.manual_seed(derive_seed(spec.seed, "model-init", spec.run_id))
    model = build_model(family_cfg, num_classes)
    report = convert(model, spec, family_cfg)
    return model, report


def is_position(name: str) -> bool:
    """DCLS tap positions: parameters named ``P`` (per layer) or ``*_P`` (shared per stage)."""
    last = name.rsplit(".", 1)[-1]
    return last == "P" or last.endswith("_P") or last in ("positions", "shared_positions")


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: decayed weights, undecayed biases/norms, positions at lr x5 without decay."""
    decay, no_decay, positions = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if is_position(name) or name.endswith(".SIG"):  # Gaussian widths train with P, as published
            positions.append(param)
        elif param.ndim <= 1 or name.endswith(".bias") or name.endswith(".gamma"):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0, "group_name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0, "group_name": "no_decay"},
        {"params": positions, "weight_decay": 0.0, "lr_scale": cfg.position_lr_scale, "group_name": "positions"},
    ]
    return [g for g in groups if g["params"]]


def repulsion_loss(model: nn.Module, reference: torch.Tensor) -> torch.Tensor:
    """Mean over layers of the pairwise overlap penalty sum(max(0, 1 - |p_i - p_j|)) of taps.

    Positions of one kernel are the last axis of ``P``, the spatial axes its first; taps closer
    than one pixel repel. As in ConvNeXt-dcls (utils.get_dcls_loss_rep), normalised by the
    number of pairs and kernels.
    """
    total = torch.zeros((), device=reference.device, dtype=torch.float32)
    layers = 0
    for name, param in model.named_parameters():
        if not is_position(name) or param.ndim < 2 or not param.requires_grad:
            continue
        dims, count = param.shape[0], param.shape[-1]
        if count < 2:
            continue
        taps = param.reshape(dims, -1, count).permute(1, 2, 0).float()  # (kernels, count, dims)
        distances = torch.cdist(taps, taps, p=2)
        overlap = (1.0 - distances).triu(diagonal=1).clamp_min(0.0)
        total = total + 2.0 * overlap.sum() / (count * (count - 1) * taps.shape[0])
        layers += 1
    return total / max(layers, 1)


# --- batches -------------------------------------------------------------------------------------


def augment_batch(images: torch.Tensor, cfg: TrainConfig, seed: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Random horizontal flip and padded random crop for in-memory data (own generator).

    The random draws are made for the whole global batch and each rank takes its own rows
    (``rank::world``), so a DDP run augments every image exactly as a single process would.
    """
    if not cfg.flip and cfg.crop_padding <= 0:
        return images
    generator = torch.Generator().manual_seed(seed)
    total = images.shape[0] * world
    out = images
    if cfg.flip:
        flip = (torch.rand(total, generator=generator) < 0.5)[rank::world]
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
    if cfg.crop_padding > 0:
        pad = cfg.crop_padding
        padded = F.pad(out, (pad, pad, pad, pad), mode="reflect")
        offsets = torch.randint(0, 2 * pad + 1, (total, 2), generator=generator)[rank::world].tolist()
        size_h, size_w = images.shape[-2:]
        out = torch.stack([padded[i, :, dy : dy + size_h, dx : dx + size_w] for i, (dy, dx) in enumerate(offsets)])
    return out


def epoch_batches(loop: Loop, epoch: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's batches of one epoch from ``start_step`` on, in a resumable, fixed order."""
    sampler, cfg = loop.sampler, loop.cfg
    sampler.set_position(epoch, start_step)
    if loop.source.in_memory:
        images, labels = loop.train_set.tensors
        order = list(sampler)
        size = sampler.per_rank_batch
        for offset, step in zip(range(0, len(order), size), range(start_step, sampler.steps_per_epoch), strict=False):
            idx = torch.as_tensor(order[offset : offset + size])
            seed = derive_seed(loop.spec.seed, "augment", epoch, step)
            yield augment_batch(images[idx], cfg, seed, loop.ctx.rank, sampler.world), labels[idx]
        return
    loader = torch.utils.data.DataLoader(
        loop.train_set, batch_size=sampler.per_rank_batch, sampler=sampler, num_workers=cfg.num_workers,
        drop_last=True, pin_memory=torch.cuda.is_available(), persistent_workers=False,
    )
    yield from loader


# --- checkpoint identity and RNG state -----------------------------------------------------------

# Keys that do not change the trajectory, left out of the checkpoint identity so that editing them
# resumes (or keeps) a finished run. ``num_workers`` only changes which random augmentation draw an
# ImageFolder image gets (same distribution); the data path is replaced by a hash of the content.
OFF_TRAJECTORY_TRAIN_KEYS = frozenset({"num_workers", "checkpoint_every_steps"})
OFF_TRAJECTORY_DATA_KEYS = frozenset({"root", "val_size", "corruptions", "corruption_severities", "robustness",
                                      "robustness_size"})


def trajectory_identity(config: Mapping[str, Any], spec: RunSpec, cfg: TrainConfig, world: int,
                        data_content: str) -> str:
    """Hash of exactly what changes the training trajectory.

    Model (family settings and grid cell), data content and order (content hash, size, image
    size, the run seed), optimiser and schedule (every training option but the off-trajectory
    ones), seed and world size.
    """
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in OFF_TRAJECTORY_TRAIN_KEYS}
    data = {k: v for k, v in config.get("data", {}).items() if k not in OFF_TRAJECTORY_DATA_KEYS}
    return config_hash({"train": train, "data": data, "data_content": data_content,
                        "family": config["families"][spec.family], "run": dataclasses.asdict(spec),
                        "world": world})


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(ctx: Dist) -> list[dict[str, Any]]:
    """Every rank's RNG state (ranks draw different dropout/mixup randomness)."""
    mine = rng_state()
    if not ctx.enabled:
        return [mine]
    states: list[Any] = [None] * ctx.world
    dist.all_gather_object(states, mine)
    return states


# --- training state ------------------------------------------------------------------------------


@dataclass
class EpochStats:
    """Running sums of the current epoch on this rank (saved with a mid-epoch checkpoint)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


@dataclass
class TrainState:
    """Everything a checkpoint restores: weights, optimiser, scaler, EMA, position, history."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: Any | None = None
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    stats: EpochStats = field(default_factory=EpochStats)
    step_times: list[float] = field(default_factory=list)  # rank 0's, saved: a resumed run keeps its median

    def save(self, store: CheckpointStore, ctx: Dist, spec: RunSpec, finished: bool) -> None:
        """Checkpoint on rank 0 (every rank's RNG state gathered first); all ranks wait for it."""
        rngs = gather_rng_states(ctx)
        if ctx.is_main:
            store.save({
                "run": dataclasses.asdict(spec), "finished": finished, "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": rngs, "history": self.history, "train_seconds": self.elapsed,
                "partial": dataclasses.asdict(self.stats), "step_times": self.step_times,
            })
        if ctx.enabled:
            dist.barrier()

    def load(self, store: CheckpointStore, ctx: Dist) -> Path | None:
        """Restore from the store's newest good checkpoint (chosen on rank 0); None: start over."""
        chosen = [store.resolve() if ctx.is_main else None]
        if ctx.enabled:
            dist.broadcast_object_list(chosen, src=0)
        if chosen[0] is None:
            return None
        state = store.load(chosen[0])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        self.history, self.elapsed = list(state["history"]), float(state["train_seconds"])
        self.stats = EpochStats(**state["partial"])
        self.step_times = list(state.get("step_times", []))
        rngs = state["rng"]
        set_rng_state(rngs[ctx.rank] if len(rngs) == ctx.world else rngs[0])
        return chosen[0]


# --- the loop ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loop:
    """The fixed parts of one run's training loop, built once and read by every step."""

    cfg: TrainConfig
    spec: RunSpec
    ctx: Dist
    source: ImageSource
    train_set: Any
    sampler: ShardedEpochSampler
    train_model: nn.Module  # state.model, possibly compiled and/or wrapped in DDP
    store: CheckpointStore
    mixup: Any
    eraser: Any
    criterion: nn.Module
    autocast: Any
    warmup_steps: int
    total_steps: int


@dataclass
class TrainResult:
    """What a run hands on: final weights and the training record for train.json."""

    model: nn.Module
    ema: nn.Module | None
    record: dict[str, Any]


def train_run(config: Mapping[str, Any], spec: RunSpec, device: str, checkpoint_dir: Path | None,
              ctx: Dist | None = None, max_steps: int | None = None, stop: StopFlag | None = None) -> TrainResult:
    """Train one grid cell; resumes from the newest good checkpoint in ``checkpoint_dir``.

    ``max_steps`` stops early without a checkpoint (tests only). A signal recorded by ``stop``
    ends the run at the next step: checkpoint, then :class:`Terminated`. Returns the unwrapped
    model on every rank.
    """
    ctx = ctx or Dist(device=torch.device(device))
    cfg = TrainConfig.from_config(config.get("train", {}))
    seed_everything(derive_seed(spec.seed, "data"))
    source = build_source(config.get("data", {}), spec.seed,
                          augment={"auto_augment": cfg.auto_augment, "random_erasing": cfg.random_erasing})
    train_set = source.dataset("train")
    state, conversion = build_state(config, spec, cfg, source.num_classes, ctx)
    identity = trajectory_identity(config, spec, cfg, ctx.world, source.fingerprint("train"))
    loop = build_loop(cfg, spec, ctx, source, train_set, state.model, CheckpointStore(checkpoint_dir, identity))
    resumed_from = state.load(loop.store, ctx)
    if resumed_from is not None and ctx.is_main:
        LOG.info("resumed %s from %s at epoch %d step %d", spec.run_id, resumed_from, state.epoch, state.step_in_epoch)
    progress = tqdm(total=loop.total_steps, initial=state.global_step, desc=spec.run_id, unit="step",
                    disable=not ctx.is_main, mininterval=2.0 if sys.stderr.isatty() else 15.0, file=sys.stderr)
    with progress, logging_redirect_tqdm(loggers=[logging.root]):  # summary lines beside the bar
        while state.epoch < cfg.epochs:
            outcome = train_one_epoch(loop, state, progress, stop, max_steps)
            if state.step_in_epoch == loop.sampler.steps_per_epoch:
                finish_epoch(loop, state)
            if outcome == "stopped":
                break
            state.save(loop.store, ctx, spec, finished=state.epoch >= cfg.epochs and state.step_in_epoch == 0)
            if outcome == "interrupted":
                raise Terminated(stop.signum if stop and stop.signum else signal.SIGTERM)
    record = train_record(loop, state, conversion)
    record["identity"] = record["config_hash"] = identity
    return TrainResult(model=state.model, ema=state.ema.module if state.ema is not None else None, record=record)


def build_state(config: Mapping[str, Any], spec: RunSpec, cfg: TrainConfig, num_classes: int,
                ctx: Dist) -> tuple[TrainState, dict[str, Any]]:
    """Model (seeded from the run), EMA, AdamW and grad scaler at step 0; the conversion report."""
    use_cuda = ctx.device.type == "cuda"
    model, conversion = build_run_model(config, spec, num_classes)
    model.to(ctx.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    # seeds offset per rank: dropout, drop-path, mixup differ across ranks, data order does not
    seed_everything(derive_seed(spec.seed, "train", ctx.rank), deterministic=not use_cuda)
    if use_cuda:  # bit-exactness is a CPU promise; on GPU take the fast kernels
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
    ema = None
    if cfg.ema_decay > 0:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema_decay, device=ctx.device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=cfg.betas)
    fp16 = use_cuda and cfg.amp and cfg.amp_dtype == "float16"
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    return TrainState(model=model, optimizer=optimizer, scaler=scaler, ema=ema), conversion


def build_loop(cfg: TrainConfig, spec: RunSpec, ctx: Dist, source: ImageSource, train_set: Any,
               model: nn.Module, store: CheckpointStore) -> Loop:
    """Sampler, schedule, augmentation and loss of the run; the model wrapped for compile/DDP."""
    use_cuda = ctx.device.type == "cuda"
    sampler = ShardedEpochSampler(len(train_set), cfg.batch_size, derive_seed(spec.seed, "order"), ctx.rank, ctx.world)
    train_model = torch.compile(model) if cfg.compile else model
    if ctx.enabled:
        train_model = nn.parallel.DistributedDataParallel(train_model, device_ids=[ctx.device.index] if use_cuda else None)
    mixup = _mixup(cfg, source.num_classes)
    amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    return Loop(
        cfg=cfg, spec=spec, ctx=ctx, source=source, train_set=train_set, sampler=sampler,
        train_model=train_model, store=store, mixup=mixup,
        eraser=_eraser(cfg, ctx.device) if source.in_memory else None, criterion=_criterion(cfg, mixup is not None),
        autocast=torch.autocast("cuda", dtype=amp_dtype) if use_cuda and cfg.amp else contextlib.nullcontext(),
        warmup_steps=round(cfg.warmup_epochs * sampler.steps_per_epoch),
        total_steps=cfg.epochs * sampler.steps_per_epoch,
    )


def train_one_epoch(loop: Loop, state: TrainState, progress: tqdm, stop: StopFlag | None,
                    max_steps: int | None) -> str:
    """The rest of epoch ``state.epoch``: 'done', 'stopped' (max_steps) or 'interrupted' (signal)."""
    loop.train_model.train()
    batches = epoch_batches(loop, state.epoch, state.step_in_epoch)
    while True:
        try:
            images, targets = next(batches)
        except StopIteration:
            return "done"
        except RuntimeError:  # loader workers got the same SIGTERM and died: stop as asked
            if stop is not None and stop.requested:
                return "interrupted"
            raise
        train_step(loop, state, images, targets)
        progress.update(1)
        progress.set_postfix(epoch=state.epoch, loss=f"{state.stats.loss_sum / max(state.stats.seen, 1):.3f}",
                             refresh=False)
        if max_steps is not None and state.global_step >= max_steps:
            return "stopped"
        if _stop_requested(stop, loop.ctx):
            return "interrupted"
        every = loop.cfg.checkpoint_every_steps
        if every and state.global_step % every == 0 and state.step_in_epoch < loop.sampler.steps_per_epoch:
            state.save(loop.store, loop.ctx, loop.spec, finished=False)


def train_step(loop: Loop, state: TrainState, images: torch.Tensor, targets: torch.Tensor) -> None:
    """One optimiser step on one global batch (split into accumulation chunks)."""
    cfg, ctx, stats = loop.cfg, loop.ctx, state.stats
    tick = time.perf_counter()
    lr = lr_at(state.global_step, cfg.lr, loop.warmup_steps, loop.total_steps, cfg.min_lr)
    for group in state.optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]
    state.optimizer.zero_grad(set_to_none=True)
    chunks = list(zip(images.chunk(cfg.accumulation_steps), targets.chunk(cfg.accumulation_steps), strict=True))
    for index, (chunk_images, chunk_targets) in enumerate(chunks):
        last = index == len(chunks) - 1
        with contextlib.nullcontext() if last or not ctx.enabled else loop.train_model.no_sync():
            loss, correct = forward_backward(loop, state, chunk_images, chunk_targets, len(chunks))
        stats.loss_sum += loss * chunk_images.shape[0]
        stats.correct += correct
        stats.seen += chunk_images.shape[0]
    if cfg.grad_clip > 0:
        state.scaler.unscale_(state.optimizer)
        nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    clamp_dcls_parameters(state.model)
    if state.ema is not None:
        state.ema.update(state.model, step=state.global_step)
    state.global_step += 1
    state.step_in_epoch += 1
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    duration = time.perf_counter() - tick
    state.step_times.append(duration)
    state.elapsed += duration
    stats.seconds += duration


def finish_epoch(loop: Loop, state: TrainState) -> None:
    """Close the epoch: history entry (means over all ranks), one summary line, next position."""
    stats, ctx = state.stats, loop.ctx
    entry = {"epoch": state.epoch, "train_loss": _all_mean(stats.loss_sum, stats.seen, ctx),
             "train_top1": _all_mean(float(stats.correct), stats.seen, ctx),
             "lr": state.optimizer.param_groups[0]["lr"]}
    state.history.append(entry)
    if ctx.is_main:
        images_per_s = stats.seen * ctx.world / stats.seconds if stats.seconds > 0 else math.nan
        LOG.info("%s epoch %d/%d: loss %.4f  top1 %.2f%%  lr %.3g  %.0f img/s", loop.spec.run_id,
                 state.epoch + 1, loop.cfg.epochs, entry["train_loss"], 100.0 * entry["train_top1"], entry["lr"],
                 images_per_s)
    state.epoch, state.step_in_epoch, state.stats = state.epoch + 1, 0, EpochStats()


def train_record(loop: Loop, state: TrainState, conversion: dict[str, Any]) -> dict[str, Any]:
    """The training record for train.json."""
    model, times, history = state.model, state.step_times, state.history
    return {
        "run": dataclasses.asdict(loop.spec), "conversion": conversion,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "dcls_layers": len(dcls_modules(model)), "epochs": loop.cfg.epochs, "steps": state.global_step,
        "steps_per_epoch": loop.sampler.steps_per_epoch, "global_batch": loop.cfg.batch_size,
        "world_size": loop.ctx.world, "train_images": len(loop.train_set), "train_seconds": state.elapsed,
        "step_time_ms": 1000.0 * _median(times[min(3, len(times) - 1):]) if times else math.nan,
        "history": history, "final_train_loss": history[-1]["train_loss"] if history else math.nan,
    }


def forward_backward(loop: Loop, state: TrainState, images: torch.Tensor, targets: torch.Tensor,
                     chunks: int) -> tuple[float, int]:
    """One micro-batch: augment on device, forward (autocast on GPU), loss (+ repulsion), backward.

    Returns the micro-batch's mean loss and its number of correct top-1 predictions.
    """
    cfg, device = loop.cfg, loop.ctx.device
    images = images.to(device, non_blocking=True)
    targets = targets.to(device, non_blocking=True)
    if loop.source.normalize is not None:
        images = loop.source.normalize(images)
    if loop.eraser is not None:
        images = loop.eraser(images)
    hard_targets = targets
    if loop.mixup is not None:
        images, targets = loop.mixup(images, targets)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with loop.autocast:
        logits = loop.train_model(images)
        loss = loop.criterion(logits.float(), targets)
    if cfg.repulsion.enabled and state.epoch >= cfg.repulsion.start_epoch:
        loss = loss + cfg.repulsion.weight * repulsion_loss(state.model, loss) ** 2
    state.scaler.scale(loss / chunks).backward()
    return float(loss.detach()), int((logits.detach().argmax(-1) == hard_targets).sum())


def _stop_requested(stop: StopFlag | None, ctx: Dist) -> bool:
    """Whether any rank got a stop signal (all ranks agree, so they checkpoint together)."""
    flag = stop is not None and stop.requested
    if not ctx.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def _all_mean(total: float, count: int, ctx: Dist) -> float:
    if ctx.enabled:
        pair = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(pair)
        total, count = float(pair[0]), int(pair[1])
    return total / max(count, 1)


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def _mixup(cfg: TrainConfig, num_classes: int) -> Any:
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    from timm.data import Mixup

    if cfg.batch_size % 2:
        raise ConfigError("config key 'dcls.train.batch_size' must be even when mixup/cutmix is on")
    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                 num_classes=num_classes)


def _eraser(cfg: TrainConfig, device: torch.device) -> Any:
    if cfg.random_erasing <= 0:
        return None
    from timm.data.random_erasing import RandomErasing

    return RandomErasing(probability=cfg.random_erasing, mode="pixel", device=str(device))


def _criterion(cfg: TrainConfig, soft_targets: bool) -> nn.Module:
    if soft_targets:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


# --- weights files -------------------------------------------------------------------------------


def save_weights(path: Path, result: TrainResult, spec: RunSpec, provenance: Mapping[str, Any]) -> None:
    """Final weights (and EMA weights) with the run identity and provenance, atomically."""
    payload = {
        "run": dataclasses.asdict(spec), "model": result.model.state_dict(),
        "ema": result.ema.state_dict() if result.ema is not None else None,
        "conversion": result.record["conversion"], "provenance": dict(provenance),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_weights(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


# --- CLI verb ------------------------------------------------------------------------------------


def run_train(job: Job) -> None:
    """Verb `dcls-train`: train one grid cell, write weights.pt and train.json (rank 0 only).

    SIGTERM/SIGINT stop training at the next step with a checkpoint and no final output; the two
    outputs are each renamed into place by this process, after a last check for a stop signal.
    """
    spec = RunSpec.from_job(job)
    ctx = setup_distributed(job.device)
    try:
        with StopFlag() as stop:
            try:
                _train_and_write(job, spec, ctx, stop)
            except (RuntimeError, OSError, EOFError) as err:
                # torch's SIGCHLD handler raises anywhere once a loader worker died of the same
                # signal: after a stop request that is the stop, not a crash (last.pt/prev.pt intact)
                if stop.requested:
                    raise Terminated(stop.signum or signal.SIGTERM) from err
                raise
    finally:
        teardown_distributed(ctx)


def _train_and_write(job: Job, spec: RunSpec, ctx: Dist, stop: StopFlag) -> None:
    ckpt = job.params.get("checkpoint_dir")
    torch.set_num_threads(max(1, job.threads // max(ctx.world, 1)) if ctx.device.type == "cpu" else job.threads)
    result = train_run(job.config, spec, job.device, Path(ckpt) if ckpt else None, ctx, stop=stop)
    if ctx.is_main:
        provenance = job.prov(run=spec.run_id, scale=job.config.get("scale"))
        stop.raise_if_requested()
        save_weights(job.output("weights"), result, spec, provenance)
        stop.raise_if_requested()
        write_json(job.output("train"), result.record, provenance)
