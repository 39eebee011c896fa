"""Write docs/methods.md: every registered method, its paper, what it shares and keeps, and the
bytes it uploads and downloads per client per round, measured from its payloads.

    python benchmarks/methods_table.py            # Fashion-MNIST-sized CNN (1x28x28 input)

Bytes are measured by running each method for 2 rounds on a small Fashion-MNIST subset (digits
upsampled is not needed: payload sizes depend on the model and classes, not on the images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pfedkit.algorithms.registry import algorithm_class, algorithm_names
from pfedkit.core.config import load_config
from pfedkit.data.setup import build_federated_data
from pfedkit.runs.experiment import seeded_model, simulate_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--out", default="docs/methods.md")
    args = ap.parse_args()
    overrides = [f"data.dataset={args.dataset}", "data.num_clients=4", "data.max_samples=800",
                 "partition.scheme=iid", "train.rounds=2", "model.cnn.width=32", "model.cnn.feature_dim=128"]
    cfg = load_config(None, overrides)
    fed = build_federated_data(cfg.data, cfg.partition, cfg.seed)
    rows = ["| method | paper | shared (uploaded, aggregated) | personal (kept on the client) | "
            "KB up / client / round | KB down / client / round |", "|---|---|---|---|---:|---:|"]
    for name in algorithm_names():
        cls = algorithm_class(name)
        res = simulate_config(load_config(None, overrides + [f"algorithm={name}"]), fed=fed, progress=False)
        per_client = len(fed.clients)
        up = res.summary["bytes_up_per_round"] / per_client / 1e3
        down = res.summary["bytes_down_per_round"] / per_client / 1e3
        rows.append(f"| {name} | {cls.paper} | {cls.shares} | {cls.keeps} | {up:,.1f} | {down:,.1f} |")
        print(rows[-1])
    shape = "x".join(map(str, fed.input_shape))
    n_params = sum(p.numel() for p in seeded_model(cfg, fed.input_shape, fed.num_classes).parameters())
    text = (f"# Methods\n\nCommand: `python benchmarks/methods_table.py --dataset {args.dataset}`\n\n"
            f"Bytes are measured from the payloads of a 2-round run (all clients participating) with the "
            f"small CNN (`model.cnn.width=32`, `model.cnn.feature_dim=128`, input {shape}, 10 classes, "
            f"{n_params:,} float32 parameters; `src/pfedkit/models/cnn.py`). The head/body split comes "
            f"from the model.\n\n" + "\n".join(rows) + "\n")
    Path(args.out).write_text(text)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
