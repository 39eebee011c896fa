"""Partitioners: determinism, coverage, the skew each scheme promises, and fast clear failures."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from pfedkit.core.errors import ConfigError, PartitionError
from pfedkit.data.corruptions import CORRUPTIONS
from pfedkit.data.partition import (
    SCHEMES,
    Partition,
    assign_corruptions,
    build_partition,
    dirichlet,
    domain_dirichlet,
    iid,
    mark_heldout,
    one_domain_per_client,
    pathological,
    quantity_dirichlet,
    quantity_skew,
    shards,
)

NUM_CLASSES, NUM_DOMAINS, PER_CLASS = 10, 4, 400
LABELS = np.repeat(np.arange(NUM_CLASSES), PER_CLASS)  # 4,000 samples
DOMAINS = np.tile(np.arange(NUM_DOMAINS), len(LABELS) // NUM_DOMAINS)


def build(scheme: str, seed: int, **kw) -> Partition:
    return build_partition(scheme, LABELS, 20, np.random.default_rng(seed), domains=DOMAINS, **kw)


def class_fractions(part: Partition, values: np.ndarray, num: int) -> np.ndarray:
    counts = part.label_counts(values, num)
    return counts / counts.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_hash_depends_on_seed_only(scheme: str) -> None:
    assert build(scheme, 0).hash == build(scheme, 0).hash
    assert build(scheme, 0).hash != build(scheme, 1).hash


@pytest.mark.parametrize("scheme", SCHEMES)
def test_clients_are_disjoint_and_cover_the_pool(scheme: str) -> None:
    part = build(scheme, 3)
    assert part.num_clients == 20
    every = np.concatenate(part.client_indices)
    assert every.dtype == np.int64
    assert len(every) == len(np.unique(every)) == len(LABELS)
    assert all(np.all(np.diff(idx) > 0) for idx in part.client_indices)  # sorted, no repeats


def test_dirichlet_alpha_controls_class_skew() -> None:
    def classes_above_5pct(alpha: float) -> float:
        runs = [dirichlet(LABELS, 20, alpha, np.random.default_rng(s), min_size=5) for s in range(3)]
        return float(np.mean([(class_fractions(p, LABELS, 10) > 0.05).sum(1).mean() for p in runs]))

    few, many = classes_above_5pct(0.05), classes_above_5pct(100.0)
    assert few < 3.5
    assert many == 10.0
    part = dirichlet(LABELS, 20, 100.0, np.random.default_rng(0))
    assert np.abs(class_fractions(part, LABELS, 10) - 0.1).max() < 0.05  # nearly uniform


def test_dirichlet_respects_min_size() -> None:
    part = dirichlet(LABELS, 40, 0.3, np.random.default_rng(0), min_size=20)
    assert part.sizes().min() >= 20


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_pathological_gives_exactly_k_classes(k: int) -> None:
    part = pathological(LABELS, 25, k, np.random.default_rng(0))
    held = (part.label_counts(LABELS, 10) > 0).sum(axis=1)
    assert np.all(held == k)
    usage = (part.label_counts(LABELS, 10) > 0).sum(axis=0)
    assert usage.max() - usage.min() <= 1  # classes shared evenly


def test_pathological_with_fewer_slots_than_classes_leaves_classes_out() -> None:
    part = pathological(LABELS, 3, 2, np.random.default_rng(0))
    held = part.label_counts(LABELS, 10) > 0
    assert np.all(held.sum(axis=1) == 2) and held.any(axis=0).sum() == 6
    assert part.sizes().sum() == 6 * PER_CLASS


def test_shards_limit_classes_per_client() -> None:
    part = shards(LABELS, 20, 2, np.random.default_rng(0))
    held = (part.label_counts(LABELS, 10) > 0).sum(axis=1)
    assert held.max() <= 4 and held.mean() <= 2.5  # a shard may straddle two classes
    assert part.sizes().max() - part.sizes().min() <= 2


def test_quantity_skew_spreads_sizes_with_iid_labels() -> None:
    flat = quantity_skew(LABELS, 20, 0.0, np.random.default_rng(0))
    assert flat.sizes().max() - flat.sizes().min() <= 1
    skewed = quantity_skew(LABELS, 20, 1.0, np.random.default_rng(0), min_size=15)
    sizes = skewed.sizes()
    assert sizes.min() >= 15 and sizes.sum() == len(LABELS)
    assert sizes.max() / sizes.min() > 5
    big = int(np.argmax(sizes))
    assert (class_fractions(skewed, LABELS, 10)[big] > 0.05).all()  # labels stay IID


def test_quantity_dirichlet_skews_sizes_and_labels_together() -> None:
    part = quantity_dirichlet(LABELS, 20, 1.0, 0.1, np.random.default_rng(0), min_size=15)
    sizes = part.sizes()
    assert sizes.min() >= 15 and sizes.sum() == len(LABELS)
    assert len(np.unique(np.concatenate(part.client_indices))) == len(LABELS)
    assert sizes.max() / sizes.min() > 5  # quantity skew
    dominant = class_fractions(part, LABELS, 10).max(axis=1)
    assert np.median(dominant) > 0.5  # label skew: most clients are dominated by one class
    flat = quantity_dirichlet(LABELS, 20, 0.0, 1000.0, np.random.default_rng(0))
    assert flat.sizes().max() / flat.sizes().min() < 1.5  # neither skew: near-equal, near-IID
    assert class_fractions(flat, LABELS, 10).max() < 0.2
    # sizes follow the log-normal weights, not the label draw: more sigma, more spread
    spread = [np.std(np.log(quantity_dirichlet(LABELS, 20, s, 0.5, np.random.default_rng(1)).sizes())) for s in (0.2, 1.5)]
    assert spread[1] > 2 * spread[0]


def test_one_domain_per_client_honours_domains() -> None:
    part = one_domain_per_client(LABELS, DOMAINS, 10, np.random.default_rng(0))
    for idx, meta in zip(part.client_indices, part.client_meta):
        assert set(DOMAINS[idx].tolist()) == {meta["domain"]}
    per_domain = np.bincount([m["domain"] for m in part.client_meta], minlength=NUM_DOMAINS)
    assert per_domain.min() >= 2 and per_domain.max() <= 3


def test_domain_dirichlet_alpha_domain_controls_mixing() -> None:
    def main_share(alpha_domain: float) -> float:
        part = domain_dirichlet(LABELS, DOMAINS, 20, 1.0, alpha_domain, np.random.default_rng(0))
        return float(class_fractions(part, DOMAINS, NUM_DOMAINS).max(axis=1).mean())

    assert main_share(0.05) > 0.75
    assert main_share(100.0) < 0.35
    part = domain_dirichlet(LABELS, DOMAINS, 20, 1.0, 0.05, np.random.default_rng(0))
    fractions = class_fractions(part, DOMAINS, NUM_DOMAINS)
    assert [m["main_domain"] for m in part.client_meta] == fractions.argmax(axis=1).tolist()


def test_corruption_assignment() -> None:
    base = iid(LABELS, 26, np.random.default_rng(0))
    fixed = assign_corruptions(base, np.random.default_rng(0), "fog", 3)
    assert {(m["corruption"], m["severity"]) for m in fixed.client_meta} == {("fog", 3)}
    rand = assign_corruptions(base, np.random.default_rng(0), "random", 0)
    types = [m["corruption"] for m in rand.client_meta]
    counts = np.array([types.count(c) for c in CORRUPTIONS])
    assert counts.min() >= 1 and counts.max() - counts.min() <= 1  # balanced over all types
    assert {m["severity"] for m in rand.client_meta} <= {1, 2, 3, 4, 5}
    assert len({m["severity"] for m in rand.client_meta}) > 1
    again = assign_corruptions(base, np.random.default_rng(0), "random", 0)
    assert again.hash == rand.hash != base.hash
    assert [np.array_equal(a, b) for a, b in zip(rand.client_indices, base.client_indices)] == [True] * 26
    subset = assign_corruptions(base, np.random.default_rng(1), ["jpeg", "contrast"], [2, 4])
    assert {m["corruption"] for m in subset.client_meta} == {"jpeg", "contrast"}
    assert {m["severity"] for m in subset.client_meta} <= {2, 4}


def test_corruption_and_heldout_through_registry() -> None:
    part = build("domain", 0, corruption="random", severity=2, num_heldout=3)
    assert [m["heldout"] for m in part.client_meta] == [False] * 17 + [True] * 3
    assert all(m["severity"] == 2 and "domain" in m and "corruption" in m for m in part.client_meta)


def test_heldout_without_corruption_and_zero() -> None:
    base = iid(LABELS, 5, np.random.default_rng(0))
    assert mark_heldout(base, 0) is base
    assert [m["heldout"] for m in mark_heldout(base, 2).client_meta] == [False, False, False, True, True]


def rng0() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.mark.parametrize(
    ("call", "key"),
    [
        (lambda: dirichlet(LABELS, 100, 0.01, rng0(), min_size=40), "partition.min_size"),
        (lambda: dirichlet(LABELS, 100, 0.5, rng0(), min_size=41), "partition.min_size"),
        (lambda: quantity_skew(LABELS, 100, 1.0, rng0(), min_size=50), "partition.min_size"),
        (lambda: quantity_dirichlet(LABELS, 100, 3.0, 0.05, rng0(), min_size=35), "partition.quantity_sigma"),
        (lambda: iid(LABELS[:5], 6, rng0()), "data.num_clients"),
        (lambda: pathological(LABELS, 10, 11, rng0()), "partition.classes_per_client"),
        (lambda: pathological(LABELS[::100], 30, 5, rng0()), "partition.classes_per_client"),
        (lambda: shards(LABELS, 1000, 5, rng0()), "partition.shards_per_client"),
        (lambda: one_domain_per_client(LABELS, DOMAINS, 3, rng0()), "data.num_clients"),
        (lambda: one_domain_per_client(LABELS, DOMAINS, 200, rng0(), min_size=21), "partition.min_size"),
        (lambda: domain_dirichlet(LABELS, DOMAINS, 100, 0.01, 0.01, rng0(), min_size=39), "partition.min_size"),
        (lambda: build("iid", 0, num_heldout=20), "partition.num_heldout"),
    ],
)
def test_infeasible_constraints_fail_fast_and_name_the_key(call, key: str) -> None:
    start = time.perf_counter()
    with pytest.raises(PartitionError, match=key.replace(".", r"\.")):
        call()
    assert time.perf_counter() - start < 2.0


def test_registry_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match="domain-dirichlet"):
        build_partition("nope", LABELS, 5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="domains"):
        build_partition("domain", LABELS, 5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="gaussian_noise"):
        build("iid", 0, corruption="rain")
    with pytest.raises(ConfigError, match="partition.severity"):
        build("iid", 0, corruption="fog", severity=6)


def test_arbitrary_label_values() -> None:
    labels = np.where(LABELS % 2 == 0, -7, 1_000_003)  # two classes with odd ids
    part = pathological(labels, 8, 1, np.random.default_rng(0))
    assert all(len(np.unique(labels[idx])) == 1 for idx in part.client_indices)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "pathological", "shards", "quantity", "quantity-dirichlet"])
def test_million_labels_into_thousand_clients_is_fast(scheme: str) -> None:
    labels = np.random.default_rng(0).integers(0, 10, 1_000_000)
    start = time.perf_counter()
    part = build_partition(scheme, labels, 1000, np.random.default_rng(0))
    assert time.perf_counter() - start < 2.0
    assert part.sizes().sum() == 1_000_000


def test_one_client_is_built_alone_exactly_as_in_the_whole_federation():
    from pfedkit.core.config import load_config
    from pfedkit.data.setup import build_client_data, build_federated_data

    cfg = load_config(None, ["data.num_clients=5", "partition.corruption=random", "data.max_samples=600"])
    whole = build_federated_data(cfg.data, cfg.partition, cfg.seed)
    one = build_client_data(cfg.data, cfg.partition, cfg.seed, 3)
    ref = whole.clients[3]
    assert one.client_id == 3 and one.meta == ref.meta
    for split in ("train", "val", "test"):
        assert torch.equal(one.split(split)[0], ref.split(split)[0])
        assert torch.equal(one.split(split)[1], ref.split(split)[1])
    with pytest.raises(ConfigError, match="client 5 does not exist"):
        build_client_data(cfg.data, cfg.partition, cfg.seed, 5)
