"""Overhead of the simulator: FedAvg for R rounds vs a plain loop over the same samples.

The plain loop trains the same model (same initial weights) with one optimizer, visiting exactly
the minibatches FedAvg's clients visit (same samples, same batch size, same number of steps), with
no federation: no weight loading, no per-client optimizer, no averaging. The ratio is
(FedAvg training time) / (plain loop time); evaluation is timed separately and excluded.

    python benchmarks/overhead.py                      # Fashion-MNIST if installed, else digits
    python benchmarks/overhead.py --dataset digits --rounds 20
"""

from __future__ import annotations

import argparse
import time

import torch

from pfedkit.core.config import load_config
from pfedkit.core.errors import DatasetNotFoundError
from pfedkit.data.setup import build_federated_data
from pfedkit.runs.bench.speed import plain_loop
from pfedkit.runs.experiment import simulate_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="", help="digits or fashion-mnist (default: fashion-mnist if present)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-samples", type=int, default=12000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repetitions; the minimum counts")
    args = ap.parse_args()
    datasets = [args.dataset] if args.dataset else ["fashion-mnist", "digits"]
    for name in datasets:
        cfg = load_config(None, [f"data.dataset={name}", f"data.num_clients={args.clients}",
                                 f"data.max_samples={args.max_samples}", "partition.alpha=0.5",
                                 f"train.rounds={args.rounds}", f"train.batch_size={args.batch_size}",
                                 f"eval_every={args.rounds}", f"device={args.device}", "train.lr=0.05"])
        try:
            fed = build_federated_data(cfg.data, cfg.partition, cfg.seed)
            break
        except DatasetNotFoundError as err:
            print(f"{name}: {err}")
    torch.set_num_threads(cfg.threads or torch.get_num_threads())  # same threads for both loops
    plain_loop(cfg, fed, [1])  # warm-up (allocator, kernels, lazy imports)
    plains, trains, totals = [], [], []
    for _ in range(args.repeats):  # alternate the two, keep the fastest of each (robust to a busy machine)
        plains.append(plain_loop(cfg, fed, list(range(1, args.rounds + 1)))[0])
        t0 = time.perf_counter()
        res = simulate_config(cfg, fed=fed, progress=False)
        totals.append(time.perf_counter() - t0)
        trains.append(sum(r["seconds"] for r in res.history))
    plain, train_time, total = min(plains), min(trains), min(totals)
    samples = sum(c.num_train for c in fed.clients) * cfg.train.local_epochs * args.rounds
    print(f"dataset {cfg.data.dataset}, {len(fed.clients)} clients, {samples} training samples over "
          f"{args.rounds} rounds, batch {cfg.train.batch_size}, threads {torch.get_num_threads()}, "
          f"best of {args.repeats}")
    print(f"plain loop          {plain:8.2f} s")
    print(f"FedAvg (training)   {train_time:8.2f} s   ({train_time / args.rounds:.2f} s/round)")
    print(f"FedAvg (with 1 eval){total:8.2f} s")
    print(f"overhead ratio      {train_time / plain:8.3f}   (target <= 1.10)")


if __name__ == "__main__":
    main()
