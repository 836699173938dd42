"""Pilot for the embedded DCLS design: paired top-1 differences, their spread and the tap shift.

Trains the grid's tiny ConvNeXt with the trainer's own code (``train_run``) for each variant and
seed under a few candidate settings, evaluates on the full 10k Fashion-MNIST test set, and prints
per run: top-1, CPU seconds of training, steps and mean |tap position - init| per stage; then per
setting the paired differences (same seed = same training subset and order) of DCLS-v0 against
dense, dilated and frozen positions with their sample sd, and the seeds a paired t-interval
needs for a half-width <= 1 point at that sd. Used to choose config.yaml's ``dcls.data`` and
``dcls.train`` sizes (docs/dcls.md, "Embedded design"); never run by the workflow.

    python benchmarks/pilot_dcls_design.py --seeds 0 1 2 --settings 32px 64px
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from scipy import stats

from tsdcls.dcls.data import build_source
from tsdcls.dcls.evaluate import evaluate_model, position_shift, tap_positions
from tsdcls.dcls.train import RunSpec, build_run_model, train_run

REPO = Path(__file__).resolve().parents[1]
# candidate settings: overrides of config.yaml's dcls section, as (section, key) -> value
SETTINGS: dict[str, dict[tuple[str, str], Any]] = {
    "32px": {("data", "image_size"): 32, ("data", "train_size"): 10000, ("train", "epochs"): 4},
    "64px": {("data", "image_size"): 64, ("data", "train_size"): 6000, ("train", "epochs"): 4},
}
VARIANTS = ("dense", "dcls_v0", "dilated", "dcls_frozen")


def setting_config(name: str) -> dict[str, Any]:
    config = copy.deepcopy(yaml.safe_load((REPO / "config.yaml").read_text())["dcls"])
    for (section, key), value in SETTINGS[name].items():
        config[section][key] = value
    config["data"]["val_size"] = None
    return config


def one_run(config: dict[str, Any], variant: str, seed: int) -> dict[str, Any]:
    dense = variant == "dense"  # the workflow's dense cell is k0_d0: its run id seeds the init
    spec = RunSpec("convnext", variant, 0 if dense else 24, 0 if dense else 9, seed)
    init, _ = build_run_model(config, spec, 10)
    start = time.process_time()
    result = train_run(config, spec, "cpu", None)
    seconds = time.process_time() - start
    source = build_source(config["data"], seed)
    metrics = evaluate_model(result.model, source.dataset("val"), 10, torch.device("cpu"), 500,
                             normalize=source.normalize)
    return {"variant": variant, "seed": seed, "top1": metrics["top1"], "train_cpu_s": round(seconds, 1),
            "steps": result.record["steps"], "shift": position_shift(tap_positions(init), tap_positions(result.model))}


def paired_summary(runs: list[dict[str, Any]]) -> list[str]:
    top1 = {(r["variant"], r["seed"]): r["top1"] for r in runs}
    lines = []
    for baseline in ("dense", "dilated", "dcls_frozen"):
        seeds = sorted(s for v, s in top1 if v == baseline and ("dcls_v0", s) in top1)
        diffs = [top1[("dcls_v0", s)] - top1[(baseline, s)] for s in seeds]
        if len(diffs) < 2:
            continue
        sd = statistics.stdev(diffs)
        need = next((n for n in range(2, 100) if stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) <= 1.0), None)
        lines.append(f"  dcls_v0 - {baseline}: {[round(d, 2) for d in diffs]} mean {statistics.mean(diffs):+.2f} "
                     f"sd {sd:.2f}; seeds for a 95% half-width <= 1 pt: {need}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.settings:
        config, runs = setting_config(name), []
        for seed in args.seeds:
            for variant in args.variants:
                runs.append(one_run(config, variant, seed))
                print(json.dumps({"setting": name, **runs[-1]}), flush=True)
        print(f"{name}:", *paired_summary(runs), sep="\n")


if __name__ == "__main__":
    main()
