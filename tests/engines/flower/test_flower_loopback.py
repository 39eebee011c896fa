"""Every method through the pfedkit ServerApp loop and ClientApp, over real Flower messages.

`LoopbackGrid` calls each node's ClientApp in this process, with a Context per node that persists
across messages and every record serialised to Flower's wire objects and back: the protocol, the
codec and the per-node state are Flower's, only the transport is skipped. The histories must equal
the in-process simulator's number for number. Faults: a reply with a wrong key, shape or dtype,
or non-finite values is rejected with a log line and not aggregated; a client that fails or a node
that goes away is named in the round's record and the run goes on.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest
import torch

pytest.importorskip("flwr")

from flower_support import comparable, comparable_summary  # noqa: E402
from flwr.app import Context, Message  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from support import SMALL, tiny_config  # noqa: E402

from pfedkit.algorithms.registry import algorithm_class, algorithm_names  # noqa: E402
from pfedkit.core.config import RunConfig  # noqa: E402
from pfedkit.engines.callbacks import Callback, EngineState  # noqa: E402
from pfedkit.engines.flower import messages as m  # noqa: E402
from pfedkit.engines.flower.client import make_client_app  # noqa: E402
from pfedkit.engines.flower.codec import decode_payload, encode_payload  # noqa: E402
from pfedkit.engines.flower.loopback import LoopbackGrid  # noqa: E402
from pfedkit.engines.flower.server import FlowerServer, FlowerSettings  # noqa: E402
from pfedkit.runs.experiment import simulate_config  # noqa: E402
from pfedkit.runs.flower_app import client_side, run_config_of, serve, server_algorithm  # noqa: E402

MODELS = {
    "cnn": (),
    "vit-prompted": ("model.name=vit", "model.vit.preset=vit_micro", "model.vit.prompts=3"),
    "vit-frozen": ("model.name=vit", "model.vit.preset=vit_micro", "model.vit.prompts=0"),
}


def config_for(name: str, *extra: str) -> RunConfig:
    """The tiny config on the first model the method supports."""
    for overrides in MODELS.values():
        cfg = tiny_config(*SMALL, f"algorithm={name}", *overrides, *extra)
        if algorithm_class(name).supports_model(cfg.model.name, cfg.model.options_for(cfg.model.name)):
            return cfg
    raise AssertionError(f"{name} supports none of {list(MODELS)}")


def loopback(cfg: RunConfig, app: ClientApp | None = None, **kw: Any) -> LoopbackGrid:
    app = app or make_client_app(client_side)
    return LoopbackGrid(app, [{"partition-id": k} for k in range(cfg.data.num_clients)], run_config_of(cfg), **kw)


def flower_run(cfg: RunConfig, grid: LoopbackGrid, callbacks: list[Callback] = ()):
    settings = FlowerSettings(cfg.seed, cfg.train.rounds, cfg.train.client_fraction, cfg.eval_every, cfg.device,
                              num_clients=cfg.data.num_clients, connect_timeout=5, round_timeout=0.3,
                              poll_interval=0.05)
    return FlowerServer(grid, settings, functools.partial(server_algorithm, cfg), list(callbacks)).run()


@pytest.mark.parametrize("name", algorithm_names())
def test_every_method_on_flower_messages_equals_the_simulator(name: str) -> None:
    cfg = config_for(name)
    sim = simulate_config(cfg, progress=False)
    fl = serve(loopback(cfg), cfg, None, runtime="loopback", progress=False)
    assert comparable(fl.history) == comparable(sim.history)
    assert comparable_summary(fl.summary) == comparable_summary(sim.summary)
    for key, value in sim.server.items():
        assert torch.equal(fl.server[key], value), key
    assert all(r["wire_bytes_down"] > 0 and r["wire_bytes_up"] > 0 for r in fl.history)  # what Flower serialised


@pytest.mark.parametrize("name", ["fedavg", "pfedgm", "ditto"])
def test_partial_participation_held_out_clients_and_sparse_evaluation_match_too(name: str) -> None:
    cfg = config_for(name, "train.client_fraction=0.5", "partition.num_heldout=1", "eval_every=2", "train.rounds=3")
    sim = simulate_config(cfg, progress=False)
    fl = serve(loopback(cfg), cfg, None, runtime="loopback", progress=False)
    assert comparable(fl.history) == comparable(sim.history)
    assert comparable_summary(fl.summary) == comparable_summary(sim.summary)
    assert "heldout" in fl.summary["last"]


def corrupt(kind: str, upload: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    key = next(iter(upload))
    bad = dict(upload)
    if kind == "key":
        bad["not.a.model.key"] = torch.zeros(1)
    elif kind == "shape":
        bad[key] = torch.zeros(upload[key].numel() + 1, dtype=upload[key].dtype)
    elif kind == "dtype":
        bad[key] = upload[key].to(torch.float64 if upload[key].dtype != torch.float64 else torch.float32)
    elif kind == "nan":
        bad[key] = upload[key].clone()
        bad[key].view(-1)[0] = float("nan")
    return bad


def replace_upload(client: int, kind: str, node: int, reply: Message) -> Message | None:
    """Reply filter: the train reply of ``client`` (node client+1) in round 1, corrupted or dropped."""
    if node != client + 1 or reply.metadata.message_type != m.TRAIN or reply.has_error():
        return reply
    if int(reply.content[m.CONTROL]["round"]) != 1:
        return reply
    if kind == "drop":
        return None
    reply.content[m.UPLOAD] = encode_payload(corrupt(kind, decode_payload(reply.content[m.UPLOAD])))
    return reply


@pytest.mark.parametrize("name", ["fedavg", "pfedgm"])
@pytest.mark.parametrize("kind", ["key", "shape", "dtype", "nan"])
def test_an_invalid_upload_is_rejected_logged_and_not_aggregated(name: str, kind: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    cfg = config_for(name)
    dropped = flower_run(cfg, loopback(cfg, reply_filter=functools.partial(replace_upload, 1, "drop")))
    with caplog.at_level(logging.WARNING, logger="flwr.pfedkit"):
        bad = flower_run(cfg, loopback(cfg, reply_filter=functools.partial(replace_upload, 1, kind)))
    round1 = next(r for r in bad.history if r["round"] == 1)
    assert round1["rejected"] == [1] and 1 in round1["clients"]
    assert [r for r in bad.history if r["round"] != 1 and "rejected" in r] == []
    assert any("client 1's reply rejected" in rec.getMessage() for rec in caplog.records)
    # the run went on, and aggregated exactly what it aggregates when that reply never arrives
    assert next(r for r in dropped.history if r["round"] == 1)["missing"] == [1]
    for key, value in dropped.server.items():
        assert torch.equal(bad.server[key], value), key
    assert bad.summary["last_round"] == cfg.train.rounds


class FailingClient(ClientApp):
    """Client 0 raises in round 2's training (an exception in the ClientApp: an error reply)."""

    def __init__(self, inner: ClientApp) -> None:
        super().__init__()
        self.inner = inner

    def __call__(self, message: Message, context: Context) -> Message:
        control = message.content[m.CONTROL]
        if message.metadata.message_type == m.TRAIN and int(control["round"]) == 2 and int(control["client_id"]) == 0:
            raise RuntimeError("disk full")
        return self.inner(message, context)


class TakeNodeOffline(Callback):
    def __init__(self, grid: LoopbackGrid, node: int, after_round: int) -> None:
        self.grid, self.node, self.after_round = grid, node, after_round

    def on_round_end(self, record: dict[str, Any], state: EngineState) -> None:
        if record["round"] == self.after_round:
            self.grid.offline.add(self.node)


def test_a_failing_client_and_a_lost_node_are_named_and_the_run_finishes(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config_for("pfedgm", "train.rounds=3")
    grid = loopback(cfg, app=FailingClient(make_client_app(client_side)))
    with caplog.at_level(logging.WARNING, logger="flwr.pfedkit"):
        res = flower_run(cfg, grid, [TakeNodeOffline(grid, node=4, after_round=2)])  # client 3 gone after round 2
    by_round = {r["round"]: r for r in res.history}
    assert by_round[2]["rejected"] == [0] and "missing" not in by_round[2]
    assert by_round[3]["missing"] == [3] and by_round[3]["eval"]["missing"] == [3]
    assert by_round[3]["eval"]["test_n"][3] == 0 and by_round[2]["eval"]["test_n"][3] > 0
    assert res.summary["last_round"] == 3 and res.summary["last"]["test"]["mean"] > 0
    messages = [rec.getMessage() for rec in caplog.records]
    assert any("client 0 failed" in t and "disk full" in t for t in messages)
    assert any("no reply from client(s) [3]" in t for t in messages)


def test_a_node_serving_another_client_than_asked_is_refused() -> None:
    cfg = config_for("fedavg")
    grid = LoopbackGrid(make_client_app(client_side), [{"partition-id": k % 3} for k in range(4)], run_config_of(cfg))
    with pytest.raises(Exception, match="both serve client 0"):
        flower_run(cfg, grid)
