"""DAG overhead of the default config: `snakemake -n` time and a no-op rerun's time.

Targets (issue 2): dry-run <= 5 s, no-op rerun <= 10 s. Run after `make reproduce` for the
no-op figure to mean "everything up to date"; otherwise it reports how many jobs would run.

    python benchmarks/bench_dag.py [--configfile workflow/presets/smoke.yaml] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> tuple[float, str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "--cores", "2"]
    if args.configfile:
        snakemake += ["--configfile", args.configfile]
    dry_runs = [timed([*snakemake, "-n"]) for _ in range(args.repeats)]
    pending = re.search(r"^total\s+(\d+)", dry_runs[-1][1], re.MULTILINE)
    jobs = int(pending.group(1)) if pending else 0
    rows = [("dry-run (snakemake -n)", [t for t, _ in dry_runs], 5.0)]
    if jobs == 0:
        rows.append(("no-op rerun", [timed(snakemake)[0] for _ in range(args.repeats)], 10.0))
    print(f"{'measure':<28}{'median s':>10}{'target s':>10}  status")
    for name, values, target in rows:
        med = statistics.median(values)
        print(f"{name:<28}{med:>10.2f}{target:>10.1f}  {'ok' if med <= target else 'OVER TARGET'}")
    if jobs:
        print(f"no-op rerun not measured: {jobs} jobs are pending (run `make reproduce` first)")


if __name__ == "__main__":
    main()
