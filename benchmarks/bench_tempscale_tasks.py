"""Wall time of the TempScale task/ablation part of the DAG (evaluations, aggregation, figures).

Targets (issue, part 4): <= 8 min for the embedded default, <= 60 s for the smoke preset, on 2
idle cores. Runs the real Snakemake in a fresh copy of the workflow (so nothing in results/ is
reused), then prints the wall time and, per rule, the wall and CPU seconds from Snakemake's own
benchmark files. The load average is printed too: on a shared machine the wall time measures
the neighbours, the CPU seconds do not.

    python benchmarks/bench_tempscale_tasks.py [--configfile workflow/presets/smoke.yaml] [--cores 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = [
    "results/tempscale/ablation.csv",
    "results/figures/tempscale_passkey_needle.png",
    "results/figures/tempscale_tau_sweep.png",
    "results/tables/tempscale_ablation.md",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=None, help="preset overlay, e.g. workflow/presets/smoke.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary run folder")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-tempscale-"))
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO / name, workdir / name)
    for name in ("workflow", "envs", "data"):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", str(args.cores), *TARGETS]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    per_rule: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for tsv in sorted((workdir / "results/benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(workdir / "results/benchmarks").parts[0]
        with open(tsv, encoding="utf-8") as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        per_rule[rule].append((float(row["s"]), float(row.get("cpu_time") or "nan")))
    print(f"preset: {args.configfile or 'config.yaml (embedded default)'}, cores: {args.cores}")
    print(f"load average 1 min: before {load_before:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"wall time of the TempScale task/ablation part: {wall:.1f} s")
    total_cpu = 0.0
    for rule, runs in sorted(per_rule.items()):
        cpu = sum(c for _, c in runs)
        total_cpu += cpu
        print(f"  {rule:34s} jobs {len(runs):2d}  wall {sum(s for s, _ in runs):7.1f} s  cpu {cpu:7.1f} s")
    print(f"total CPU seconds: {total_cpu:.1f} (/{args.cores} cores = {total_cpu / args.cores:.1f} s if perfectly parallel)")
    if args.keep:
        print(f"run folder: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
