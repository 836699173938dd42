"""Disk, memory and GPU-time needs of the paper preset, computed, never guessed (docs/paper-scale.md).

- DCLS, per grid cell of the config: parameters of the model the trainer builds (1000 classes),
  the bytes of one checkpoint (fp32 model + AdamW's two moments + EMA; training keeps last.pt
  and prev.pt) and of weights.pt (model + EMA);
- TempScale: each hub model's fp32 size as mteb's ModelMeta states it, and the characters of
  text in the evaluation splits of every hub task (mteb's descriptive statistics);
- GPU hours per training cell from a measured training throughput: ``--img-per-s-per-gpu R``
  (e.g. batch / step time of ``benchmarks/bench_dcls_train.py --device cuda``) gives
  epochs x train_images / R / 3600 GPU hours.

    python benchmarks/paper_scale_sizes.py                       # paper.yaml
    python benchmarks/paper_scale_sizes.py --img-per-s-per-gpu convnext_tiny/dcls_v0=900
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
IMAGENET_TRAIN_IMAGES = 1_281_167  # ImageNet-1k train split (ILSVRC-2012)
CHECKPOINT_COPIES = 4  # model, AdamW exp_avg, AdamW exp_avg_sq, EMA (fp32 each)


def dcls_rows(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    import torch

    from tsdcls.dcls.train import RunSpec, build_run_model

    torch.set_num_threads(1)
    rows = []
    for entry in config["grid"]:
        for variant in entry["variants"]:
            for k in entry.get("kernel_counts", [1]):
                for d in entry.get("dks", [1]):
                    k_, d_ = (0, 0) if variant == "dense" else (k, d)
                    model, _ = build_run_model(config, RunSpec(entry["family"], variant, k_, d_, 0), 1000)
                    params = sum(p.numel() for p in model.parameters())
                    rows.append({"cell": f"{entry['family']}/{variant}/k{k_}_d{d_}", "params": params,
                                 "checkpoint_bytes": 4 * params * CHECKPOINT_COPIES, "weights_bytes": 4 * params * 2})
    return list({row["cell"]: row for row in rows}.values())


def text_characters(stats: Any) -> int:
    """Characters of text in one split's descriptive statistics (mteb's keys differ by task type)."""
    if not isinstance(stats, Mapping):
        return 0
    total = 0
    for key, value in stats.items():
        if key in ("number_of_characters", "total_text_length") and isinstance(value, int | float):
            total += int(value)
        elif isinstance(value, Mapping) and key != "hf_subset_descriptive_stats":
            total += text_characters(value)
    return total


def tempscale_rows(section: Mapping[str, Any]) -> tuple[list[tuple[str, float]], list[tuple[str, str, int]]]:
    import mteb

    from tsdcls.tempscale.tasks.hub import configured_tasks

    models = []
    for name in dict.fromkeys([*section["models"], *section["ablation"]["models"]]):
        meta = mteb.get_model_meta(name)
        models.append((name, float(meta.memory_usage_mb or 0.0)))
    hub = section["tasks"]["hub"]
    tasks = []
    for task in configured_tasks(hub["tasks"], hub["benchmarks"]):
        stats = task.metadata.descriptive_stats or {}
        tasks.append((task.metadata.name, task.metadata.type, sum(text_characters(s) for s in stats.values())))
    return models, tasks


def main() -> None:
    from tsdcls.common.config import merge_config_files

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", default=[str(REPO / "config.yaml"), str(REPO / "workflow/presets/paper.yaml")])
    parser.add_argument("--img-per-s-per-gpu", nargs="*", default=[], metavar="FAMILY/VARIANT=R",
                        help="measured training images/s per GPU of a family/variant")
    args = parser.parse_args()
    config = merge_config_files(args.configfile)
    rates = dict(item.split("=", 1) for item in args.img_per_s_per_gpu)
    epochs = int(config["dcls"]["train"]["epochs"])
    train_images = config["dcls"]["data"].get("train_size") or IMAGENET_TRAIN_IMAGES
    print(f"DCLS grid ({epochs} epochs of {train_images:,} images; checkpoint = fp32 x {CHECKPOINT_COPIES}, "
          "two kept per cell):")
    total = 0
    for row in dcls_rows(config["dcls"]):
        family_variant = "/".join(row["cell"].split("/")[:2])
        rate = rates.get(family_variant)
        hours = f"{epochs * train_images / float(rate) / 3600:,.0f} GPU h at {rate} img/s/GPU" if rate else \
            "GPU h = epochs x images / (img/s per GPU) / 3600: measure img/s first"
        total += 2 * row["checkpoint_bytes"] + row["weights_bytes"]
        print(f"  {row['cell']:32s} {row['params'] / 1e6:6.2f} M params  checkpoint {row['checkpoint_bytes'] / 1e9:5.2f} GB"
              f"  weights.pt {row['weights_bytes'] / 1e9:5.2f} GB  {hours}")
    print(f"  all cells x {len(config['dcls']['seeds'])} seed(s): {total * len(config['dcls']['seeds']) / 1e9:.1f} GB "
          "of checkpoints and weights")
    models, tasks = tempscale_rows(config["tempscale"])
    print("TempScale hub models (fp32, mteb ModelMeta):")
    for name, megabytes in models:
        print(f"  {name:45s} {megabytes / 1e3:6.2f} GB")
    print(f"TempScale hub tasks: {len(tasks)}, text in their evaluation splits (mteb descriptive statistics):")
    by_type: dict[str, int] = {}
    for _, task_type, chars in tasks:
        by_type[task_type] = by_type.get(task_type, 0) + chars
    for task_type, chars in sorted(by_type.items()):
        print(f"  {task_type:20s} {chars / 1e6:10.1f} M characters")
    print(f"  total {sum(by_type.values()) / 1e9:.2f} G characters (tasks without text statistics count 0)")


if __name__ == "__main__":
    main()
