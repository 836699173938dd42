"""Speed of sigma_a: exact SVD vs Lanczos (the path high_frequency_gain takes beyond exact_max_n).

    .venv/bin/python benchmarks/bench_theory.py [--lengths 256 512 1024] [--repeats 5]

Interleaves the two methods on the same matrices and prints medians and their ratio, because
the shared machine is noisy. One BLAS thread, float64, Gaussian logits with s = 0.5.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from threadpoolctl import threadpool_limits

from tsdcls.common.lowpass import attention_from_logits, doubly_centered, top_singular_triplet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'n':>6} {'exact s':>9} {'lanczos s':>10} {'speed-up':>9} {'max rel diff':>13}")
    with threadpool_limits(1):
        for n in args.lengths:
            exact_times, lanczos_times, diffs = [], [], []
            for repeat in range(args.repeats):
                gen = torch.Generator().manual_seed(repeat)
                matrix = doubly_centered(attention_from_logits(0.5 * torch.randn(n, n, generator=gen, dtype=torch.float64)))
                start = time.perf_counter()
                exact = float(torch.linalg.matrix_norm(matrix, ord=2))
                exact_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                lanczos = top_singular_triplet(matrix, exact_max_n=1)[0]
                lanczos_times.append(time.perf_counter() - start)
                diffs.append(abs(lanczos - exact) / exact)
            exact_med, lanczos_med = statistics.median(exact_times), statistics.median(lanczos_times)
            print(f"{n:>6} {exact_med:>9.4f} {lanczos_med:>10.4f} {exact_med / lanczos_med:>8.1f}x {max(diffs):>13.2e}")


if __name__ == "__main__":
    main()
