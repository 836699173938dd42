"""ImageNet-family folder layouts, written from scratch with real JPEG files.

The rehearsal (``workflow/presets/rehearsal.yaml``), the loader benchmark and the dry-run tests
need data in the layouts the paper preset reads, without ImageNet: the training ImageFolder
``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` over ImageNet-1k's wnids, ImageNet-A and
ImageNet-R (their 200-wnid subsets), ImageNet-Sketch (all 1000 wnids) and ImageNet-C
(``<corruption>/<severity>/<wnid>/``). The wnid lists are timm's (``timm/data/_info``), so the
folder names are the real ones. Pixels are synthetic (a class colour, a class-dependent stripe
pattern and noise): the layouts, not the images, are what is being rehearsed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ImageNet-C's 15 benchmark corruptions (Hendrycks & Dietterich, 2019), as its folders are named
IMAGENET_C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression",
)  # fmt: skip
SUBSET_SYNSETS = {"imagenet-a": "imagenet_a_synsets.txt", "imagenet-r": "imagenet_r_synsets.txt"}


def _synsets(file_name: str) -> list[str]:
    from importlib.resources import files

    text = files("timm.data").joinpath("_info", file_name).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids in class-index order (sorted, as ImageFolder sorts them)."""
    return _synsets("imagenet_synsets.txt")


def subset_wnids(name: str) -> list[str]:
    """The 200 wnids of ImageNet-A or ImageNet-R (subsets of the 1000)."""
    if name not in SUBSET_SYNSETS:
        raise ValueError(f"no wnid subset for {name!r} (have {sorted(SUBSET_SYNSETS)})")
    return _synsets(SUBSET_SYNSETS[name])


@dataclass(frozen=True)
class LayoutSpec:
    """What to write: classes, images per class per split, robustness sets, JPEG size."""

    classes: int = 1000  # the first N ImageNet-1k wnids (A/R keep the members of their subset)
    train_per_class: int = 1
    val_per_class: int = 1
    robustness_per_class: int = 1
    robustness: Sequence[str] = ("imagenet-a", "imagenet-r", "imagenet-sketch", "imagenet-c")
    corruptions: Sequence[str] = ("gaussian_noise", "contrast")
    severities: Sequence[int] = (3,)
    image_size: tuple[int, int] = (64, 48)  # width, height (ImageNet's most common is 500 x 375)
    seed: int = 0


def synthetic_image(wnid: str, name: str, size: tuple[int, int], seed: int) -> np.ndarray:
    """An RGB uint8 image: the class's colour, stripe orientation and frequency, and the noise
    of image ``name`` (deterministic in seed, wnid and name)."""
    digest = hashlib.sha256(f"{seed}/{wnid}".encode()).digest()
    colour = np.frombuffer(digest[:3], dtype=np.uint8).astype(np.float32)
    angle, frequency = digest[3] / 255.0 * np.pi, 2.0 + digest[4] / 32.0
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    stripes = np.sin((np.cos(angle) * x + np.sin(angle) * y) * frequency * 2 * np.pi / max(width, height))
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}/{wnid}/{name}".encode()).digest()[:8], "little"))
    noise = rng.normal(0.0, 18.0, (height, width, 3))
    image = colour[None, None, :] * (0.6 + 0.4 * stripes[..., None]) + noise
    return np.clip(image, 0, 255).astype(np.uint8)


def write_class_folders(root: Path, wnids: Iterable[str], per_class: int, spec: LayoutSpec, tag: str) -> int:
    """``root/<wnid>/<wnid>_<tag>_<i>.JPEG`` for every wnid; returns the number of files."""
    from PIL import Image

    count = 0
    for wnid in wnids:
        folder = root / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            name = f"{wnid}_{tag}_{i}"
            pixels = synthetic_image(wnid, name, spec.image_size, spec.seed)
            Image.fromarray(pixels).save(folder / f"{name}.JPEG", format="JPEG", quality=85)
            count += 1
    return count


def write_training_folder(root: Path, spec: LayoutSpec) -> int:
    """``root/train/<wnid>/`` and ``root/val/<wnid>/`` (what ``dcls.data.root`` points at)."""
    wnids = imagenet_wnids()[: spec.classes]
    return (write_class_folders(root / "train", wnids, spec.train_per_class, spec, "train")
            + write_class_folders(root / "val", wnids, spec.val_per_class, spec, "val"))


def write_robustness_folder(folder: Path, name: str, spec: LayoutSpec) -> int:
    """One robustness set in the layout its name says: imagenet-a / imagenet-r: their 200-wnid
    subsets; imagenet-c: ``<corruption>/<severity>/<wnid>/``; anything else (imagenet-sketch):
    every class."""
    wnids = imagenet_wnids()[: spec.classes]
    if name in SUBSET_SYNSETS:
        chosen = set(wnids)
        members = [w for w in subset_wnids(name) if w in chosen]
        if not members:
            raise ValueError(f"{name}: none of its wnids is among the first {spec.classes} classes; write more classes")
        return write_class_folders(folder, members, spec.robustness_per_class, spec, name)
    if name.startswith("imagenet-c"):
        return sum(
            write_class_folders(folder / corruption / str(severity), wnids, spec.robustness_per_class, spec,
                                f"{corruption}{severity}")
            for corruption in spec.corruptions for severity in spec.severities
        )  # fmt: skip
    return write_class_folders(folder, wnids, spec.robustness_per_class, spec, name)


def write_imagenet_layouts(root: Path, spec: LayoutSpec = LayoutSpec()) -> dict[str, Path]:
    """Every layout under ``root``: name -> folder (``imagenet`` holds train/ and val/, the
    others are ``dcls.data.robustness`` folders)."""
    folders = {"imagenet": root / "imagenet", **{name: root / name for name in spec.robustness}}
    write_training_folder(folders["imagenet"], spec)
    for name in spec.robustness:
        write_robustness_folder(folders[name], name, spec)
    return folders
