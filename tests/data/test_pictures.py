"""Pictures: every drawing function writes a non-empty PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pfedkit.data.partition import build_partition
from pfedkit.data.pictures import plot_partition, save_corruption_grid, save_domain_grid, save_sample_grid
from pfedkit.data.pool import Pool

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000


def test_plot_partition_labels_and_domains(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels, domains = rng.integers(0, 10, 2000), rng.integers(0, 3, 2000)
    part = build_partition(
        "domain-dirichlet", labels, 12, np.random.default_rng(0), domains=domains,
        corruption="random", num_heldout=2,
    )
    assert_png(plot_partition(part, labels, 10, tmp_path / "a" / "labels.png"))
    path = plot_partition(part, labels, 10, tmp_path / "both.png", domains, ("mnist", "svhn", "usps"))
    assert_png(path)


def test_plot_partition_many_clients(tmp_path: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 10, 5000)
    part = build_partition("quantity", labels, 150, np.random.default_rng(0), min_size=5, num_heldout=10)
    assert_png(plot_partition(part, labels, 10, tmp_path / "many.png"))


def test_sample_grid_and_shape_check(tmp_path: Path) -> None:
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert_png(save_sample_grid(images, ["a", "b"], tmp_path / "grid.png", "six digits"))
    with pytest.raises(ValueError):
        save_sample_grid(images, ["a", "b", "c", "d"], tmp_path / "bad.png", "")


def test_domain_grid(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    pool = Pool(
        x=torch.rand(30, 3, 16, 16, generator=gen), y=torch.arange(30) % 10, num_classes=10,
        name="toy", domain=torch.arange(30) % 3, domain_names=("red", "green", "blue"),
    )
    assert_png(save_domain_grid(pool, tmp_path / "domains.png", per_domain=12))
    plain = Pool(x=pool.x, y=pool.y, num_classes=10, name="plain")
    assert_png(save_domain_grid(plain, tmp_path / "plain.png", per_domain=4))


def test_corruption_grid(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert_png(save_corruption_grid(images, tmp_path / "corruptions.png", torch.Generator().manual_seed(0)))
