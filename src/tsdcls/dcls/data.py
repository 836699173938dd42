"""Datasets of the DCLS stage: Fashion-MNIST (embedded default) and ImageNet-style ImageFolders.

Two sources share one interface, :class:`ImageSource`: ``dataset(split)`` returns a torch
Dataset of ``(image_tensor, label)``. Fashion-MNIST is read from the Debian package's IDX
files, resized once into memory (3 channels by repeat) and has a corrupted copy (gaussian
noise, blur, contrast at several severities) as the offline analogue of ImageNet-C.
ImageNet-1k (paper scale) and the robustness sets (ImageNet-A/R/Sketch/C) are ImageFolder
layouts read with timm's standard transforms.

Sharding is deterministic and independent of any global RNG (:class:`ShardedEpochSampler`), so
a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler, TensorDataset

from tsdcls.common.assets import FASHION_MNIST_DEFAULT, AssetMissingError, fashion_mnist_dir
from tsdcls.common.config import ConfigError, InputError
from tsdcls.common.seeding import derive_seed

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast")
# Severity 1..5 parameters, in the spirit of ImageNet-C (Hendrycks & Dietterich, 2019).
_NOISE_STD = (0.04, 0.08, 0.12, 0.18, 0.26)
_BLUR_SIGMA = (0.4, 0.6, 0.8, 1.0, 1.5)
_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


# --- IDX files -----------------------------------------------------------------------------------


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or gzipped) into a NumPy array; a malformed file names itself."""
    path = Path(path)
    expected = "a complete gzip-compressed IDX file" if path.suffix == ".gz" else "a complete IDX file"
    try:
        raw = _read_bytes(path)
    except (EOFError, OSError, zlib.error) as err:
        raise InputError(f"{path}: cannot be read ({err}); expected {expected}: replace the file") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise InputError(f"{path}: not an IDX file (bad magic number); expected {expected}")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise InputError(f"{path}: unknown IDX element type 0x{code:02x}; expected {expected}")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise InputError(f"{path}: truncated IDX header ({len(raw)} bytes); expected {expected}")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    dtype = np.dtype(IDX_DTYPES[code])
    size = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_end != size:
        raise InputError(f"{path}: header says {shape} ({size} bytes), file holds {len(raw) - header_end}; "
                         f"expected {expected}: replace the file")
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape).astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"config key 'dcls.data.root': {folder} holds no {stem}[.gz] (a Fashion-MNIST IDX file)")


def fashion_folder(root: str | Path | None) -> Path:
    """The Fashion-MNIST folder: a path the user set is checked as given (no install advice)."""
    if root and Path(root) != FASHION_MNIST_DEFAULT:
        folder = Path(root)
        if not folder.is_dir():
            raise InputError(f"config key 'dcls.data.root': {folder} is not a directory; set it to the folder "
                             "holding the Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz] ...)")
        return folder
    try:
        return fashion_mnist_dir(root, "dcls.data.root")
    except AssetMissingError as err:
        raise InputError(str(err)) from err


def fashion_files(root: str | Path | None, split: str) -> tuple[Path, Path]:
    """The (images, labels) IDX files of a split."""
    folder = fashion_folder(root)
    prefix = {"train": "train", "test": "t10k", "val": "t10k"}[split]
    return _idx_file(folder, f"{prefix}-images-idx3-ubyte"), _idx_file(folder, f"{prefix}-labels-idx1-ubyte")


def load_fashion_mnist(root: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the 'train' or 'test' split."""
    image_file, label_file = fashion_files(root, split)
    images = read_idx(image_file)
    labels = read_idx(label_file).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise InputError(f"{image_file}: {images.shape} images but {label_file}: {labels.shape} labels; "
                         "expected (N, 28, 28) images and N labels")
    return images, labels


def balanced_subset(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Indices of a class-balanced random subset (all indices when ``size`` is None or too large)."""
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    chosen: list[int] = []
    for i in range(size):
        pool = per_class[i % len(classes)]
        chosen.append(int(pool[i // len(classes)]))
    return np.sort(np.asarray(chosen))


def to_model_tensor(images: np.ndarray, image_size: int, channels: int) -> torch.Tensor:
    """uint8 (N, H, W) -> float (N, C, S, S) in [0, 1], bilinear resize, channel repeat."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp_(0.0, 1.0).repeat(1, channels, 1, 1).contiguous()


# --- corruptions (offline ImageNet-C analogue) -------------------------------------------------


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(grid**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def corrupt(images: torch.Tensor, corruption: str, severity: int, seed: int) -> torch.Tensor:
    """Corrupt a batch in [0, 1] (N, C, H, W) at severity 1..5; deterministic given ``seed``."""
    if not 1 <= severity <= 5:
        raise ConfigError(f"config key 'dcls.data.corruption_severities': severity {severity} not in 1..5")
    index = severity - 1
    if corruption == "gaussian_noise":
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(images.shape, generator=generator) * _NOISE_STD[index]
        return (images + noise).clamp(0.0, 1.0)
    if corruption == "gaussian_blur":
        kernel = _gaussian_kernel(_BLUR_SIGMA[index])
        channels, pad = images.shape[1], kernel.numel() // 2
        horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
        vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
        out = F.conv2d(F.pad(images, (pad, pad, 0, 0), mode="reflect"), horizontal, groups=channels)
        out = F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), vertical, groups=channels)
        return out.clamp(0.0, 1.0)
    if corruption == "contrast":
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * _CONTRAST[index] + mean).clamp(0.0, 1.0)
    raise ConfigError(f"config key 'dcls.data.corruptions': unknown corruption {corruption!r} "
                      f"(choose from {', '.join(CORRUPTIONS)})")


# --- normalisation as a batch transform ----------------------------------------------------------


@dataclass(frozen=True)
class Normalize:
    """Per-channel normalisation applied on the device, after batch augmentation."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=batch.device, dtype=batch.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device, dtype=batch.dtype).view(1, -1, 1, 1)
        return (batch - mean) / std


# --- sources -------------------------------------------------------------------------------------


class ImageSource:
    """Common interface: ``num_classes``, ``class_names``, ``dataset(split)``, ``robustness_sets()``."""

    num_classes: int
    class_names: Sequence[str]
    in_memory: bool = False
    normalize: Normalize | None = None

    def dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def robustness_sets(self) -> dict[str, Dataset]:
        """name -> labelled dataset on the same label space (e.g. 'contrast@3', 'imagenet-r')."""
        return {}

    def fingerprint(self, split: str) -> str:
        """Hash of the split's content (files and labels), not of the path it is read from."""
        raise NotImplementedError


class FashionMNISTSource(ImageSource):
    """Fashion-MNIST subsets resized in memory; tensors are already in [0, 1] (normalised later)."""

    in_memory = True

    def __init__(self, data: Mapping[str, Any], seed: int) -> None:
        self.config = data
        self.num_classes = 10
        self.class_names = FASHION_CLASSES
        self.image_size = int(data.get("image_size", 32))
        self.channels = int(data.get("channels", 3))
        self.seed = seed
        self.normalize = Normalize((0.2860,) * self.channels, (0.3530,) * self.channels)
        self._cache: dict[str, TensorDataset] = {}

    def _split(self, split: str) -> TensorDataset:
        if split not in self._cache:
            sizes = {"train": self.config.get("train_size"), "val": self.config.get("val_size")}
            if split not in sizes:
                raise ConfigError(f"unknown split {split!r} (train or val)")
            images, labels = load_fashion_mnist(self.config.get("root"), split)
            chosen = balanced_subset(labels, sizes[split], derive_seed(self.seed, "fashion-mnist", split))
            x = to_model_tensor(images[chosen], self.image_size, self.channels)
            self._cache[split] = TensorDataset(x, torch.from_numpy(labels[chosen]))
        return self._cache[split]

    def dataset(self, split: str) -> Dataset:
        return self._split(split)

    def fingerprint(self, split: str) -> str:
        digest = hashlib.sha256()
        for path in fashion_files(self.config.get("root"), split):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def robustness_sets(self) -> dict[str, Dataset]:
        clean = self._split("val")
        images, labels = clean.tensors
        size = self.config.get("robustness_size")
        if size:  # a class-balanced subset of the evaluation set, the same for every variant of a seed
            chosen = torch.from_numpy(balanced_subset(labels.numpy(), int(size), derive_seed(self.seed, "robust")))
            images, labels = images[chosen], labels[chosen]
        sets: dict[str, Dataset] = {}
        for corruption in self.config.get("corruptions", []):
            for severity in self.config.get("corruption_severities", []):
                seed = derive_seed(self.seed, "corrupt", corruption, severity)
                sets[f"{corruption}@{severity}"] = TensorDataset(corrupt(images, corruption, severity, seed), labels)
        return sets


def _require_dir(path: str | None, key: str, what: str) -> Path:
    if not path:
        raise ConfigError(f"config key '{key}' is empty: set it to the {what} folder")
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"config key '{key}': {folder} is not a directory ({what})")
    return folder


class ImageFolderSource(ImageSource):
    """ImageNet-1k style ImageFolder (``root/train/<wnid>/*.JPEG``, ``root/val/<wnid>/...``).

    Uses timm's standard transforms (create_transform / resolve_data_config), including the
    paper's RandAugment and random erasing on the train split.
    """

    def __init__(self, data: Mapping[str, Any], seed: int, model: torch.nn.Module | None = None,
                 augment: Mapping[str, Any] | None = None) -> None:
        from torchvision.datasets import ImageFolder

        self.config = data
        self.seed = seed
        self.root = _require_dir(data.get("root"), "dcls.data.root", "ImageFolder root with train/ and val/")
        for split in ("train", "val"):
            _require_dir(str(self.root / split), "dcls.data.root", f"'{split}' split of the ImageFolder")
        self._folder = ImageFolder
        self.class_names = sorted(p.name for p in (self.root / "train").iterdir() if p.is_dir())
        self.num_classes = len(self.class_names)
        if self.num_classes == 0:
            raise ConfigError(f"config key 'dcls.data.root': {self.root / 'train'} holds no class folders")
        self.image_size = int(data.get("image_size", 224))
        self.model = model
        self.augment = dict(augment or {})
        self._datasets: dict[str, Dataset] = {}

    def transform(self, train: bool) -> Any:
        from timm.data import create_transform, resolve_data_config

        allow_zero_bit_posterize()
        base = resolve_data_config({"input_size": (3, self.image_size, self.image_size)}, model=self.model)
        aug = self.augment if train else {}
        return create_transform(
            input_size=base["input_size"], is_training=train,
            auto_augment=aug.get("auto_augment") or None,
            re_prob=float(aug.get("random_erasing", 0.0)), re_mode="pixel", re_count=1,
            interpolation=self.config.get("interpolation", "bicubic"),
            mean=base["mean"], std=base["std"], crop_pct=base.get("crop_pct", 0.875),
        )

    def dataset(self, split: str) -> Dataset:
        """The split's (sub)set, every file of it checked to decode first (once per source)."""
        if split not in self._datasets:
            self._datasets[split] = self._build_dataset(split)
        return self._datasets[split]

    def _build_dataset(self, split: str) -> Dataset:
        folder = self.root / ("train" if split == "train" else "val")
        dataset = self._folder(str(folder), transform=self.transform(split == "train"), loader=load_image)
        _check_classes(dataset.classes, self.class_names, folder)
        size = self.config.get("train_size" if split == "train" else "val_size")
        indices = np.arange(len(dataset.samples))
        if size:
            indices = balanced_subset(np.asarray(dataset.targets), int(size), derive_seed(self.seed, split))
        check_image_files([dataset.samples[i][0] for i in indices], "dcls.data.root")
        return torch.utils.data.Subset(dataset, indices.tolist()) if size else dataset

    def fingerprint(self, split: str) -> str:
        dataset = self.dataset(split)
        base = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset
        indices = dataset.indices if isinstance(dataset, torch.utils.data.Subset) else range(len(base.samples))
        digest = hashlib.sha256()
        for i in indices:
            path, label = base.samples[i]
            digest.update(f"{os.path.relpath(path, self.root)}\t{label}\n".encode())
        return digest.hexdigest()[:16]

    def robustness_sets(self) -> dict[str, Dataset]:
        """ImageNet-A/R/Sketch/C folders (paths in 'dcls.data.robustness'); labels mapped by wnid.

        ImageNet-A and -R cover 200 of the 1000 classes: their wnid folders are mapped onto the
        training label space, so top-1 is measured over the full 1000-way output. A folder in
        ImageNet-C's layout (``<corruption>/<severity>/<wnid>/``) gives one set per corruption
        and severity, named ``<name>/<corruption>@<severity>``. 'dcls.data.robustness_size'
        evaluates a class-balanced subset of every set (null: all of it).
        """
        sets: dict[str, Dataset] = {}
        for name, path in (self.config.get("robustness") or {}).items():
            key = f"dcls.data.robustness.{name}"
            folder = _require_dir(path, key, f"{name} ImageFolder")
            levels = corruption_levels(folder, key)
            if levels is None:
                sets[name] = self._robustness_set(folder, key)
            for corruption, severity, level in levels or []:
                sets[f"{name}/{corruption}@{severity}"] = self._robustness_set(level, key)
        return sets

    def _robustness_set(self, folder: Path, key: str) -> Dataset:
        """One labelled set on the training label space, subset to 'dcls.data.robustness_size'."""
        index = {wnid: i for i, wnid in enumerate(self.class_names)}
        dataset = self._folder(str(folder), transform=self.transform(False), loader=load_image)
        unknown = [c for c in dataset.classes if c not in index]
        if unknown:
            raise ConfigError(f"config key '{key}': {folder} has class folders not in the training set, "
                              f"e.g. {unknown[:3]}")
        remap = [index[c] for c in dataset.classes]
        dataset.target_transform = remap.__getitem__
        size = self.config.get("robustness_size")
        indices = np.arange(len(dataset.samples))
        if size:
            indices = balanced_subset(np.asarray(dataset.targets), int(size), derive_seed(self.seed, "robust", key))
        check_image_files([dataset.samples[i][0] for i in indices], key)
        return torch.utils.data.Subset(dataset, indices.tolist()) if size else dataset


def corruption_levels(folder: Path, key: str) -> list[tuple[str, int, Path]] | None:
    """(corruption, severity, folder) of an ImageNet-C layout, or None for a plain ImageFolder.

    The layout is recognised by numeric severity folders in the first sub-folder (a class folder
    of a plain ImageFolder holds images); a folder that mixes both layouts is an error naming
    the key.
    """
    first = sorted(p for p in folder.iterdir() if p.is_dir())

    def severities(sub: Path) -> list[Path]:
        return sorted(c for c in sub.iterdir() if c.name.isdigit() and c.is_dir())

    if not first or not severities(first[0]):
        return None
    numeric = {p: severities(p) for p in first}
    plain = [p.name for p, levels in numeric.items() if not levels]
    if plain:
        raise ConfigError(f"config key '{key}': {folder} looks like ImageNet-C (<corruption>/<severity>/<wnid>/) "
                          f"but {plain[:3]} hold no severity folders; fix the layout")
    return [(p.name, int(level.name), level) for p, levels in numeric.items() for level in levels]


def _posterize_zero_bits_ok(img: Any, bits_to_keep: int, **_: Any) -> Any:
    """timm's posterize, with 0 bits kept giving the black image older Pillow returned."""
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def allow_zero_bit_posterize() -> None:
    """The paper's RandAugment (rand-m9-mstd0.5-inc1) draws magnitude 10 now and then, which
    timm maps to posterize with 0 bits; recent Pillow (13.0 here) rejects that, killing a loader worker and
    the training job a few thousand images into ImageNet. Restores the old result instead."""
    from timm.data import auto_augment

    for name, op in list(auto_augment.NAME_TO_OP.items()):
        if op is auto_augment.posterize:
            auto_augment.NAME_TO_OP[name] = _posterize_zero_bits_ok


def load_image(path: str) -> Any:
    """ImageFolder's loader, but a file that does not decode names itself."""
    from PIL import Image

    try:
        with open(path, "rb") as handle, Image.open(handle) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: cannot decode image ({err}); expected a complete JPEG/PNG image") from err


def image_file_problem(path: str) -> str | None:
    """None when ``path`` is a whole image, else what is wrong with it.

    Fast path: a JPEG whose last 4 KiB hold the end-of-image marker. Anything else is decoded
    (JPEG at 1/8 scale via ``draft``, which still reads every byte), so truncation is caught.
    """
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            head = handle.read(3)
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - 4096))
            if head == b"\xff\xd8\xff" and b"\xff\xd9" in handle.read():
                return None
        with Image.open(path) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return str(err) or type(err).__name__
    return None


def check_image_files(paths: Sequence[str], key: str) -> None:
    """Raise InputError naming the first file of ``paths`` that is not a whole image."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for path, problem in zip(paths, pool.map(image_file_problem, paths, chunksize=64), strict=True):
            if problem is not None:
                raise InputError(f"{path}: not a readable image ({problem}); expected a complete JPEG/PNG "
                                 f"image under config key '{key}': replace or delete the file")


def _check_classes(found: Sequence[str], expected: Sequence[str], folder: Path) -> None:
    if list(found) != list(expected):
        raise ConfigError(f"config key 'dcls.data.root': {folder} has classes {list(found)[:5]}... "
                          f"but train/ has {list(expected)[:5]}...")


def build_source(data: Mapping[str, Any], seed: int, model: torch.nn.Module | None = None,
                 augment: Mapping[str, Any] | None = None) -> ImageSource:
    """The dataset named by 'dcls.data.dataset' ('fashion_mnist' or 'imagefolder').

    ``augment`` (auto_augment policy, random_erasing probability) shapes the ImageFolder train
    transform; in-memory data is augmented per batch by the trainer instead.
    """
    name = data.get("dataset", "fashion_mnist")
    if name == "fashion_mnist":
        return FashionMNISTSource(data, seed)
    if name == "imagefolder":
        return ImageFolderSource(data, seed, model, augment)
    raise ConfigError(f"config key 'dcls.data.dataset': unknown dataset {name!r} (fashion_mnist or imagefolder)")


# --- deterministic sharding ----------------------------------------------------------------------


class ShardedEpochSampler(Sampler[int]):
    """DistributedSampler-like, but the order depends only on (seed, epoch), never on global RNG.

    Every rank draws the same permutation of the dataset, drops the tail so that every rank gets
    ``steps_per_epoch * per_rank_batch`` items, and takes items ``rank, rank + world, ...``. With
    ``start_step`` the first batches are skipped (resume inside an epoch). Rank ``r``'s batch
    ``s`` is thus a subset of the single-process batch ``s`` of the same global batch size, and
    the union over ranks equals it.
    """

    def __init__(self, size: int, global_batch: int, seed: int, rank: int = 0, world: int = 1,
                 shuffle: bool = True) -> None:
        if global_batch % world:
            raise ConfigError(f"config key 'dcls.train.batch_size': {global_batch} is not divisible by "
                              f"the {world} DDP processes")
        if size < global_batch:
            raise ConfigError(f"config key 'dcls.train.batch_size': {global_batch} exceeds the "
                              f"{size} training images (lower it or raise 'dcls.data.train_size')")
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.epoch, self.start_step = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        return self.size // self.global_batch

    @property
    def per_rank_batch(self) -> int:
        return self.global_batch // self.world

    def set_position(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def global_order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "epoch-order", self.epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()[: self.steps_per_epoch * self.global_batch]
        mine = order[self.rank :: self.world]
        return iter(mine[self.start_step * self.per_rank_batch :])

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.per_rank_batch
