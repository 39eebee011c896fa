"""The pfedkit server loop on a Flower ``Grid``: the in-process simulator's rounds, over messages.

Flower's strategies aggregate one ``ArrayRecord`` of weights per reply; pfedkit's algorithms
aggregate arbitrary payloads (statistics, counters, per-client outputs), so the loop is ours and
calls the algorithm protocol unchanged, in the simulator's order and with its seeds:
``init_server`` → (warm-up round 0) → for r = 1..R: `sample_clients` → ``broadcast`` →
``for_client`` per sampled client → ``train`` messages → validated uploads, in sampled order →
``aggregate`` → the round's record (`pfedkit.engines.simulate.round_record`) → every
``eval_every`` rounds and at the last, ``evaluate`` messages to every client
(`pfedkit.engines.simulate.pool_evaluations`) → callbacks. With every reply in, the history
equals the simulator's, number for number (only ``seconds`` differs).

Faults: a client whose reply does not arrive within ``round_timeout`` seconds is missing; a reply
that is an error or fails `pfedkit.engines.flower.validation` is rejected. Either way the round
goes on with the others; the record names them (``missing``, ``rejected``), a log line says why,
and an evaluation without a client's reply counts it with no samples (``eval["missing"]``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate
from pfedkit.core.calibration import CalibrationBins
from pfedkit.core.errors import PfedkitError
from pfedkit.core.payload import Payload, payload_nbytes
from pfedkit.engines.callbacks import Callback, EngineState
from pfedkit.engines.divergence import check_round
from pfedkit.engines.evaluation import CLASS_KEYS, SPLITS
from pfedkit.engines.flower import messages as m
from pfedkit.engines.flower.codec import decode_payload, encode_payload, wire_nbytes
from pfedkit.engines.flower.validation import reference_specs, upload_problem
from pfedkit.engines.report import Record
from pfedkit.engines.simulate import (
    RoundEvents,
    SimulationResult,
    SimulationSettings,
    pool_evaluations,
    round_record,
    sample_clients,
)

log = logging.getLogger("flwr.pfedkit")
"""Under Flower's logger, so the lines reach Flower's console and ``flwr log`` streams."""


@dataclass
class FlowerSettings(SimulationSettings):
    """The simulator's settings plus the waits of a message-based run (seconds).

    num_clients: clients the federation has (one node each). connect_timeout: how long to wait
    for every node to connect and describe itself. round_timeout: how long a round (and an
    evaluation) waits for replies. poll_interval: how often the server asks for replies.
    """

    num_clients: int = 0
    connect_timeout: float = 120.0
    round_timeout: float = 600.0
    poll_interval: float = 0.5


@dataclass
class Federation:
    """Which node serves which client, as the nodes described themselves."""

    node_of: dict[int, int]
    heldout: list[int]
    input_shape: tuple[int, int, int]
    num_classes: int
    partition_hash: str
    num_train: dict[int, int] = field(default_factory=dict)

    @property
    def train_ids(self) -> list[int]:
        return [k for k in sorted(self.node_of) if k not in self.heldout]


AlgorithmBuilder = Callable[[Federation], Algorithm]
"""Builds the server's algorithm once the nodes said what the data looks like."""


class FlowerServer(RoundEvents):
    """Runs an algorithm's server side over a Flower ``Grid``.

    Args:
        grid: the Grid the ServerApp received.
        settings: seed, rounds, participation, evaluation cadence, number of clients, waits.
        build_algorithm: makes the algorithm from the described federation (input shape, classes).
        callbacks: told of the run's start, every round's end and the run's end, as the simulator
            tells them; ``EngineState.client_states`` is empty (personal states live on the nodes).
    """

    def __init__(self, grid: Grid, settings: FlowerSettings, build_algorithm: AlgorithmBuilder,
                 callbacks: Sequence[Callback] = ()) -> None:
        if settings.num_clients < 1:
            raise ValueError("FlowerSettings.num_clients must be >= 1")
        self.grid, self.s, self.build_algorithm = grid, settings, build_algorithm
        self.callbacks = list(callbacks)
        self.federation: Federation | None = None

    # ----- start-up --------------------------------------------------------------------------
    def connect(self) -> Federation:
        """Wait (bounded) until every client's node has connected and described itself."""
        deadline = time.monotonic() + self.s.connect_timeout
        described: dict[int, tuple[int, ConfigRecord]] = {}
        asked: set[int] = set()
        while True:
            nodes = [n for n in self.grid.get_node_ids() if n not in asked]
            if nodes:
                asked.update(nodes)
                msgs = [self._message(m.DESCRIBE, n, RecordDict({m.CONTROL: ConfigRecord({"round": -1})}), "describe")
                        for n in nodes]
                wait = max(1.0, min(self.s.round_timeout, deadline - time.monotonic()))
                for reply in self._send_and_receive(msgs, wait):
                    node = reply.metadata.src_node_id
                    if reply.has_error():
                        log.warning("pfedkit: node %s failed to describe itself: %s", node, reply.error.reason)
                        continue
                    info = reply.content[m.DESCRIPTION]
                    k = int(info["client_id"])  # type: ignore[arg-type]
                    if k in described:
                        raise PfedkitError(f"nodes {described[k][0]} and {node} both serve client {k}; give each "
                                           "SuperNode its own partition-id")
                    described[k] = (node, info)
            if len(described) >= self.s.num_clients or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        missing = [k for k in range(self.s.num_clients) if k not in described]
        if missing:
            raise PfedkitError(f"clients {missing} have no node after {self.s.connect_timeout:.0f} s "
                               f"({len(described)} of {self.s.num_clients} described themselves); start a "
                               "SuperNode with --node-config 'partition-id=K' for each")
        infos = [described[k][1] for k in range(self.s.num_clients)]
        for what in ("partition_hash", "num_classes", "input_shape"):
            values = {str(i[what]) for i in infos}
            if len(values) > 1:
                raise PfedkitError(f"the nodes disagree on {what} ({sorted(values)}): every site must run the "
                                   "same config and seed on the same dataset")
        first = infos[0]
        shape = tuple(int(v) for v in first["input_shape"])  # type: ignore[union-attr]
        return Federation(
            node_of={k: described[k][0] for k in range(self.s.num_clients)},
            heldout=[k for k in range(self.s.num_clients) if bool(infos[k]["heldout"])],
            input_shape=shape,  # type: ignore[arg-type]
            num_classes=int(first["num_classes"]),  # type: ignore[arg-type]
            partition_hash=str(first["partition_hash"]),
            num_train={k: int(infos[k]["num_train"]) for k in range(self.s.num_clients)},  # type: ignore[arg-type]
        )

    # ----- the run -----------------------------------------------------------------------------
    def run(self) -> SimulationResult:
        """Connect, run every round, evaluate as the simulator does and summarise."""
        fed = self.federation = self.connect()
        if not fed.train_ids:
            raise PfedkitError("every client is held out: nothing would train")
        algo = self.algo = self.build_algorithm(fed)
        history: list[Record] = []
        server = algo.init_server()
        for cb in self.callbacks:
            cb.on_run_start(algo.name, self.s.rounds, 1)
        if algo.warmup_round:
            server, record = self._train_round(0, server, fed.train_ids)
            self._end_round(record, EngineState(0, server, [], history))
        for r in range(1, self.s.rounds + 1):
            sampled = sample_clients(self.s.seed, r, fed.train_ids, self.s.client_fraction)
            server, record = self._train_round(r, server, sampled)
            if r % self.s.eval_every == 0 or r == self.s.rounds:
                record["eval"] = self.evaluate_all(server, r)
            self._end_round(record, EngineState(r, server, [], history))
        return self._finish(history, fed.heldout, server, [])

    def _message(self, kind: str, node: int, content: RecordDict, group: str) -> Message:
        return Message(content, dst_node_id=node, message_type=kind, group_id=group,
                       ttl=max(self.s.round_timeout, self.s.connect_timeout) + 60.0)

    def _exchange(self, kind: str, r: int, payloads: dict[int, Payload]) -> tuple[dict[int, Message], list[int], int]:
        """Send each client its payload, wait at most ``round_timeout`` for the replies.

        Returns (replies by client id, missing client ids, wire bytes sent).
        """
        fed = self.federation
        assert fed is not None
        online = set(self.grid.get_node_ids())
        msgs, sent_bytes, offline = [], 0, []
        for k, payload in payloads.items():
            node = fed.node_of[k]
            if node not in online:
                offline.append(k)
                continue
            content = RecordDict({m.CONTROL: ConfigRecord({"round": r, "client_id": k}), m.PAYLOAD: encode_payload(payload)})
            sent_bytes += wire_nbytes(content)
            msgs.append(self._message(kind, node, content, str(r)))
        replies: dict[int, Message] = {}
        client_of = {fed.node_of[k]: k for k in payloads}
        if msgs:
            for reply in self._send_and_receive(msgs):
                k = client_of.get(reply.metadata.src_node_id)
                if k is not None:
                    replies[k] = reply
        missing = [k for k in payloads if k not in replies]
        if missing:
            log.warning("pfedkit: round %d %s: no reply from client(s) %s within %.0f s%s; going on without them",
                        r, kind, missing, self.s.round_timeout,
                        f" (node offline: {sorted(offline)})" if offline else "")
        return replies, missing, sent_bytes

    def _send_and_receive(self, msgs: list[Message], timeout: float | None = None) -> list[Message]:
        """Push the messages, then pull replies until all are in or ``timeout`` (default
        ``round_timeout``) seconds have passed; the pulls start 20 ms apart and back off to
        ``poll_interval`` (Grid.send_and_receive pulls every 3 s)."""
        deadline = time.monotonic() + (self.s.round_timeout if timeout is None else timeout)
        pending = {i for i in self.grid.push_messages(msgs) if i}
        replies: list[Message] = []
        wait = min(0.02, self.s.poll_interval)
        while pending:
            got = list(self.grid.pull_messages(list(pending)))
            replies += got
            pending -= {r.metadata.reply_to_message_id for r in got}
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                break
            time.sleep(min(wait, left))
            wait = min(2 * wait, self.s.poll_interval)  # quick replies (simulation) are picked up quickly
        return replies

    def _train_round(self, r: int, server: Payload, sampled: list[int]) -> tuple[Payload, Record]:
        t0 = time.perf_counter()
        algo = self.algo
        bcast = algo.broadcast(server, r)
        payloads = {k: algo.for_client(bcast, k) for k in sampled}
        bytes_down = sum(payload_nbytes(p) for p in payloads.values())
        replies, missing, wire_down = self._exchange(m.TRAIN, r, payloads)
        wire_up = 0
        decoded: dict[int, tuple[Payload, float, dict[str, float]]] = {}
        rejected: list[int] = []
        for k in sampled:
            reply = replies.get(k)
            if reply is None:
                continue
            if reply.has_error():
                log.warning("pfedkit: round %d: client %d failed: %s", r, k, reply.error.reason)
                rejected.append(k)
                continue
            wire_up += wire_nbytes(reply.content)
            try:
                upload = decode_payload(reply.content[m.UPLOAD])
                weight = float(reply.content[m.CONTROL]["weight"])  # type: ignore[arg-type]
                metrics = {key: float(v) for key, v in reply.content[m.METRICS].items()}  # type: ignore[arg-type]
            except (KeyError, TypeError, ValueError) as err:
                log.warning("pfedkit: round %d: client %d sent a malformed reply (%s); not aggregated", r, k, err)
                rejected.append(k)
                continue
            decoded[k] = (upload, weight, metrics)
        ref = reference_specs(server, [u for u, _, _ in decoded.values()])
        updates: list[ClientUpdate] = []
        for k in sampled:
            if k not in decoded:
                continue
            upload, weight, metrics = decoded[k]
            problem = upload_problem(upload, weight, ref, lambda p: algo.check_keys(p, "upload"))
            if problem is not None:
                log.warning("pfedkit: round %d: client %d's reply rejected, not aggregated: %s", r, k, problem)
                rejected.append(k)
                continue
            upload = {key: t.to(_device_of(server, t)) for key, t in upload.items()}
            updates.append(ClientUpdate(upload, weight, {}, metrics, client_id=k))
        server = algo.aggregate(server, updates, r)
        check_round(algo, r, updates, server)  # divergence guard: before any callback sees the round
        record = round_record(r, sampled, updates, bytes_down, t0)
        record["wire_bytes_down"], record["wire_bytes_up"] = wire_down, wire_up
        if missing:
            record["missing"] = missing
        if rejected:
            record["rejected"] = sorted(rejected)
        return server, record

    def evaluate_all(self, server: Payload, r: int) -> dict[str, Any]:
        """Every client evaluates its personal model on its node; pooled as the simulator pools.

        A client without a valid reply counts with no samples and no calibration bins, and is
        listed under ``missing``.
        """
        fed = self.federation
        assert fed is not None
        bcast = self.algo.broadcast(server, r)
        clients = sorted(fed.node_of)
        replies, missing, _ = self._exchange(m.EVALUATE, r, {k: self.algo.for_client(bcast, k) for k in clients})
        results: list[dict[str, Any]] = []
        for k in clients:
            res = None
            reply = replies.get(k)
            if reply is not None and reply.has_error():
                log.warning("pfedkit: round %d: client %d failed to evaluate: %s", r, k, reply.error.reason)
            elif reply is not None:
                res = _evaluation_of(reply.content[m.EVALUATION])  # type: ignore[arg-type]
            if res is None:
                if k not in missing:
                    missing.append(k)
                res = {f"{s}_{f}": 0 for s in SPLITS for f in ("correct", "n")}
                res |= {f"{s}_calib": CalibrationBins() for s in SPLITS}
                res |= {key: [0] * self.algo.num_classes for key in CLASS_KEYS}
            results.append(res)
        ev = pool_evaluations(results, fed.heldout)
        if missing:
            ev["missing"] = sorted(missing)
        return ev


def _evaluation_of(record: ConfigRecord) -> dict[str, Any]:
    """A node's evaluation reply as `pfedkit.engines.evaluation.evaluate_client` returns it."""
    out: dict[str, Any] = {}
    for s in SPLITS:
        out[f"{s}_correct"] = int(record[f"{s}_correct"])  # type: ignore[arg-type]
        out[f"{s}_n"] = int(record[f"{s}_n"])  # type: ignore[arg-type]
        out[f"{s}_calib"] = CalibrationBins.from_dict({f: list(record[f"{s}_{f}"]) for f in m.CALIB_FIELDS})  # type: ignore[arg-type]
    return out | {key: [int(v) for v in record[key]] for key in CLASS_KEYS if key in record}  # type: ignore[union-attr]


def _device_of(server: Payload, t: Any) -> Any:
    """The server state's device (uploads are aggregated where the server state lives)."""
    for v in server.values():
        return v.device
    return t.device
