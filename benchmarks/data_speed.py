"""Time partitioning and corruption at the sizes named in the heterogeneity issue.

Partitioning: 1,000,000 labels (10 classes, 4 domains) into 1,000 clients, every scheme
(target < 2 s each). Corruption: 10,000 RGB 32x32 images per type at severity 3 (target < 5 s
each). Prints a markdown table; run from the repository root:

    PYTHONPATH=src python benchmarks/data_speed.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from pfedkit.data.corruptions import CORRUPTIONS, corrupt
from pfedkit.data.partition import SCHEMES, build_partition


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn``: the minimum of each over ``repeats`` calls.

    CPU time sums all threads of this process and ignores time lost to other processes, so on
    a busy shared machine it bounds what an idle 2-core machine would take: wall <= CPU there.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 1_000_000)
    domains = rng.integers(0, 4, 1_000_000)
    rows = []
    for scheme in SCHEMES:
        seconds = best_of(
            args.repeats,
            lambda: build_partition(scheme, labels, 1000, np.random.default_rng(1), domains=domains),
        )
        rows.append(("partition", scheme, "1M labels -> 1000 clients", seconds, 2.0))
    part = build_partition("dirichlet", labels, 1000, np.random.default_rng(1))
    seconds = best_of(args.repeats, lambda: part.hash)
    rows.append(("partition", "hash (dirichlet)", "SHA-256 of 1M indices", seconds, 2.0))

    images = torch.rand(10_000, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in CORRUPTIONS:
        seconds = best_of(args.repeats, lambda: corrupt(images, name, 3, torch.Generator().manual_seed(0)))
        rows.append(("corruption", name, "10k x 3x32x32, severity 3", seconds, 5.0))

    print(
        f"torch {torch.__version__}, numpy {np.__version__}, {args.threads} torch threads, "
        f"{os.cpu_count()} CPUs visible, {platform.processor() or platform.machine()}, "
        f"best of {args.repeats}\n"
    )
    print("| task | what | size | wall s | CPU s | target s |")
    print("|---|---|---|---:|---:|---:|")
    for task, what, size, (wall, cpu), target in rows:
        flag = "" if min(wall, cpu) < target else " (over)"
        print(f"| {task} | {what} | {size} | {wall:.3f} | {cpu:.3f}{flag} | < {target:g} |")


if __name__ == "__main__":
    main()
