"""What every strategy shares: record conversions, client discovery, reply bookkeeping.

Flower identifies clients by random node ids; pwfl identifies them by their
partition id, which is stable across runs. A one-off ``query`` round asks every
node for its partition id and example count, so sampling can be seeded over
partition ids and the ``balanced`` policy knows the clients' sizes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from pwfl.aggregation import Arrays, Update

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
    return ArrayRecord({name: Array(np.ascontiguousarray(v)) for name, v in arrays.items()})


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
    import time

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


def sent_ids(messages: Iterable[Message]) -> dict[str, Message]:
    """Message id -> message, for messages already pushed."""
    return {m.metadata.message_id: m for m in messages}


def train_update(reply: Message) -> Update:
    """The (arrays, num_examples) pair a training reply carries."""
    return to_numpy(reply.content[ARRAYS]), float(reply.content[METRICS][WEIGHT_KEY])


def reply_row(
    reply: Message | None, partition_id: int, weight_set: int, phase: str, server_round: int
) -> dict[str, Any]:
    """One ``clients.csv`` row for a reply (or a missing reply: status timeout)."""
    row: dict[str, Any] = {
        "round": server_round,
        "phase": phase,
        "client": partition_id,
        "weight_set": weight_set,
    }
    if reply is None:
        return {**row, "status": "timeout"}
    if reply.has_error():
        return {**row, "status": "failed"}
    metrics = reply.content[METRICS]
    return {
        **row,
        "num_examples": int(metrics[WEIGHT_KEY]),
        "train_time_s": float(metrics.get("train-time-s", 0.0)),
        "loss": float(metrics.get("loss", np.nan)),
        "accuracy": float(metrics.get("accuracy", np.nan)),
        "status": "ok",
    }


def group_messages(
    directory: ClientDirectory,
    clients: list[int],
    arrays: ArrayRecord,
    config: dict[str, Any],
    message_type: str,
) -> list[Message]:
    """One message per client, all carrying the same weights and config."""
    content = RecordDict({ARRAYS: arrays, CONFIG: ConfigRecord(config)})
    return [
        Message(content=content, message_type=message_type, dst_node_id=directory.node_of[c])
        for c in clients
    ]
