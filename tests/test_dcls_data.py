"""DCLS data: IDX reader, the real Fashion-MNIST files, corruptions, deterministic sharding and the
ImageNet ImageFolder path on a tiny tree of real Fashion-MNIST PNGs written into tmp_path."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tsdcls.common.assets import FASHION_MNIST_DEFAULT
from tsdcls.common.config import ConfigError, InputError
from tsdcls.dcls.data import (
    CORRUPTIONS,
    FashionMNISTSource,
    ImageFolderSource,
    ShardedEpochSampler,
    balanced_subset,
    build_source,
    corrupt,
    load_fashion_mnist,
    read_idx,
)

needs_fashion = pytest.mark.skipif(not FASHION_MNIST_DEFAULT.is_dir(),
                                   reason="apt-get install dataset-fashion-mnist")
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    _write_idx(tmp_path / "x.idx", images, gz)
    if gz:
        (tmp_path / "x.idx").rename(tmp_path / "x.idx.gz")
    back = read_idx(tmp_path / ("x.idx.gz" if gz else "x.idx"))
    assert back.shape == (5, 4, 3) and np.array_equal(back, images)
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    _write_idx(tmp_path / "y.idx", big_endian, False)
    assert read_idx(tmp_path / "y.idx").tolist() == [[0, 1, 2], [3, 4, 5]]


def test_idx_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="bad.idx: not an IDX file"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"abc")
    with pytest.raises(ValueError, match="short.idx: header says"):
        read_idx(tmp_path / "short.idx")


@needs_fashion
def test_real_fashion_mnist_files() -> None:
    images, labels = load_fashion_mnist(None, "val")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert sorted(np.unique(labels).tolist()) == list(range(10))
    assert np.bincount(labels).tolist() == [1000] * 10
    assert 60 < images.mean() < 90  # Fashion-MNIST's mean grey level is ~73


def test_missing_root_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dcls.data.root"):
        load_fashion_mnist(tmp_path / "nowhere", "train")
    with pytest.raises(ConfigError, match="dcls.data.root"):
        ImageFolderSource({"root": str(tmp_path / "nowhere")}, seed=0)
    with pytest.raises(ConfigError, match="dcls.data.root"):
        ImageFolderSource({"root": ""}, seed=0)
    with pytest.raises(ConfigError, match="dcls.data.dataset"):
        build_source({"dataset": "cifar"}, seed=0)


def test_balanced_subset() -> None:
    labels = np.repeat(np.arange(10), 50)
    chosen = balanced_subset(labels, 200, seed=1)
    assert len(set(chosen.tolist())) == 200
    assert np.bincount(labels[chosen]).tolist() == [20] * 10
    assert np.array_equal(chosen, balanced_subset(labels, 200, seed=1))
    assert not np.array_equal(chosen, balanced_subset(labels, 200, seed=2))


@needs_fashion
def test_fashion_source_resizes_and_corrupts() -> None:
    source = FashionMNISTSource({"image_size": 32, "channels": 3, "train_size": 100, "val_size": 50,
                                 "corruptions": list(CORRUPTIONS), "corruption_severities": [1, 5]}, seed=0)
    images, labels = source.dataset("val").tensors
    assert images.shape == (50, 3, 32, 32) and float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert torch.equal(images[:, 0], images[:, 2])  # grey repeated into 3 channels
    sets = source.robustness_sets()
    assert sorted(sets) == sorted(f"{c}@{s}" for c in CORRUPTIONS for s in (1, 5))
    for corruption in CORRUPTIONS:
        mild = (sets[f"{corruption}@1"].tensors[0] - images).abs().mean()
        harsh = (sets[f"{corruption}@5"].tensors[0] - images).abs().mean()
        assert 0 < mild < harsh, corruption
        assert torch.equal(sets[f"{corruption}@5"].tensors[1], labels)


def test_corruption_is_deterministic_and_validated() -> None:
    batch = torch.rand(4, 3, 16, 16)
    assert torch.equal(corrupt(batch, "gaussian_noise", 3, seed=5), corrupt(batch, "gaussian_noise", 3, seed=5))
    with pytest.raises(ConfigError, match="dcls.data.corruptions"):
        corrupt(batch, "fog", 1, seed=0)
    with pytest.raises(ConfigError, match="corruption_severities"):
        corrupt(batch, "contrast", 6, seed=0)


def test_sharded_sampler_ranks_partition_the_single_process_batches() -> None:
    single = ShardedEpochSampler(103, global_batch=8, seed=4)
    single.set_position(epoch=2)
    order = list(single)
    assert len(order) == single.steps_per_epoch * 8 == 96 and len(set(order)) == 96
    ranks = []
    for rank in range(2):
        sampler = ShardedEpochSampler(103, global_batch=8, seed=4, rank=rank, world=2)
        sampler.set_position(epoch=2)
        ranks.append(list(sampler))
    for step in range(single.steps_per_epoch):
        union = set(ranks[0][step * 4 : (step + 1) * 4]) | set(ranks[1][step * 4 : (step + 1) * 4])
        assert union == set(order[step * 8 : (step + 1) * 8])
    single.set_position(epoch=2, start_step=5)
    assert list(single) == order[40:]  # resume inside an epoch skips exactly the done batches
    single.set_position(epoch=3)
    assert list(single) != order  # a new order every epoch
    with pytest.raises(ConfigError, match="dcls.train.batch_size"):
        ShardedEpochSampler(103, global_batch=9, seed=0, world=2)


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ImageNet-style tree (train/ and val/ with wnid folders) of real Fashion-MNIST PNGs."""
    if not FASHION_MNIST_DEFAULT.is_dir():
        pytest.skip("apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("imagenet")
    images, labels = load_fashion_mnist(None, "val")
    counts = {"train": 6, "val": 3, "imagenet-r": 2}
    for split, per_class in counts.items():
        wnids = WNIDS if split != "imagenet-r" else WNIDS[1:3]  # a 2-class subset, like ImageNet-R's 200
        for wnid in wnids:
            label = WNIDS.index(wnid)
            folder = root / split / wnid
            folder.mkdir(parents=True)
            picks = np.flatnonzero(labels == label)[: per_class + (10 if split == "val" else 0)]
            for i, index in enumerate(picks[-per_class:]):
                Image.fromarray(images[index]).convert("RGB").save(folder / f"{wnid}_{i}.png")
    return root


def test_imagefolder_path_with_timm_transforms(imagefolder: Path) -> None:
    source = ImageFolderSource(
        {"root": str(imagefolder), "image_size": 32, "robustness": {"imagenet-r": str(imagefolder / "imagenet-r")}},
        seed=0, augment={"auto_augment": "rand-m9-mstd0.5-inc1", "random_erasing": 0.25},
    )
    assert source.num_classes == 4 and list(source.class_names) == WNIDS
    train, val = source.dataset("train"), source.dataset("val")
    assert len(train) == 24 and len(val) == 12
    image, label = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 0
    # normalised with ImageNet mean/std: a black background pixel is -0.485 / 0.229 in channel 0
    assert abs(float(val[0][0][0].min()) + 0.485 / 0.229) < 1e-3
    robust = source.robustness_sets()["imagenet-r"]
    assert sorted({robust[i][1] for i in range(len(robust))}) == [1, 2]  # wnids mapped to train labels


def test_imagefolder_robustness_with_unknown_classes_is_rejected(imagefolder: Path, tmp_path: Path) -> None:
    (tmp_path / "n99999999").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "n99999999" / "x.png")
    source = ImageFolderSource({"root": str(imagefolder), "robustness": {"imagenet-a": str(tmp_path)}}, seed=0)
    with pytest.raises(ConfigError, match="dcls.data.robustness.imagenet-a"):
        source.robustness_sets()


# --- corrupt inputs are named (issue 10) -----------------------------------------------------------


def _fashion_folder(folder: Path, rng: np.random.Generator) -> Path:
    """A Fashion-MNIST-shaped folder of small, valid gzipped IDX files (40 train, 20 test images)."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", 40), ("t10k", 20)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), True)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(count) % 10).astype(np.uint8), True)
    return folder


@pytest.mark.parametrize("damage", ["truncated_gzip", "not_gzip", "truncated_plain"])
def test_corrupt_fashion_file_is_named(tmp_path: Path, damage: str) -> None:
    folder = _fashion_folder(tmp_path / "fm", np.random.default_rng(0))
    assert load_fashion_mnist(folder, "train")[0].shape == (40, 28, 28)  # intact first
    target = folder / "train-images-idx3-ubyte.gz"
    raw = target.read_bytes()
    if damage == "truncated_gzip":
        target.write_bytes(raw[: len(raw) // 2])
    elif damage == "not_gzip":
        target.write_bytes(b"this is not gzip data at all" * 10)
    else:  # a plain (not gzipped) IDX file cut short
        target.unlink()
        target = folder / "train-images-idx3-ubyte"
        target.write_bytes(gzip.decompress(raw)[:-100])
    with pytest.raises(InputError, match=f"{target}.*expected a complete (gzip-compressed )?IDX file"):
        load_fashion_mnist(folder, "train")
    load_fashion_mnist(folder, "val")  # the other split's files are fine


def test_user_given_missing_root_names_key_and_path_without_install_advice(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"'dcls.data.root': {tmp_path / 'nowhere'} is not a directory") as err:
        load_fashion_mnist(tmp_path / "nowhere", "train")
    assert "apt-get" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="'dcls.data.root'.*train-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path / "empty", "train")


def _jpeg_tree(root: Path) -> list[Path]:
    """train/ and val/ with two wnid folders of three real JPEGs each (Fashion-MNIST-like noise)."""
    rng = np.random.default_rng(1)
    files = []
    for split in ("train", "val"):
        for wnid in WNIDS[:2]:
            (root / split / wnid).mkdir(parents=True)
            for i in range(3):
                path = root / split / wnid / f"{wnid}_{i}.JPEG"
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path, format="JPEG")
                files.append(path)
    return files


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_jpeg_in_imagefolder_is_named_before_training(tmp_path: Path, damage: str) -> None:
    files = _jpeg_tree(tmp_path / "inet")
    source = ImageFolderSource({"root": str(tmp_path / "inet"), "image_size": 32}, seed=0)
    assert len(source.dataset("train")) == 6  # the intact tree passes the check
    bad = files[4]  # train/, second class
    raw = bad.read_bytes()
    bad.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"\x00garbage" * 50, "empty": b""}[damage])
    fresh = ImageFolderSource({"root": str(tmp_path / "inet"), "image_size": 32}, seed=0)
    with pytest.raises(InputError, match=f"{bad}: not a readable image .*expected a complete JPEG/PNG"):
        fresh.dataset("train")
    assert len(fresh.dataset("val")) == 6


def test_undecodable_image_read_later_names_the_file(tmp_path: Path) -> None:
    """A file that breaks after the check (or slips past it) still names itself when loaded."""
    from tsdcls.dcls.data import load_image

    path = tmp_path / "x.JPEG"
    path.write_bytes(b"\xff\xd8\xff" + b"\x00" * 64 + b"\xff\xd9")  # JPEG markers, no image inside
    with pytest.raises(InputError, match=f"{path}: cannot decode image"):
        load_image(str(path))
