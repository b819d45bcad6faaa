"""What travels between server and clients: Flower records and messages, built and read.

The round engine and the Flower apps use this module; the strategies (policies)
never do. Flower identifies clients by random node ids; pwfl identifies them by
their partition id, which is stable across runs (:class:`ClientDirectory` maps
one to the other). Every message names its client (``client-id``) and weight
set in its config, so a reply or an error can always be traced back to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

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
