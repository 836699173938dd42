"""The ImageNet-family layouts the rehearsal writes, read back by the trainer's own ImageFolder
source: real wnids, the 200-class A/R subsets on the 1000-class label space, ImageNet-C's
<corruption>/<severity>/<wnid>/ folders, and robustness_size subsets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tsdcls.common.config import ConfigError
from tsdcls.dcls.data import ImageFolderSource
from tsdcls.dcls.layouts import LayoutSpec, imagenet_wnids, subset_wnids, write_imagenet_layouts


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = LayoutSpec(classes=1000, train_per_class=1, val_per_class=1, robustness_per_class=1,
                      corruptions=("gaussian_noise", "contrast"), severities=(1, 3))
    return write_imagenet_layouts(tmp_path_factory.mktemp("layouts"), spec)


def test_wnid_lists_are_imagenets() -> None:
    wnids = imagenet_wnids()
    assert len(wnids) == len(set(wnids)) == 1000 and wnids == sorted(wnids) and wnids[0] == "n01440764"
    for name in ("imagenet-a", "imagenet-r"):
        subset = subset_wnids(name)
        assert len(subset) == 200 and set(subset) < set(wnids), name
    assert subset_wnids("imagenet-a") != subset_wnids("imagenet-r")


def test_layouts_on_disk(layouts: dict[str, Path]) -> None:
    train = layouts["imagenet"] / "train"
    assert sorted(p.name for p in train.iterdir()) == imagenet_wnids()
    image = next((train / "n01440764").iterdir())
    assert image.suffix == ".JPEG" and image.read_bytes()[:3] == b"\xff\xd8\xff"
    with Image.open(image) as decoded:
        assert decoded.format == "JPEG" and decoded.mode == "RGB"
    assert sorted(p.name for p in layouts["imagenet-a"].iterdir()) == sorted(subset_wnids("imagenet-a"))
    assert len(list(layouts["imagenet-sketch"].iterdir())) == 1000
    corruption_root = layouts["imagenet-c"]
    assert sorted(p.name for p in corruption_root.iterdir()) == ["contrast", "gaussian_noise"]
    assert sorted(p.name for p in (corruption_root / "contrast").iterdir()) == ["1", "3"]
    assert len(list((corruption_root / "contrast" / "3").iterdir())) == 1000


def test_trainer_source_reads_every_layout(layouts: dict[str, Path]) -> None:
    robustness = {name: str(path) for name, path in layouts.items() if name != "imagenet"}
    source = ImageFolderSource({"root": str(layouts["imagenet"]), "image_size": 64, "robustness": robustness,
                                "robustness_size": 5}, seed=0)
    assert source.num_classes == 1000
    sets = source.robustness_sets()
    assert set(sets) == {"imagenet-a", "imagenet-r", "imagenet-sketch", *(
        f"imagenet-c/{c}@{s}" for c in ("gaussian_noise", "contrast") for s in (1, 3))}
    assert all(len(dataset) == 5 for dataset in sets.values())
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    allowed = {index[w] for w in subset_wnids("imagenet-r")}
    labels = [sets["imagenet-r"][i][1] for i in range(5)]
    assert set(labels) <= allowed and len(set(labels)) == 5  # 200-class subset on the 1000 labels
    image, _ = sets["imagenet-c/contrast@3"][0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32


def test_whole_sets_without_robustness_size(layouts: dict[str, Path]) -> None:
    source = ImageFolderSource({"root": str(layouts["imagenet"]), "image_size": 32,
                                "robustness": {"imagenet-a": str(layouts["imagenet-a"])}}, seed=0)
    assert len(source.robustness_sets()["imagenet-a"]) == 200


def test_mixed_imagenet_c_layout_is_rejected(layouts: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "fog" / "2" / "n01440764").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "fog" / "2" / "n01440764" / "x.JPEG")
    (tmp_path / "n01443537").mkdir()  # a class folder beside the corruption folders
    source = ImageFolderSource({"root": str(layouts["imagenet"]), "robustness": {"imagenet-c": str(tmp_path)}}, seed=0)
    with pytest.raises(ConfigError, match=r"dcls\.data\.robustness\.imagenet-c.*severity"):
        source.robustness_sets()


def test_paper_randaugment_survives_its_largest_magnitude(layouts: dict[str, Path]) -> None:
    """rand-m9-mstd0.5-inc1 can draw magnitude 10: posterize keeps 0 bits (a black image, as
    older Pillow gave), instead of Pillow's ValueError killing the loader worker."""
    from timm.data.auto_augment import RandAugment

    source = ImageFolderSource({"root": str(layouts["imagenet"]), "image_size": 64}, seed=0,
                               augment={"auto_augment": "rand-m9-mstd0.5-inc1", "random_erasing": 0.25})
    transform = source.transform(train=True)
    rand = next(t for t in transform.transforms if isinstance(t, RandAugment))
    posterize = [op for op in rand.ops if op.name.startswith("Posterize")]
    assert posterize
    image = Image.open(next((layouts["imagenet"] / "train" / "n01440764").iterdir())).convert("RGB")
    for op in posterize:
        op.prob, op.magnitude, op.magnitude_std = 1.0, 10, 0
        out = op(image)
        assert out.size == image.size and out.getextrema() == ((0, 0), (0, 0), (0, 0))


def test_loader_benchmark_prints_images_per_second_per_worker_count(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks/bench_imagenet_loader.py"
    cmd = [sys.executable, str(script), "--classes", "4", "--per-class", "6", "--image-size", "80", "60",
           "--batch", "4", "--batches", "2", "--rounds", "2", "--workers", "0", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {int(m[1]): float(m[2]) for m in re.finditer(r"workers\s+(\d+):\s+([\d.]+) img/s \[", proc.stdout)}
    assert set(lines) == {0, 1} and all(rate > 0 for rate in lines.values()), proc.stdout
    assert "paper-recipe train loader, 24 images" in proc.stdout
