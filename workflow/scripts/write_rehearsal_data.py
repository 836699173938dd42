"""Write the rehearsal's data, in the real layouts, where the merged config points.

    python workflow/scripts/write_rehearsal_data.py --configfile config.yaml \
        workflow/presets/paper.yaml workflow/presets/rehearsal.yaml

Reads the same config files as the Snakemake run (merged the way Snakemake merges them) and
writes, each folder replaced atomically:

- ``dcls.data.root``: an ImageNet-layout ImageFolder of JPEGs (``train/<wnid>/``, ``val/<wnid>/``)
  over the 1000 ImageNet-1k wnids; every ``dcls.data.robustness`` folder in its set's layout
  (imagenet-a / imagenet-r: their 200-wnid subsets; imagenet-c: ``<corruption>/<severity>/<wnid>/``;
  any other name: all wnids, as ImageNet-Sketch);
- ``resources.hf_cache``: every hub model and dataset the tempscale section names, at its pinned
  revision, in the Hugging Face cache's own layout (models hold MiniLM's files; datasets are tiny
  sets in the layout mteb's loader for each task reads).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from tsdcls.common.assets import minilm_path  # noqa: E402
from tsdcls.common.config import merge_config_files  # noqa: E402
from tsdcls.common.hub_layout import dataset_files, model_files, write_repo  # noqa: E402
from tsdcls.dcls.layouts import LayoutSpec, write_robustness_folder, write_training_folder  # noqa: E402


def replace_folder(folder: Path, write: Callable[[Path], None]) -> None:
    """Write into a sibling staging folder, then swap it in (a reader sees old or new, never half)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(staging)
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_image_data(data: Mapping[str, Any], spec: LayoutSpec) -> int:
    """The ImageFolder at dcls.data.root and every robustness folder; returns the files written."""
    if data.get("dataset") != "imagefolder" or not data.get("root"):
        raise SystemExit("config key 'dcls.data.dataset' must be imagefolder with a root: pass the rehearsal preset")
    counts = {"files": 0}

    def training(staging: Path) -> None:
        counts["files"] += write_training_folder(staging, spec)

    replace_folder(Path(data["root"]), training)
    for name, path in (data.get("robustness") or {}).items():
        def one_set(staging: Path, name: str = name) -> None:
            counts["files"] += write_robustness_folder(staging, name, spec)

        replace_folder(Path(path), one_set)
    return counts["files"]


def write_hub_cache(tempscale: Mapping[str, Any], home: Path) -> list[str]:
    """Every hub entry of the tempscale section into ``home``/hub; returns their labels."""
    from tsdcls.tempscale.stage import model_entries
    from tsdcls.tempscale.tasks.hub import configured_tasks, dataset_entry, leaf_tasks

    labels: list[str] = []

    def cache(staging: Path) -> None:
        hub = staging / "hub"
        for entry in model_entries(tempscale):
            write_repo(hub, "model", entry.repo_id, entry.revision, model_files(minilm_path()))
            labels.append(entry.label())
        section = tempscale.get("tasks", {}).get("hub", {})
        written = set()
        for task in configured_tasks(section.get("tasks", []), section.get("benchmarks", [])):
            for leaf in leaf_tasks(task):
                entry = dataset_entry(leaf)
                if entry not in written:
                    write_repo(hub, "dataset", entry.repo_id, entry.revision, dataset_files(leaf.metadata.name))
                    written.add(entry)
                    labels.append(entry.label())

    replace_folder(home, cache)
    return labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", nargs="+", required=True, help="config files, in Snakemake's order")
    parser.add_argument("--image-size", type=int, nargs=2, default=(64, 48), metavar=("W", "H"),
                        help="JPEG size in pixels (ImageNet's most common is 500 375)")
    parser.add_argument("--train-per-class", type=int, default=1, help="training images per class")
    args = parser.parse_args(argv)
    config = merge_config_files(args.configfile)
    start = time.perf_counter()
    spec = LayoutSpec(image_size=tuple(args.image_size), train_per_class=args.train_per_class)
    files = write_image_data(config["dcls"]["data"], spec)
    print(f"image folders: {files} JPEG files under {Path(config['dcls']['data']['root']).parent}")
    home = config.get("resources", {}).get("hf_cache")
    if not home:
        raise SystemExit("config key 'resources.hf_cache' is empty: pass the rehearsal preset")
    labels = write_hub_cache(config["tempscale"], Path(home))
    print(f"hub cache {home}: {len(labels)} entries ({time.perf_counter() - start:.1f} s)")
    for label in labels:
        print(f"  {label}")


if __name__ == "__main__":
    main()
