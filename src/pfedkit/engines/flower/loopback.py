"""A Flower ``Grid`` inside one process: every node's ClientApp called in turn, no runtime.

It runs the pfedkit ServerApp loop against ClientApps with real ``Message`` objects, a
``Context`` per node that persists across messages (as a SuperNode keeps it), and every record
serialised into Flower's wire objects and inflated back (`codec.wire_roundtrip`), so it checks
the protocol, the codec and the state handling of any algorithm in seconds. Flower's own runtimes
(Ray simulation, SuperLink/SuperNode) are what real runs use; this is for tests and debugging.
Nodes can be taken offline (``offline``) to play a lost site.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict, UserConfig
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from pfedkit.engines.flower.codec import wire_roundtrip


class LoopbackGrid(Grid):
    """Nodes ``1..len(node_configs)``, node i+1 with ``node_configs[i]`` as its node config.

    ``reply_filter(node_id, reply)`` may replace a reply (or return None to drop it), to play a
    faulty node.
    """

    def __init__(self, client_app: ClientApp, node_configs: list[UserConfig], run_config: UserConfig | None = None,
                 reply_filter: Callable[[int, Message], Message | None] | None = None) -> None:
        self.client_app = client_app
        self.contexts = {i + 1: Context(run_id=1, node_id=i + 1, node_config=dict(cfg), state=RecordDict(),
                                        run_config=dict(run_config or {}))
                         for i, cfg in enumerate(node_configs)}
        self.offline: set[int] = set()
        self.reply_filter = reply_filter
        self._run = Run.create_empty(run_id=1)
        # What Flower's runtimes set for the process that runs a ServerApp (messages read it).
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
        self._ids = itertools.count(1)
        self._pending: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.contexts if n not in self.offline]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            msg.metadata.__dict__["_message_id"] = mid = f"loopback-{next(self._ids)}"
            if node not in self.contexts or node in self.offline:
                continue
            msg.content = wire_roundtrip(msg.content)
            try:
                reply = self.client_app(msg, self.contexts[node])
            except Exception as err:  # as Flower's runtimes do: the ClientApp's exception becomes an error reply
                reply = Message(Error(code=0, reason=f"{type(err).__name__}: {err}"), reply_to=msg)
            if reply.has_content():
                reply.content = wire_roundtrip(reply.content)
            if self.reply_filter is not None:
                reply = self.reply_filter(node, reply)
            if reply is not None:
                self._pending[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._pending.pop(i) for i in message_ids if i in self._pending]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))
