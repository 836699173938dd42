"""Images/s of the paper-recipe training loader for 1..N DataLoader workers (size cpus_per_task).

The loader is the trainer's own: ``build_source`` (the ImageFolder with timm's train transform:
RandomResizedCrop to dcls.data.image_size, RandAugment, random erasing, normalisation, from
dcls.train of the config files) in a DataLoader with the trainer's settings. Worker counts are
interleaved round by round (shared machines drift); each round times ``--batches`` batches after
the first (worker start-up is reported apart). Mixup/cutmix run on the batch inside the training
step, not in the loader, so they are not part of these numbers.

    python benchmarks/bench_imagenet_loader.py                       # writes a rehearsal ImageFolder
    python benchmarks/bench_imagenet_loader.py --root /data/imagenet --workers 1 2 4 8 16 --batch 128

Without ``--root`` it writes an ImageNet-layout folder of synthetic JPEGs at ImageNet's most
common size (500 x 375) with tsdcls.dcls.layouts into a temporary folder; real ImageNet JPEGs
decode at a different cost, so measure on your own copy before sizing a cluster job.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tsdcls.common.config import merge_config_files
from tsdcls.dcls.data import build_source
from tsdcls.dcls.layouts import LayoutSpec, write_training_folder

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = [str(REPO / "config.yaml"), str(REPO / "workflow/presets/paper.yaml")]


def training_set(root: Path, configs: list[str], seed: int = 0) -> torch.utils.data.Dataset:
    """The trainer's training dataset with the configured paper-recipe transform."""
    config = merge_config_files(configs)["dcls"]
    data = {**config["data"], "dataset": "imagefolder", "root": str(root), "train_size": None}
    train = config["train"]
    source = build_source(data, seed, augment={"auto_augment": train.get("auto_augment", ""),
                                               "random_erasing": train.get("random_erasing", 0.0)})
    return source.dataset("train")


def time_round(dataset: torch.utils.data.Dataset, workers: int, batch: int, batches: int) -> tuple[float, float]:
    """(seconds to the first batch, images/s over the next ``batches``), as the trainer loads."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=True, pin_memory=torch.cuda.is_available(),
                                         persistent_workers=False)
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    rate = batches * batch / (time.perf_counter() - start)
    del iterator
    return first, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="an ImageFolder holding train/ (default: write one)")
    parser.add_argument("--configfile", nargs="+", default=DEFAULT_CONFIGS, help="config files (recipe)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=32, help="images per batch (one process)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--classes", type=int, default=100, help="classes of a written folder")
    parser.add_argument("--per-class", type=int, default=4, help="images per class of a written folder")
    parser.add_argument("--image-size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = args.root
        if root is None:
            root = Path(tmp)
            spec = LayoutSpec(classes=args.classes, train_per_class=args.per_class, val_per_class=1,
                              image_size=tuple(args.image_size))
            written = write_training_folder(root, spec)
            print(f"wrote {written} synthetic {args.image_size[0]}x{args.image_size[1]} JPEGs under {root}")
        dataset = training_set(root, args.configfile)
        needed = args.batch * (args.batches + 1)
        if len(dataset) < needed:
            raise SystemExit(f"{root}/train holds {len(dataset)} images; {needed} are needed (lower --batch/--batches)")
        results: dict[int, list[tuple[float, float]]] = {w: [] for w in args.workers}
        for _ in range(args.rounds):
            for workers in args.workers:
                results[workers].append(time_round(dataset, workers, args.batch, args.batches))
    print(f"paper-recipe train loader, {len(dataset)} images, batch {args.batch}, {args.batches} timed batches, "
          f"{args.rounds} interleaved rounds, {os.cpu_count()} CPUs visible; median [min-max]")
    for workers, rounds in results.items():
        rates = sorted(rate for _, rate in rounds)
        firsts = [first for first, _ in rounds]
        print(f"workers {workers:3d}: {statistics.median(rates):8.1f} img/s [{rates[0]:.1f}-{rates[-1]:.1f}]  "
              f"first batch {statistics.median(firsts):.2f} s")


if __name__ == "__main__":
    main()
