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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import uuid4

from flwr.app import ArrayRecord, Message, MessageType
from flwr.serverapp import Grid

from pwfl.aggregation import Arrays
from pwfl.transport import (
    NodeBinding,
    client_message,
    cohort_message,
    is_cohort,
    split_cohort_reply,
    to_record,
)

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
class _Sent:
    """One pushed message: the items it carries (one, or a cohort's), until it settles."""

    carried: list[Sendable]
    """Its items in the message's order."""
    node: int
    pushed_at: float
    waited: set[int] = field(default_factory=set)
    """``id()`` of the items still waited for (a settled one is forgotten)."""


@dataclass
class Messenger:
    """Pushes the engine's messages and pulls their replies, one grid for both kinds.

    With ``cohorts`` (pool binding, ``simulation.messages = cohort``) the items sent
    together for one weight set go out as one message per pool node, each with the
    weights once and its share of the clients (:func:`pwfl.transport.cohort_message`);
    the reply is split back into one reply per client, so the engine reads each
    client's reply, error or hang as it reads the reply to a message of its own.
    """

    grid: Grid
    nodes: NodeBinding
    reply_timeout_s: float
    cohorts: bool = False
    node_mean: bool = False
    """Cohorts: each node sends back the mean of its clients' updates (node aggregation)."""
    states: dict[tuple[int, int], Arrays] = field(default_factory=dict)
    """Pool binding: what each (client, weight set) kept from its last counted round;
    it travels with the client's next message (the node running it may be another)."""
    _pending: dict[str, _Sent] = field(default_factory=dict)
    _outbox: deque[tuple[list[Sendable], str]] = field(default_factory=deque)
    """Messages waiting for a free pool node: their items and message type."""
    _queued: set[int] = field(default_factory=set)
    """``id()`` of the items in the outbox."""

    def send(self, item: Sendable, message_type: str = MessageType.TRAIN) -> None:
        """Push ``item``'s message to its node, or queue it until a pool node is free."""
        self.send_all([item], message_type)

    def send_all(self, items: Sequence[Sendable], message_type: str = MessageType.TRAIN) -> None:
        """Push the messages of ``items`` (or queue them until a pool node is free).

        Per-client messages: one each, in order. Cohorts: the items that carry the same
        weights (one record: a job's tries, a round's evaluations of one set) are cut,
        in order, into as many contiguous shares as the pool has nodes (one message per
        node, weight set and call), each pushed as one message.
        """
        if not self.cohorts:
            for item in items:
                self._send([item], message_type)
            return
        by_weights: dict[int, list[Sendable]] = {}
        for item in items:
            by_weights.setdefault(id(item.arrays), []).append(item)
        for group in by_weights.values():
            for share in _shares(group, len(self.nodes.nodes)):
                self._send(share, message_type)

    def _send(self, items: list[Sendable], message_type: str) -> None:
        if not items:
            return
        node = self.nodes.take(items[0].client)
        if node is None:
            self._outbox.append((items, message_type))
            self._queued.update(id(item) for item in items)
            return
        self._queued.difference_update(id(item) for item in items)
        states = [self._state(item) for item in items]
        if len(items) == 1:
            (item,) = items
            message = client_message(node, item.arrays, item.config, message_type, states[0])
        else:
            configs = [item.config for item in items]
            summed = uuid4().hex if self.node_mean and message_type == MessageType.TRAIN else ""
            message = cohort_message(node, items[0].arrays, configs, message_type, states, summed)
        (mid,) = self.grid.push_messages([message])
        sent = _Sent(list(items), node, time.monotonic(), {id(item) for item in items})
        for item in items:
            item.message, item.message_id, item.node = message, mid, node
            item.pushed_at = sent.pushed_at
        self._pending[mid] = sent

    def _state(self, item: Sendable) -> ArrayRecord | None:
        state = self.states.get((item.client, item.weight_set))
        return to_record(state) if state is not None else None

    def poll(self) -> None:
        """Take the replies that are in, give up on those past the host's timeout
        (``lost``), and send what waits for a node."""
        if self._pending:
            for reply in self.grid.pull_messages(list(self._pending)):
                sent = self._pending.pop(reply.metadata.reply_to_message_id, None)
                if sent is None:
                    continue
                message = sent.carried[0].message
                assert message is not None
                if is_cohort(message.content):
                    replies = split_cohort_reply(reply, len(sent.carried))
                else:
                    replies = [reply]
                for item, one in zip(sent.carried, replies, strict=True):
                    if id(item) in sent.waited:
                        item.reply = one
                self._release(sent)
        now = time.monotonic()
        for mid, sent in list(self._pending.items()):
            # A cohort's clients run one after another: the host waits its limit for each.
            if now - sent.pushed_at > self.reply_timeout_s * len(sent.carried):
                for item in sent.carried:
                    if id(item) in sent.waited:
                        item.lost = True
                del self._pending[mid]
                self._release(sent)
        while self._outbox and self.nodes.has_free():
            self._send(*self._outbox.popleft())

    def forget(self, item: Sendable) -> None:
        """Stop waiting for ``item``'s reply (the server settled it another way); a
        message's node is free once none of its items is waited for."""
        sent = self._pending.get(item.message_id)
        if sent is not None and id(item) in sent.waited:
            sent.waited.discard(id(item))
            if not sent.waited:
                del self._pending[item.message_id]
                self._release(sent)
        if id(item) in self._queued:
            self._queued.discard(id(item))
            self._outbox = deque(
                (kept, kind)
                for kept, kind in (
                    ([one for one in entry if one is not item], kind)
                    for entry, kind in self._outbox
                )
                if kept
            )

    def _release(self, sent: _Sent) -> None:
        self.nodes.release(sent.node)
        for item in sent.carried:
            item.node = None


def _shares(items: list[Sendable], parts: int) -> list[list[Sendable]]:
    """``items`` cut, in order, into at most ``parts`` contiguous shares whose sizes
    differ by at most one."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    shares, start = [], 0
    for i in range(parts):
        end = start + size + (i < extra)
        shares.append(items[start:end])
        start = end
    return shares
