"""Write docs/methods.md: every registered method, its paper, what it shares and keeps, and the
bytes it uploads and downloads per client per round, measured from its payloads.

    python benchmarks/methods_table.py            # Fashion-MNIST-sized CNN (1x28x28 input)

Bytes are measured by running each method for 2 rounds on a small Fashion-MNIST subset (digits
upsampled is not needed: payload sizes depend on the model and classes, not on the images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pfedkit.algorithms.registry import algorithm_class, algorithms_for_model
from pfedkit.core.config import load_config
from pfedkit.data.setup import build_federated_data
from pfedkit.runs.experiment import seeded_model, simulate_config

FAMILIES = [
    ("small CNN", ["model.cnn.width=32", "model.cnn.feature_dim=128"]),
    ("frozen ViT (vit_cpu_tiny) + 10 prompt tokens", ["model.name=vit", "model.vit.prompts=10"]),
    ("frozen ViT (vit_cpu_tiny), linear head on cached features", ["model.name=vit", "model.vit.prompts=0"]),
]
"""(model, overrides): each method is measured on the first family it runs on."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--out", default="docs/methods.md")
    args = ap.parse_args()
    base = [f"data.dataset={args.dataset}", "data.num_clients=4", "data.max_samples=800",
            "partition.scheme=iid", "train.rounds=2"]
    cfg = load_config(None, base)
    fed = build_federated_data(cfg.data, cfg.partition, cfg.seed)
    rows = ["| method | model | paper | shared (uploaded, aggregated) | personal (kept on the client) | "
            "KB up / client / round | KB down / client / round |", "|---|---|---|---|---|---:|---:|"]
    done: set[str] = set()
    sizes = []
    for family, overrides in FAMILIES:
        fam_cfg = load_config(None, base + overrides)
        model = fam_cfg.model
        n_params = sum(p.numel() for p in seeded_model(fam_cfg, fed.input_shape, fed.num_classes).parameters())
        sizes.append(f"{family}: {n_params:,} trainable float32 parameters")
        for name in algorithms_for_model(model.name, model.options_for(model.name)):
            if name in done:
                continue
            done.add(name)
            cls = algorithm_class(name)
            res = simulate_config(load_config(None, base + overrides + [f"algorithm={name}"]), fed=fed,
                                  progress=False)
            up = res.summary["bytes_up_per_round"] / len(fed.clients) / 1e3
            down = res.summary["bytes_down_per_round"] / len(fed.clients) / 1e3
            rows.append(f"| {name} | {family} | {cls.paper} | {cls.shares} | {cls.keeps} | {up:,.1f} | {down:,.1f} |")
            print(rows[-1])
    shape = "x".join(map(str, fed.input_shape))
    text = (f"# Methods\n\nCommand: `python benchmarks/methods_table.py --dataset {args.dataset}`\n\n"
            f"Bytes are measured from the payloads of a 2-round run (all clients participating), input {shape}, "
            f"10 classes; each method on the first model it runs on ({'; '.join(sizes)}). The frozen ViT "
            f"is never part of a payload. The head/body split comes from the model.\n\n" + "\n".join(rows) + "\n")
    Path(args.out).write_text(text)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
