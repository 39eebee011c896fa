"""Domain gap of digits-md: train a small CNN on each domain, test it on every domain.

Each domain is split once (seeded) into a train part and a held-out test part. The result
is a markdown table (rows: train domain, columns: test domain, accuracy in %) printed and
written to ``docs/results/domain_gap.md`` with the command that produced it.

    PYTHONPATH=src python benchmarks/domain_gap.py [--epochs 8 --train-per-domain 2500 ...]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pfedkit.data.domains.digits_md import load_digits_md
from pfedkit.data.pool import Pool
from pfedkit.models import build_model

DEFAULT_ROOT = Path(os.environ.get("PFEDKIT_DATA", Path.home() / ".cache" / "pfedkit" / "data"))


def split_domains(
    pool: Pool, train_per_domain: int, test_per_domain: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per domain, disjoint (train, test) index arrays: test first from a seeded shuffle."""
    assert pool.domain is not None
    splits = []
    for d in range(len(pool.domain_names)):
        members = rng.permutation(np.flatnonzero(pool.domain.numpy() == d))
        test = members[:test_per_domain]
        train = members[test_per_domain : test_per_domain + train_per_domain]
        splits.append((train, test))
    return splits


def train_cnn(
    x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace
) -> nn.Module:
    """Train the registry's ``cnn`` on x (N, 3, 32, 32) in [0, 1], y (N,) with SGD + momentum."""
    epochs, batch_size, lr, seed = args.epochs, args.batch_size, args.lr, args.seed
    torch.manual_seed(seed)  # build_model draws initial weights from torch's RNG
    model = build_model(
        "cnn", input_shape=(3, 32, 32), num_classes=10, width=args.width, feature_dim=args.feature_dim
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    order_gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=order_gen)
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on x (N, 3, 32, 32), y (N,)."""
    correct = sum(
        int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
        for i in range(0, len(y), batch_size)
    )
    return correct / len(y)


def markdown_table(names: tuple[str, ...], acc: np.ndarray) -> str:
    """Rows = train domain, columns = test domain, accuracy in %, plus the off-diagonal mean."""
    lines = [
        "| train \\ test | " + " | ".join(names) + " | mean of other domains |",
        "|---" * (len(names) + 2) + "|",
    ]
    for i, name in enumerate(names):
        cells = [f"**{100 * a:.1f}**" if j == i else f"{100 * a:.1f}" for j, a in enumerate(acc[i])]
        others = np.delete(acc[i], i).mean()
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * others:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="data root (default $PFEDKIT_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-per-domain", type=int, default=2500)
    parser.add_argument("--test-per-domain", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--width", type=int, default=16, help="channels of the CNN's first conv")
    parser.add_argument("--feature-dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/results/domain_gap.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "PYTHONPATH=src python benchmarks/domain_gap.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    start = time.perf_counter()
    pool = load_digits_md(args.root, seed=args.seed)
    splits = split_domains(pool, args.train_per_domain, args.test_per_domain, np.random.default_rng(args.seed))
    names = pool.domain_names
    acc = np.zeros((len(names), len(names)))
    for i, (train_idx, _) in enumerate(splits):
        model = train_cnn(pool.x[train_idx], pool.y[train_idx], args)
        for j, (_, test_idx) in enumerate(splits):
            acc[i, j] = accuracy(model, pool.x[test_idx], pool.y[test_idx])
        print(f"trained on {names[i]} ({len(train_idx)} images): {np.round(100 * acc[i], 1)}", flush=True)
    elapsed = time.perf_counter() - start

    sizes = ", ".join(f"{n}: {len(tr)} train / {len(te)} test" for n, (tr, te) in zip(names, splits))
    table = markdown_table(names, acc)
    report = "\n".join([
        "# digits-md domain gap",
        "",
        "```",
        command.strip(),
        "```",
        "",
        f"Small CNN (`build_model(\"cnn\", width={args.width}, feature_dim={args.feature_dim})`) "
        f"trained {args.epochs} epochs with SGD (lr {args.lr}, momentum 0.9, batch {args.batch_size}) "
        f"on one domain's train split and tested on every domain's held-out split. "
        f"Accuracy in %, diagonal in bold; seed {args.seed}. "
        f"Splits: {sizes}. Wall time {elapsed:.0f} s on {args.threads} CPU threads.",
        "",
        table,
        "",
    ])
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
