"""docs/extending.md: its example method file runs as written, and what the page says about it holds.

The block fenced as ```python whose first line is ``# example: my_method.py`` is executed as a
module of its own. The algorithm it registers is removed from the registry again after the tests,
so no other test sees it.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch
from support import SMALL, tiny_config, tiny_fed

import pfedkit
from pfedkit.algorithms import registry
from pfedkit.core.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"
MARKER = "# example: my_method.py"
NAME = "fedavg_ph_example"


def example_source() -> str:
    """The one ```python block of the page whose first line is MARKER."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    found = [b for b in blocks if b.startswith(MARKER + "\n")]
    assert len(found) == 1, f"expected one ```python block starting with {MARKER!r}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def example():
    """The example executed as module ``docs_example_my_method``; registry restored afterwards."""
    registry.algorithm_names()  # built-ins first, so they live in the registry that is restored
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "_ALGORITHMS", dict(registry._ALGORITHMS))
        module = types.ModuleType("docs_example_my_method")
        module.__file__ = str(DOC)
        mp.setitem(sys.modules, module.__name__, module)
        exec(compile(example_source(), f"{DOC}:my_method.py", "exec"), module.__dict__)
        yield module


def test_the_example_is_a_file_of_40_to_60_lines():
    assert 40 <= len(example_source().splitlines()) <= 60


def test_the_example_registers_its_method_with_typed_hparams(example):
    assert NAME in pfedkit.algorithm_names()
    cfg = pfedkit.load_config(None, [f"algorithm={NAME}", f"hp.{NAME}.mu=0.1"])
    hp = cfg.hparams()
    assert isinstance(hp, example.ProxHeadHParams)
    assert (hp.mu, hp.head_epochs) == (0.1, 1)


def test_the_example_runs_two_rounds_and_keeps_prefixed_personal_state(example):
    cfg = tiny_config(*SMALL, f"algorithm={NAME}", f"hp.{NAME}.mu=0.1")
    fed = tiny_fed(cfg)
    result = pfedkit.simulate_config(cfg, fed=fed, progress=False)

    assert [r["round"] for r in result.history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in result.history)
    assert all(r["clients"] == [0, 1, 2, 3] for r in result.history)
    assert all(k.startswith("body.") for k in result.server)  # only the body is shared
    for state in result.client_states:
        assert set(state) == {"head.weight", "head.bias", "ph.updates"}
        assert float(state["ph.updates"]) == 2.0  # every client took part in both rounds
    heads = [s["head.weight"] for s in result.client_states]
    assert any(not torch.equal(heads[0], h) for h in heads[1:])  # the heads are personal
    for split in ("val", "test"):
        acc = result.summary["last"][split]["mean"]
        assert 0.0 <= acc <= 1.0


def test_an_out_of_range_hparam_is_the_one_line_error_the_page_shows(example):
    with pytest.raises(ConfigError) as err:
        pfedkit.load_config(None, [f"algorithm={NAME}", f"hp.{NAME}.mu=20"])
    message = str(err.value)
    assert message == f"hp.{NAME}.mu=20 is out of range; allowed [0, 10]"
    assert f"pfedkit: error: {message}" in DOC.read_text()


def test_a_misspelt_hparam_names_the_nearest_key(example):
    with pytest.raises(ConfigError, match=rf"did you mean 'hp\.{NAME}\.mu'"):
        pfedkit.load_config(None, [f"hp.{NAME}.muu=0.1"])


def test_a_payload_key_outside_the_prefix_is_rejected(example):
    cfg = tiny_config(*SMALL)
    fed = tiny_fed(cfg)

    class Unprefixed(example.ProxHead):  # not registered: only the key check is under test
        def init_client(self, data):
            return {**super().init_client(data), "updates": torch.zeros(())}

    model = pfedkit.build_model("cnn", fed.input_shape, fed.num_classes, cfg.model.options_for("cnn"))
    algo = Unprefixed(model, example.ProxHeadHParams(), cfg.train, fed.num_classes)
    with pytest.raises(ValueError, match=r"payload key 'updates' is not a model key"):
        algo.init_client(fed.clients[0])


def test_an_overlapping_key_prefix_is_refused_at_registration(example):
    class Overlapping(example.ProxHead):
        name = "overlapping_example"
        key_prefix = "ph.extra."

    with pytest.raises(ValueError, match="overlaps fedavg_ph_example's 'ph.'"):
        pfedkit.register_algorithm(Overlapping)
