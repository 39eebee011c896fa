"""Config validation: unknown keys, wrong types, ranges; YAML + overrides."""

from __future__ import annotations

import pytest

from pfedkit.core.config import RunConfig, load_config
from pfedkit.core.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  rounds: 7\nhp:\n  fedprox:\n    mu: 0.5\n")
    cfg = load_config(path, ["train.lr=0.2", "data.num_clients=5"])
    assert isinstance(cfg, RunConfig)
    assert (cfg.train.rounds, cfg.train.lr, cfg.data.num_clients) == (7, 0.2, 5)
    assert cfg.hp == {"fedprox": {"mu": 0.5}}


@pytest.mark.parametrize("override, fragment", [
    ("trian.rounds=3", "did you mean 'train'"),
    ("train.rouds=3", "did you mean 'train.rounds'"),
    ("partition.alhpa=0.1", "did you mean 'partition.alpha'"),
    ("train.lr=-1", "train.lr=-1 is out of range; allowed (0, 10]"),
    ("train.client_fraction=1.5", "train.client_fraction=1.5 is out of range; allowed (0, 1]"),
    ("partition.severity=9", "partition.severity=9 is out of range; allowed [0, 5]"),
    ("train.optimizer=rmsprop", "train.optimizer='rmsprop' is not allowed; choose one of sgd, adam"),
    ("train.rounds=abc", "train.rounds='abc' must be an integer"),
    ("noequals", "must look like key=value"),
])
def test_bad_values_give_one_line_errors(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
