"""Messages to the clients, for training and evaluation alike: push, pull, node slots.

The host side of the engine: a message is pushed as soon as a node can take it
(node binding: the client's own node; pool binding: any free node of the pool),
replies are pulled as they come, and a reply the host does not get within
``simulation.reply_timeout_s`` host seconds is given up on (``lost``). Nothing
here knows the simulated clock.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from flwr.app import ArrayRecord, Message, MessageType
from flwr.serverapp import Grid

from pwfl.aggregation import Arrays
from pwfl.transport import NodeBinding, client_message, to_record

POLL_S = 0.005  # host seconds between two pulls while the engine waits for a reply


class Sendable(Protocol):
    """What the messenger needs of a message's owner (a training try or an evaluation)."""

    client: int
    weight_set: int
    arrays: ArrayRecord
    config: dict[str, Any]
    message: Message | None
    message_id: str
    node: int | None
    pushed_at: float
    reply: Message | None
    lost: bool


@dataclass
class Evaluation:
    """One client's evaluation of one weight set, asked after a round."""

    client: int
    weight_set: int
    arrays: ArrayRecord
    config: dict[str, Any]
    message: Message | None = None
    message_id: str = ""
    node: int | None = None
    pushed_at: float = float("nan")
    reply: Message | None = None
    lost: bool = False

    @property
    def settled(self) -> bool:
        return self.reply is not None or self.lost


@dataclass
class Messenger:
    """Pushes the engine's messages and pulls their replies, one grid for both kinds."""

    grid: Grid
    nodes: NodeBinding
    reply_timeout_s: float
    states: dict[tuple[int, int], Arrays] = field(default_factory=dict)
    """Pool binding: what each (client, weight set) kept from its last counted round;
    it travels with the client's next message (the node running it may be another)."""
    _pending: dict[str, tuple[Sendable, str]] = field(default_factory=dict)
    _outbox: deque[tuple[Sendable, str]] = field(default_factory=deque)
    """Messages waiting for a free pool node, with their message type."""

    def send(self, item: Sendable, message_type: str = MessageType.TRAIN) -> None:
        """Push ``item``'s message to its node, or queue it until a pool node is free."""
        node = self.nodes.take(item.client)
        if node is None:
            self._outbox.append((item, message_type))
            return
        state = self.states.get((item.client, item.weight_set))
        message = client_message(
            node,
            item.arrays,
            item.config,
            message_type,
            to_record(state) if state is not None else None,
        )
        (mid,) = self.grid.push_messages([message])
        item.message, item.message_id, item.node = message, mid, node
        item.pushed_at = time.monotonic()
        self._pending[mid] = (item, message_type)

    def poll(self) -> None:
        """Take the replies that are in, give up on those past the host's timeout
        (``lost``), and send what waits for a node."""
        if self._pending:
            for reply in self.grid.pull_messages(list(self._pending)):
                entry = self._pending.pop(reply.metadata.reply_to_message_id, None)
                if entry is not None:
                    entry[0].reply = reply
                    self._release(entry[0])
        now = time.monotonic()
        for mid, (item, _) in list(self._pending.items()):
            if now - item.pushed_at > self.reply_timeout_s:
                item.lost = True
                del self._pending[mid]
                self._release(item)
        while self._outbox and self.nodes.has_free():
            self.send(*self._outbox.popleft())

    def forget(self, item: Sendable) -> None:
        """Stop waiting for ``item``'s reply (the server settled it another way)."""
        if self._pending.pop(item.message_id, None) is not None:
            self._release(item)
        self._outbox = deque(entry for entry in self._outbox if entry[0] is not item)

    def _release(self, item: Sendable) -> None:
        if item.node is not None:
            self.nodes.release(item.node)
            item.node = None
