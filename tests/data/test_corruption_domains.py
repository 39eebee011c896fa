"""Corruption types as domains (data.domains=corruptions) on the always-present 8x8 digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pfedkit.cli.main import main
from pfedkit.core.config import DataConfig, load_config
from pfedkit.core.errors import ConfigError
from pfedkit.data import setup as data_setup
from pfedkit.data.corruptions import CORRUPTIONS
from pfedkit.data.domains.corruption_domains import balanced_domains, corruption_domain_pool
from pfedkit.data.pool import Pool
from pfedkit.data.registry import load_source
from pfedkit.data.setup import build_federated_data, load_pool

DOMAINS = ["data.dataset=digits", "data.domains=corruptions"]
NAMES = ("none", "fog", "gaussian_noise", "contrast")


def config(*overrides: str):
    return load_config(None, [*DOMAINS, *overrides])


@pytest.fixture(scope="module")
def clean() -> Pool:
    return load_source("digits", "/nonexistent")


@pytest.fixture(scope="module")
def pool() -> Pool:
    return load_pool(config().data, seed=0)


def test_defaults_leave_the_source_alone(clean: Pool) -> None:
    data = load_config(None, ["data.dataset=digits"]).data
    assert (data.domains, data.domain_corruptions, data.domain_severity) == ("source", ",".join(NAMES), 3)
    plain = load_pool(data, seed=0)
    assert plain.domain is None and torch.equal(plain.x, clean.x)


def test_every_image_gets_one_domain_balanced_within_classes(pool: Pool, clean: Pool) -> None:
    assert pool.domain_names == NAMES and pool.name == "digits"
    assert pool.domain is not None and pool.domain.dtype == torch.int64 and pool.domain.shape == pool.y.shape
    assert torch.equal(pool.y, clean.y) and pool.x.shape == clean.x.shape
    dom, y = pool.domain.numpy(), pool.y.numpy()
    assert set(np.unique(dom)) == {0, 1, 2, 3}
    for c in range(10):
        counts = np.bincount(dom[y == c], minlength=4)
        assert counts.max() - counts.min() <= 1, (c, counts)
    total = np.bincount(dom, minlength=4)
    assert total.max() - total.min() <= 1


def test_clean_domain_unchanged_and_corrupted_domains_changed(pool: Pool, clean: Pool) -> None:
    assert 0.0 <= float(pool.x.min()) and float(pool.x.max()) <= 1.0
    changed = (pool.x != clean.x).flatten(1).any(1)
    for d, name in enumerate(NAMES):
        members = pool.domain == d
        if name == "none":
            assert torch.equal(pool.x[members], clean.x[members])
        else:
            assert bool(changed[members].all()), name


def test_same_seed_same_pool_other_seed_other_assignment(pool: Pool) -> None:
    again = load_pool(config().data, seed=0)
    assert torch.equal(again.x, pool.x) and torch.equal(again.domain, pool.domain)
    other = load_pool(config().data, seed=1)
    assert not torch.equal(other.domain, pool.domain)


def test_subsample_first_then_corrupt() -> None:
    data = config("data.max_samples=300", "data.domain_corruptions=pixelate,none,jpeg").data
    small = load_pool(data, seed=2)
    assert len(small) == 300 and small.domain_names == ("pixelate", "none", "jpeg")
    assert np.bincount(small.domain.numpy(), minlength=3).tolist() == [100, 100, 100]
    assert torch.equal(load_pool(data, seed=2).x, small.x)


def test_every_corruption_works_on_8x8_digits(clean: Pool) -> None:
    names = ("none", *CORRUPTIONS)
    for severity in (1, 5):
        out = corruption_domain_pool(clean, names, severity, seed=0)
        assert out.x.shape == clean.x.shape and torch.isfinite(out.x).all()
        assert 0.0 <= float(out.x.min()) and float(out.x.max()) <= 1.0
    rgb = Pool(torch.rand(28, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
               torch.arange(28) % 2, 2, "rgb")
    out = corruption_domain_pool(rgb, names, 3, seed=0)
    assert out.x.shape == rgb.x.shape and out.domain.tolist() != [0] * 28


def test_balanced_domains_continues_the_deal_across_classes() -> None:
    labels = np.repeat(np.arange(3), [5, 5, 2])
    dom = balanced_domains(labels, 4, np.random.default_rng(0))
    assert np.bincount(dom, minlength=4).tolist() == [3, 3, 3, 3]


def test_domain_dirichlet_clients_are_dominated_by_few_domains(pool: Pool) -> None:
    cfg = config("data.num_clients=10", "partition.scheme=domain-dirichlet", "partition.alpha_domain=0.1")
    fed = build_federated_data(cfg.data, cfg.partition, cfg.seed, pool=pool)
    dom = pool.domain.numpy()
    shares = [np.bincount(dom[idx], minlength=4).max() / len(idx) for idx in fed.partition.client_indices]
    assert np.mean(shares) > 0.6
    assert fed.clients[0].domain_train is not None


def test_one_domain_per_client(pool: Pool) -> None:
    cfg = config("data.num_clients=8", "partition.scheme=domain")
    fed = build_federated_data(cfg.data, cfg.partition, cfg.seed, pool=pool)
    dom = pool.domain.numpy()
    seen = set()
    for k, idx in enumerate(fed.partition.client_indices):
        values = np.unique(dom[idx])
        assert len(values) == 1 and fed.partition.client_meta[k]["domain"] == values[0]
        seen.add(int(values[0]))
    assert seen == {0, 1, 2, 3}


@pytest.mark.parametrize("override, fragment", [
    ("data.domain_corruptions=none,fogg", "unknown corruption 'fogg'"),
    ("data.domain_corruptions=fog,fog", "'fog' is listed twice"),
    ("data.domain_corruptions=,", "no domain given"),
    ("data.domain_severity=6", "data.domain_severity=6 is out of range"),
    ("data.domains=corrupt", "data.domains='corrupt' is not allowed"),
])
def test_bad_keys_give_one_line_config_errors(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(override)
    assert fragment in str(err.value) and len(str(err.value).splitlines()) == 1


def test_load_pool_checks_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_loading(*args, **kwargs):
        raise AssertionError("the source was loaded before the config was checked")

    monkeypatch.setattr(data_setup, "load_source", no_loading)
    data = DataConfig(dataset="digits", domains="corruptions")
    data.domain_corruptions = "fog,nosuch"  # bypasses DataConfig's own check
    with pytest.raises(ConfigError, match="unknown corruption 'nosuch'"):
        load_pool(data, seed=0)


def test_a_source_with_domains_refuses_corruption_domains(monkeypatch: pytest.MonkeyPatch, clean: Pool) -> None:
    multi = Pool(clean.x, clean.y, 10, "multi", torch.arange(len(clean)) % 2, ("a", "b"))
    monkeypatch.setattr(data_setup, "load_source", lambda name, root: multi)
    with pytest.raises(ConfigError) as err:
        load_pool(DataConfig(dataset="multi", domains="corruptions"), seed=0)
    message = str(err.value)
    assert "'multi' has 2 (a, b)" in message and "data.domains=source" in message
    assert len(message.splitlines()) == 1
    assert load_pool(DataConfig(dataset="multi"), seed=0) is multi


def test_partition_cli_with_corruption_domains(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["partition", *DOMAINS, "data.num_clients=6", "partition.scheme=domain-dirichlet",
                 "partition.alpha_domain=0.1"])
    out = capsys.readouterr().out
    assert code == 0 and "hash" in out and "main_domain" in out


def test_partition_cli_bad_name_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["partition", *DOMAINS, "data.domain_corruptions=none,smog"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown corruption 'smog'" in err and len(err.splitlines()) == 1
