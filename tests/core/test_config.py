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
    assert cfg.hparams("fedprox").mu == 0.5 and type(cfg.hparams("fedprox")).__name__ == "FedProxHParams"
    assert cfg.hparams("fedavg") == cfg.hparams("local")  # no section given: the defaults
    assert load_config(None, ["model.cnn.width=8"]).model.options_for("cnn").width == 8


@pytest.mark.parametrize("override, fragment", [
    ("trian.rounds=3", "did you mean 'train'"),
    ("train.rouds=3", "did you mean 'train.rounds'"),
    ("partition.alhpa=0.1", "did you mean 'partition.alpha'"),
    ("train.lr=-1", "train.lr=-1 is out of range; allowed (0, 10]"),
    ("train.client_fraction=1.5", "train.client_fraction=1.5 is out of range; allowed (0, 1]"),
    ("partition.severity=9", "partition.severity=9 is out of range; allowed [0, 5]"),
    ("train.optimizer=rmsprop", "train.optimizer='rmsprop' is not allowed; choose one of sgd, adam"),
    ("train.rounds=abc", "train.rounds='abc' must be an integer"),
    ("partition.scheme=dirichelt", "partition.scheme='dirichelt' is not allowed; choose one of iid, dirichlet"),
    ("model.name=resnet", "model.name='resnet' is not allowed; choose one of cnn, fedavg_cnn, resnet18"),
    ("model.widht=8", "unknown config key 'model.widht'; did you mean 'model.cnn.width'?"),
    ("model.cnn.widht=8", "unknown config key 'model.cnn.widht'; did you mean 'model.cnn.width'?"),
    ("model.cnn.norm=group", "model.cnn.norm='group' is not allowed; choose one of none, batch"),
    ("model.resnet18.norm=layer", "model.resnet18.norm='layer' is not allowed; choose one of batch, group"),
    ("hp.fedproxx.mu=1", "unknown config key 'hp.fedproxx'; did you mean 'hp.fedprox'?"),
    ("hp.fedprox.mu=big", "hp.fedprox.mu='big' must be a number"),
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


def test_exponent_numbers_without_a_dot_are_numbers():
    """YAML 1.1 reads ``1e-5`` as text; a float key takes it as the number it spells."""
    cfg = load_config(None, ["train.lr=5e-2", "privacy.delta=1E-5"])
    assert cfg.train.lr == 0.05 and cfg.privacy.delta == 1e-5
    with pytest.raises(ConfigError, match="must be a number"):
        load_config(None, ["train.lr=1e"])
