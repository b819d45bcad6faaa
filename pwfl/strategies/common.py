"""What every strategy shares: record conversions, client discovery, message building.

Flower identifies clients by random node ids; pwfl identifies them by their
partition id, which is stable across runs. A one-off ``query`` round asks every
node for its partition id and example count, so sampling can be seeded over
partition ids and the ``balanced`` policy knows the clients' sizes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from pwfl.aggregation import Arrays, Update
from pwfl.codec import decode_update, encode_update
from pwfl.config import Config
from pwfl.quorum import QuorumWatch
from pwfl.seeding import rng_for
from pwfl.stragglers import StragglerTracker

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
CLIENT = "client"
WEIGHT_KEY = "num-examples"


def to_numpy(record: ArrayRecord) -> Arrays:
    """An ArrayRecord as a name -> ndarray dict (keeps the names' order)."""
    return {name: array.numpy() for name, array in record.items()}


def to_record(arrays: Arrays) -> ArrayRecord:
    """A name -> ndarray dict as an ArrayRecord."""
    # np.asarray(order="C"), not np.ascontiguousarray, which turns 0-d arrays
    # (batch-norm counters, quantisation scales) into 1-d ones.
    return ArrayRecord({name: Array(np.asarray(v, order="C")) for name, v in arrays.items()})


@dataclass
class ClientDirectory:
    """The connected clients: partition id -> node id, and their example counts."""

    node_of: dict[int, int] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)

    @property
    def clients(self) -> list[int]:
        """Partition ids of all known clients, sorted."""
        return sorted(self.node_of)

    def partition_of(self, node_id: int) -> int:
        """The partition id behind a node id (-1 for a node never discovered)."""
        return self._partition_by_node.get(node_id, -1)

    def __post_init__(self) -> None:
        self._partition_by_node = {n: p for p, n in self.node_of.items()}

    def add(self, partition_id: int, node_id: int, size: int) -> None:
        """Register one client."""
        self.node_of[partition_id] = node_id
        self.sizes[partition_id] = size
        self._partition_by_node[node_id] = partition_id


def discover_clients(grid: Grid, expected: int, timeout: float) -> ClientDirectory:
    """Ask every connected node for its partition id and example count."""
    deadline = time.time() + timeout
    while len(node_ids := list(grid.get_node_ids())) < expected:
        if time.time() > deadline:
            raise RuntimeError(
                f"only {len(node_ids)} of {expected} clients connected within {timeout:.0f} s"
            )
        time.sleep(0.5)
    messages = [
        Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=node)
        for node in node_ids
    ]
    directory = ClientDirectory()
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            continue
        info = reply.content[CLIENT]
        directory.add(
            int(info["partition-id"]), reply.metadata.src_node_id, int(info["num-examples"])
        )
    if not directory.node_of:
        raise RuntimeError("no client answered the discovery query; see the client logs")
    return directory


def train_update(reply: Message, reference: Arrays | None = None, mode: str = "none") -> Update:
    """The (arrays, num_examples) pair a training reply carries, decompressed.

    ``reference`` is the weights the client was sent (needed by ``int8-delta``).
    """
    arrays = decode_update(to_numpy(reply.content[ARRAYS]), reference, mode)
    return arrays, float(reply.content[METRICS][WEIGHT_KEY])


def encode_reply_arrays(state: dict[str, Any], received: ArrayRecord, mode: str) -> ArrayRecord:
    """A client's trained state as the ArrayRecord it sends back (compressed by ``mode``)."""
    if mode == "none":
        return ArrayRecord(state)
    reference = to_numpy(received) if mode == "int8-delta" else None
    arrays = {name: tensor.numpy() for name, tensor in state.items()}
    return to_record(encode_update(arrays, reference, mode))


def group_messages(
    directory: ClientDirectory,
    clients: list[int],
    arrays: ArrayRecord,
    config: dict[str, Any],
    message_type: str,
    epochs: Callable[[int], float] | None = None,
) -> list[Message]:
    """One message per client, all sharing the same weights record.

    ``epochs`` gives each client its own ``local-epochs`` (load balancing);
    without it every client gets the same config.
    """
    messages = []
    shared = ConfigRecord(config)
    for c in clients:
        cfg = shared if epochs is None else ConfigRecord({**config, "local-epochs": epochs(c)})
        content = RecordDict({ARRAYS: arrays, CONFIG: cfg})
        messages.append(
            Message(content=content, message_type=message_type, dst_node_id=directory.node_of[c])
        )
    return messages


def grid_timeout(seconds: float | None) -> float | None:
    """A timeout as Flower's grid takes it: ``None`` (wait for every reply) where
    ``seconds`` is ``None`` or inf (``faults.round_timeout_s = inf``), else ``seconds``."""
    return None if seconds is None or math.isinf(seconds) else seconds


def send_with_retries(
    grid: Grid, messages: list[Message], timeout: float | None, max_retries: int
) -> tuple[list[Message], list[Message]]:
    """Send ``messages``; resend those answered by an error, up to ``max_retries`` times.

    Returns every reply and every message sent (retries included), for the
    ledger. All tries share one ``timeout`` in seconds (``None`` or inf: wait for
    every reply); a message with no reply by then is not retried.
    """
    deadline = time.monotonic() + (math.inf if timeout is None else timeout)
    replies = list(grid.send_and_receive(messages, timeout=grid_timeout(timeout)))
    return retry_failed(grid, messages, replies, deadline, max_retries)


def retry_failed(
    grid: Grid,
    messages: list[Message],
    replies: list[Message],
    deadline: float,
    max_retries: int,
) -> tuple[list[Message], list[Message]]:
    """Retry the messages whose reply is an error, as :func:`send_with_retries` does.

    ``deadline`` is a ``time.monotonic()`` value (inf: none). Retries go out in batches, one
    batch per try: a retry waits for the rest of its batch on this host, but on
    the simulated clock it starts right after its own failed try (see the ledger).
    """
    sent, got = list(messages), list(replies)
    batch, batch_replies = messages, replies
    while True:
        retries = retries_for({m.metadata.message_id: m for m in batch}, batch_replies, max_retries)
        remaining = deadline - time.monotonic()
        if not retries or remaining <= 0:
            break
        batch = retries
        batch_replies = list(grid.send_and_receive(batch, timeout=grid_timeout(remaining)))
        sent += batch
        got += batch_replies
    return got, sent


def retries_for(
    sent: dict[str, Message], replies: list[Message], max_retries: int
) -> list[Message]:
    """New tries of the messages (by id) whose reply is an error and that have tries left."""
    retries = []
    for reply in replies:
        message = sent.get(reply.metadata.reply_to_message_id)
        if message is None or not reply.has_error():
            continue
        attempt = int(message.content[CONFIG].get("attempt", 0)) + 1
        if attempt <= max_retries:
            retries.append(retry_of(message, attempt))
    return retries


def retry_of(message: Message, attempt: int) -> Message:
    """A fresh message to the same node with the same content, marked as try ``attempt``."""
    config = ConfigRecord({**dict(message.content[CONFIG]), "attempt": attempt})
    content = RecordDict({**dict(message.content), CONFIG: config})
    return Message(
        content=content,
        message_type=message.metadata.message_type,
        dst_node_id=message.metadata.dst_node_id,
    )


def progress_state(
    sim_time_s: float, wall_time_s: float, watch: QuorumWatch, tracker: StragglerTracker
) -> dict[str, Any]:
    """What every strategy saves beside its weights: clocks, quorum streak, straggler
    estimates (JSON-able, for checkpoints)."""
    return {
        "sim_time_s": sim_time_s,
        "wall_time_s": wall_time_s,
        "quorum_streak": watch.streak,
        "tracker": tracker.state(),
    }


def restore_progress(
    state: dict[str, Any], watch: QuorumWatch, tracker: StragglerTracker
) -> tuple[float, float]:
    """Restore what :func:`progress_state` saved; return the simulated and host clocks."""
    watch.streak = int(state["quorum_streak"])
    tracker.load_state(state["tracker"])
    return float(state["sim_time_s"]), float(state["wall_time_s"])


def available_clients(clients: list[int], cfg: Config, server_round: int) -> list[int]:
    """The clients online this round: each is offline with ``clients.offline_prob``.

    Drawn from ``(seed, "offline", round)``, so every strategy of one seed sees
    the same clients go missing. At least ``min_train_nodes`` stay online.
    """
    p = cfg.clients.offline_prob
    if p == 0:
        return list(clients)
    rng = rng_for(cfg.seed, "offline", server_round)
    draws = rng.random(len(clients))
    online = [c for c, u in zip(clients, draws, strict=True) if u >= p]
    needed = max(cfg.strategy.min_train_nodes, cfg.strategy.k)
    if len(online) < needed:  # keep the round possible: bring back the likeliest
        order = np.argsort(-draws)
        online = sorted(clients[i] for i in order[:needed])
    return online
