"""The pfedkit ClientApp: one node, one client, the algorithm's client side unchanged.

A node learns which client it is from its node config (``partition-id``; Flower's simulation sets
it, a SuperNode gets it from ``--node-config``) and builds only that client's data, through the
`ClientBuilder` the caller passes (the wiring from a config to data, model and algorithm lives in
``pfedkit.runs.flower_app``). The client's personal state lives in the node's ``Context.state``
(an ``ArrayRecord``), created by ``init_client`` on the node's first message of a run.

Before every hook the workspace model is reset to the initial weights, so what a node computes
depends only on its message, its state and its data, never on which client a process served
before (Flower's simulation runs many clients in one process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from pfedkit.algorithms.protocol import Algorithm, RoundContext
from pfedkit.core.calibration import CalibrationBins
from pfedkit.core.payload import Payload, clone_payload
from pfedkit.core.seeding import torch_generator
from pfedkit.data.client_data import ClientData
from pfedkit.engines.evaluation import CLASS_KEYS, SPLITS, evaluate_client
from pfedkit.engines.flower import messages as m
from pfedkit.engines.flower.codec import decode_payload, encode_payload

EVAL_STREAM = 0xE7A1
"""The fourth key of an evaluation's generator, as the in-process simulator derives it."""


@dataclass
class ClientSide:
    """What a node needs to serve its client: the algorithm (its workspace model at the initial
    weights in ``initial``), the client's data, the run seed and the device."""

    algo: Algorithm
    data: ClientData
    seed: int
    device: torch.device
    partition_hash: str
    initial: Payload

    def reset_workspace(self) -> None:
        """Load the initial weights into the workspace model (before every hook)."""
        self.algo.model.load_state_dict(self.initial)
        self.algo.model.train()


ClientBuilder = Callable[[Context], ClientSide]
"""Builds (or returns a cached) `ClientSide` for the node whose context is given."""


def make_client_app(build: ClientBuilder) -> ClientApp:
    """A ClientApp that answers pfedkit's describe, train and evaluate messages.

    A hook that raises lets the exception through: Flower sends the server an error reply, which
    the server logs and counts as a rejected reply.
    """
    app = ClientApp()

    @app.query("describe")
    def describe(msg: Message, context: Context) -> Message:
        side = build(context)
        d = side.data
        info = ConfigRecord({
            "client_id": d.client_id, "heldout": d.heldout, "num_train": d.num_train,
            "input_shape": [int(s) for s in d.x_train.shape[1:]], "num_classes": d.num_classes,
            "partition_hash": side.partition_hash,
        })
        return Message(RecordDict({m.DESCRIPTION: info}), reply_to=msg)

    def prepare(msg: Message, context: Context, *stream: int) -> tuple[ClientSide, int, Payload, RoundContext]:
        """(node side, client id, personal state, round context with the simulator's generator
        keys (seed, round, client, *stream)), the workspace reset to its initial weights."""
        side = build(context)
        r = _round_for(msg, side)
        k = side.data.client_id
        state = personal_state(context, side)
        side.reset_workspace()
        return side, k, state, RoundContext(r, k, torch_generator(side.seed, r, k, *stream), side.device)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        side, k, state, ctx = prepare(msg, context)
        update = side.algo.local_update(_incoming(msg, side), state, side.data, ctx)
        store_state(context, k, update.state)
        control = ConfigRecord({"client_id": k, "round": ctx.round, "weight": float(update.weight)})
        metrics = MetricRecord({key: float(v) for key, v in update.metrics.items()})
        content = RecordDict({m.UPLOAD: encode_payload(update.upload), m.CONTROL: control, m.METRICS: metrics})
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        side, k, state, ctx = prepare(msg, context, EVAL_STREAM)
        res = evaluate_client(side.algo, _incoming(msg, side), state, side.data, ctx)
        out: dict[str, int | list[int] | list[float]] = {"client_id": k, "round": ctx.round}
        for s in SPLITS:
            bins = res[f"{s}_calib"]
            assert isinstance(bins, CalibrationBins)
            out[f"{s}_correct"] = int(res[f"{s}_correct"])  # type: ignore[arg-type]
            out[f"{s}_n"] = int(res[f"{s}_n"])  # type: ignore[arg-type]
            calib = bins.to_dict()
            for f in m.CALIB_FIELDS:
                out[f"{s}_{f}"] = [int(v) for v in calib[f]] if f == "counts" else [float(v) for v in calib[f]]
        for key in CLASS_KEYS:
            out[key] = [int(v) for v in res[key]]  # type: ignore[union-attr]
        return Message(RecordDict({m.EVALUATION: ConfigRecord(out)}), reply_to=msg)

    return app


def _round_for(msg: Message, side: ClientSide) -> int:
    """The message's round, after checking it was meant for this node's client."""
    control = msg.content[m.CONTROL]
    wanted = int(control["client_id"])  # type: ignore[arg-type]
    if wanted != side.data.client_id:
        raise ValueError(f"message for client {wanted} reached the node of client {side.data.client_id}")
    return int(control["round"])  # type: ignore[arg-type]


def _incoming(msg: Message, side: ClientSide) -> Payload:
    """The client's message as tensors on the node's device."""
    payload = decode_payload(msg.content[m.PAYLOAD])
    return payload if side.device.type == "cpu" else clone_payload(payload, side.device)


def personal_state(context: Context, side: ClientSide) -> Payload:
    """The client's personal state from the node's context; on first use, ``init_client``'s
    (computed with the workspace at the initial weights) is stored there first."""
    k = side.data.client_id
    info = context.state.get(m.STATE_INFO)
    if info is None:
        side.reset_workspace()
        store_state(context, k, side.algo.init_client(side.data))
    elif int(info["client_id"]) != k:  # type: ignore[index, arg-type]
        raise ValueError(f"the node's state belongs to client {info['client_id']}, not {k}")  # type: ignore[index]
    state = decode_payload(context.state[m.STATE])  # type: ignore[arg-type]
    return state if side.device.type == "cpu" else clone_payload(state, side.device)


def store_state(context: Context, client_id: int, state: Payload) -> None:
    """Keep ``state`` (as CPU tensors) in the node's context for the next message."""
    context.state[m.STATE] = encode_payload(state)
    context.state[m.STATE_INFO] = ConfigRecord({"client_id": client_id})


def stored_state(context: Context) -> Payload | None:
    """The personal state a node holds (None before its first message)."""
    record = context.state.get(m.STATE)
    return decode_payload(record) if isinstance(record, ArrayRecord) else None
