"""What travels between server and clients: Flower records, messages, discovery and retries.

The round engine and the Flower apps use this module; the strategies (policies)
never do. Flower identifies clients by random node ids; pwfl identifies them by
their partition id, which is stable across runs. A one-off ``query`` round asks
every node for its partition id and example count, so sampling can be seeded
over partition ids and the ``balanced`` policy knows the clients' sizes. Every
message names its client (``client-id``) and weight set in its config, so a
reply or an error can always be traced back to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from pwfl.aggregation import Arrays, Update
from pwfl.codec import decode_update, encode_update

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

    def add(self, partition_id: int, node_id: int, size: int) -> None:
        """Register one client."""
        self.node_of[partition_id] = node_id
        self.sizes[partition_id] = size


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

    Each carries ``client-id``; ``epochs`` gives each client its own
    ``local-epochs`` (load balancing).
    """
    messages = []
    for c in clients:
        cfg = {**config, "client-id": c}
        if epochs is not None:
            cfg["local-epochs"] = epochs(c)
        content = RecordDict({ARRAYS: arrays, CONFIG: ConfigRecord(cfg)})
        messages.append(
            Message(content=content, message_type=message_type, dst_node_id=directory.node_of[c])
        )
    return messages


def retry_for(message: Message, reply: Message, max_retries: int) -> Message | None:
    """A new try of ``message`` when ``reply`` is an error and tries are left, else None."""
    if not reply.has_error():
        return None
    attempt = int(message.content[CONFIG].get("attempt", 0)) + 1
    if attempt > max_retries:
        return None
    config = ConfigRecord({**dict(message.content[CONFIG]), "attempt": attempt})
    content = RecordDict({**dict(message.content), CONFIG: config})
    return Message(
        content=content,
        message_type=message.metadata.message_type,
        dst_node_id=message.metadata.dst_node_id,
    )
