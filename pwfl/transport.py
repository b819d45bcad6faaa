"""What travels between server and clients: Flower records and messages, built and read.

The round engine and the Flower apps use this module; the strategies (policies)
never do. Flower identifies its nodes by random ids; pwfl identifies clients by
their id in the population, and every message names its client (``client-id``)
and weight set in its config, so a reply or an error can always be traced back
to them whichever node ran it (:class:`NodeBinding`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from pwfl import registry
from pwfl.aggregation import Arrays, Update
from pwfl.codec import decode_update, encode_update

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
CLIENT = "client"
STATE = "client-state"
WEIGHT_KEY = "num-examples"

BINDINGS = registry.BINDINGS
"""How clients bind to Flower nodes (``simulation.client_binding``): see :class:`NodeBinding`."""
MESSAGES = registry.MESSAGES
"""How many clients one message carries in pool binding (``simulation.messages``): a
cohort (:class:`Cohort`) or one."""

_Record = TypeVar("_Record", ArrayRecord, MetricRecord, ConfigRecord)


def _record_of(content: RecordDict, key: str, kind: type[_Record]) -> _Record:
    record = content[key]
    if not isinstance(record, kind):
        raise TypeError(f"record {key!r} is a {type(record).__name__}, not a {kind.__name__}")
    return record


def arrays_of(content: RecordDict, key: str = ARRAYS) -> ArrayRecord:
    """The ArrayRecord ``content`` holds under ``key``: a RecordDict's values are of
    three kinds, and each key of pwfl's messages holds one of them."""
    return _record_of(content, key, ArrayRecord)


def metrics_of(content: RecordDict, key: str = METRICS) -> MetricRecord:
    """The MetricRecord ``content`` holds under ``key`` (see :func:`arrays_of`)."""
    return _record_of(content, key, MetricRecord)


def config_of(content: RecordDict, key: str = CONFIG) -> ConfigRecord:
    """The ConfigRecord ``content`` holds under ``key`` (see :func:`arrays_of`)."""
    return _record_of(content, key, ConfigRecord)


def as_int(value: object) -> int:
    """A record's value as an int: records also hold lists and bytes, pwfl's numbers
    are scalars (a number, or its text)."""
    if isinstance(value, int | float | str):
        return int(value)
    raise TypeError(f"expected a number, got a {type(value).__name__}")


def as_float(value: object) -> float:
    """A record's value as a float (see :func:`as_int`)."""
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError(f"expected a number, got a {type(value).__name__}")


def to_numpy(record: ArrayRecord) -> Arrays:
    """An ArrayRecord as a name -> ndarray dict (keeps the names' order)."""
    return {name: array.numpy() for name, array in record.items()}


def to_record(arrays: Arrays) -> ArrayRecord:
    """A name -> ndarray dict as an ArrayRecord."""
    # np.asarray(order="C"), not np.ascontiguousarray, which turns 0-d arrays
    # (batch-norm counters, quantisation scales) into 1-d ones.
    return ArrayRecord({name: Array(np.asarray(v, order="C")) for name, v in arrays.items()})


class DecodedArray(Array):
    """An array already decoded, as a Flower ``Array`` whose :meth:`numpy` returns it.

    An update reaches the aggregation as NumPy arrays decoded from its reply once
    (:func:`train_update`). Flower's ``aggregate_arrayrecords`` reads ArrayRecords
    and calls ``numpy()`` on each array: wrapping the decoded arrays so lets it run
    unmodified without serialising each array again and decoding it a second time
    (the values are those of the reply: NumPy's serialisation round-trips exactly).
    """

    def __init__(self, value: np.ndarray):
        super().__init__(str(value.dtype), tuple(value.shape), "numpy.ndarray", b"")
        self.value = value

    def numpy(self) -> np.ndarray:
        return self.value


def decoded_record(arrays: Arrays) -> ArrayRecord:
    """Decoded arrays as an ArrayRecord for Flower's aggregation (:class:`DecodedArray`)."""
    record = ArrayRecord()  # set one by one: ArrayRecord(dict) copies each Array's bytes
    for name, value in arrays.items():
        record[name] = DecodedArray(np.asarray(value))
    return record


@dataclass
class NodeBinding:
    """Which Flower node runs a message for a client.

    ``node`` binding (``pwfl deploy``, real devices): each client is a node that
    holds its own data, found by the discovery query (``node_of``). ``pool``
    binding (simulation): a few nodes run whichever clients the server names;
    every message says which client it is for, and a message goes to a node
    that runs no other message of this server at the moment.
    """

    pool: bool
    node_of: dict[int, int] = field(default_factory=dict)
    """Node binding: client -> its node."""
    sizes: dict[int, int] = field(default_factory=dict)
    """Node binding: client -> its example count, as its node reported it."""
    nodes: list[int] = field(default_factory=list)
    """Pool binding: the pool's node ids."""

    def __post_init__(self) -> None:
        self._free = deque(self.nodes)

    def take(self, client: int) -> int | None:
        """The node for a message to ``client`` now, or None when every pool node is busy."""
        if not self.pool:
            return self.node_of[client]
        return self._free.popleft() if self._free else None

    def has_free(self) -> bool:
        """Whether a message can be sent now (always, in node binding)."""
        return not self.pool or bool(self._free)

    def release(self, node: int) -> None:
        """A pool node's message is answered (or given up on): it can run another."""
        if self.pool:
            self._free.append(node)


def train_update(reply: Message, reference: Arrays | None = None, mode: str = "none") -> Update:
    """The (arrays, num_examples) pair a training reply carries, decompressed.

    ``reference`` is the weights the client was sent (needed by ``int8-delta``).
    """
    arrays = decode_update(to_numpy(arrays_of(reply.content)), reference, mode)
    return arrays, as_float(metrics_of(reply.content)[WEIGHT_KEY])


def encode_reply_arrays(state: dict[str, Any], received: ArrayRecord, mode: str) -> ArrayRecord:
    """A client's trained state as the ArrayRecord it sends back (compressed by ``mode``)."""
    if mode == "none":
        return ArrayRecord(state)
    reference = to_numpy(received) if mode == "int8-delta" else None
    arrays = {name: tensor.numpy() for name, tensor in state.items()}
    return to_record(encode_update(arrays, reference, mode))


def client_message(
    node: int,
    arrays: ArrayRecord,
    config: dict[str, Any],
    message_type: str,
    state: ArrayRecord | None = None,
) -> Message:
    """A message for one client (named in ``config["client-id"]``) to run on ``node``.

    ``state`` is what the client kept from its last round with this weight set,
    carried by the message in pool binding (the node running it may not be the
    one that ran the client last); it is not counted as communication.
    """
    content = RecordDict({ARRAYS: arrays, CONFIG: ConfigRecord(config)})
    if state is not None:
        content[STATE] = state
    return Message(content=content, message_type=message_type, dst_node_id=node)


def retry_config(config: dict[str, Any], reply: Message, max_retries: int) -> dict[str, Any] | None:
    """The config of a new try of a message sent with ``config`` when ``reply`` is an
    error and tries are left."""
    if not reply.has_error():
        return None
    attempt = int(config.get("attempt", 0)) + 1
    if attempt > max_retries:
        return None
    return {**config, "attempt": attempt}
