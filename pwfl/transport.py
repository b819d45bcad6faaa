"""What travels between server and clients: Flower records and messages, built and read.

The round engine and the Flower apps use this module; the strategies (policies)
never do. Flower identifies its nodes by random ids; pwfl identifies clients by
their id in the population, and every message names its client (``client-id``)
and weight set in its config, so a reply or an error can always be traced back
to them whichever node ran it (:class:`NodeBinding`).
"""

from __future__ import annotations

import functools
import io
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    ConfigRecordValues,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp.client_app import ClientAppException
from flwr.common.constant import ErrorCode

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


# Flower's Array holds an array as the bytes of NumPy's .npy file and reads it back
# with np.load, which parses the file's header (a Python literal) on every call, and
# writes it with np.save through a BytesIO. For the small models of a cohort that is a
# large share of the host's time per client, and an array's header is the same every
# round: ``array_values`` and ``to_array`` parse or write each distinct header once,
# with NumPy's own .npy functions, and copy the values straight from or into the bytes.
# The bytes are those np.save writes (tests/test_transport.py checks both ways).


@functools.lru_cache(maxsize=4096)
def _npy_header(head: bytes) -> tuple[np.dtype, bool, tuple[int, ...]]:
    """(dtype, Fortran order, shape) of a .npy header (its magic, length and text)."""
    stream = io.BytesIO(head)
    version = np.lib.format.read_magic(stream)
    read = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read(stream)
    return dtype, fortran, shape


def _header_length(data: bytes) -> int:
    # .npy: 6 bytes of magic, 2 of version, then the header's length in 2 bytes
    # (version 1) or 4 (later versions), then the header.
    if data[6] == 1:
        return 10 + int.from_bytes(data[8:10], "little")
    return 12 + int.from_bytes(data[8:12], "little")


def array_values(array: Array) -> np.ndarray:
    """The values of a Flower ``Array``, as ``array.numpy()`` gives them (a writable copy)."""
    if type(array) is not Array or array.stype != "numpy.ndarray":
        return array.numpy()  # pwfl's DecodedArray, or another serialisation
    data = array.data
    end = _header_length(data)
    dtype, fortran, shape = _npy_header(bytes(data[:end]))
    if dtype.hasobject:
        return array.numpy()
    count = math.prod(shape)
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=end)
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")


_NPY_HEADS: dict[tuple[str, bool, tuple[int, ...]], bytes] = {}


def to_array(value: np.ndarray) -> Array:
    """``value`` as the Flower ``Array`` that ``Array(value)`` builds (the same bytes)."""
    fortran = bool(value.flags.f_contiguous and not value.flags.c_contiguous)
    key = (value.dtype.str, fortran, tuple(value.shape))
    head = _NPY_HEADS.get(key)
    plain = not value.dtype.hasobject and value.dtype.fields is None
    if head is None or not plain:
        array = Array(value)  # np.save's own bytes; its header serves the next ones
        if plain and len(_NPY_HEADS) < 4096:
            _NPY_HEADS[key] = bytes(array.data[: _header_length(array.data)])
        return array
    body = value.tobytes(order="F" if fortran else "C")
    return Array(dtype=str(value.dtype), shape=key[2], stype="numpy.ndarray", data=head + body)


def to_numpy(record: ArrayRecord) -> Arrays:
    """An ArrayRecord as a name -> ndarray dict (keeps the names' order)."""
    return {name: array_values(array) for name, array in record.items()}


def to_torch(record: ArrayRecord) -> dict[str, Any]:
    """An ArrayRecord as a PyTorch state dict, as ``record.to_torch_state_dict()`` gives it."""
    import torch

    return {name: torch.from_numpy(array_values(array)) for name, array in record.items()}


def to_record(arrays: Arrays) -> ArrayRecord:
    """A name -> ndarray dict as an ArrayRecord."""
    record = ArrayRecord()  # set one by one: ArrayRecord(dict) copies each Array's bytes
    for name, value in arrays.items():
        # np.asarray(order="C"), not np.ascontiguousarray, which turns 0-d arrays
        # (batch-norm counters, quantisation scales) into 1-d ones.
        record[name] = to_array(np.asarray(value, order="C"))
    return record


def torch_record(state: dict[str, Any]) -> ArrayRecord:
    """A PyTorch state dict as the ArrayRecord ``ArrayRecord(state)`` builds."""
    record = ArrayRecord()
    for name, tensor in state.items():
        record[name] = to_array(tensor.detach().cpu().numpy())
    return record


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
    return content_update(reply.content, reference, mode)


def content_update(content: RecordDict, reference: Arrays | None, mode: str) -> Update:
    """:func:`train_update` of a reply's content."""
    arrays = decode_update(to_numpy(arrays_of(content)), reference, mode)
    return arrays, as_float(metrics_of(content)[WEIGHT_KEY])


NODE_MEAN = "node-mean"
"""The reply key of a node's weighted mean of its cohort's updates (node aggregation)."""
SUMMED_BY = "summed-by"
"""The ``client`` record key naming the cohort whose node mean holds a client's update."""


def node_mean(
    replies: list[RecordDict | Error], received: ArrayRecord, mode: str, cohort: str
) -> None:
    """Replace the updates of a cohort's answered clients by their weighted mean (in place).

    Node aggregation: each update is decoded as the server would decode it, the
    updates are averaged in the cohort's order with :func:`pwfl.aggregation.weighted_mean`
    (the server's own mean), and the mean with its total weight goes back once, in the
    first answered client's reply (``node-mean``). Every answered client's reply keeps
    its metrics, the bytes its update would have taken on the wire (``update-bytes``:
    the simulated upload is the client's, not the node's) and the cohort it was
    summed in (``summed-by``). The server averages the nodes' means weighted by their
    totals: the same mean, summed in two levels (other bits, docs/populations.md).
    """
    from pwfl.aggregation import weighted_mean

    answered = [r for r in replies if isinstance(r, RecordDict) and ARRAYS in r]
    if not answered:
        return
    reference = to_numpy(received) if mode == "int8-delta" else None
    updates = [content_update(reply, reference, mode) for reply in answered]
    for reply in answered:
        arrays = arrays_of(reply)
        del reply[ARRAYS]
        metrics_of(reply)["update-bytes"] = arrays.count_bytes()
        config_of(reply, CLIENT)[SUMMED_BY] = cohort
    first = answered[0]
    first[NODE_MEAN] = to_record(weighted_mean(updates))
    metrics_of(first)["node-weight"] = float(sum(n for _, n in updates))
    metrics_of(first)["node-clients"] = len(updates)


def encode_reply_arrays(state: dict[str, Any], received: ArrayRecord, mode: str) -> ArrayRecord:
    """A client's trained state as the ArrayRecord it sends back (compressed by ``mode``)."""
    if mode == "none":
        return torch_record(state)
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


COHORT = "cohort"
"""The key of a cohort message's (and reply's) own record: how many clients it carries."""


def cohort_message(
    node: int,
    arrays: ArrayRecord,
    configs: list[dict[str, Any]],
    message_type: str,
    states: list[ArrayRecord | None],
    node_mean_of: str = "",
) -> Message:
    """One message for several clients of one weight set, run one after another on ``node``.

    The weights travel once; each client's config (``client-id``, epochs, attempt,
    ...) and the state it kept (pool binding) under its place in the cohort
    (``config/0``, ``client-state/0``, ...). The node answers with every client's reply
    in one message (:func:`cohort_reply`). Flower's records hold no list of records,
    hence the numbered keys. ``node_mean_of`` (node aggregation) names the cohort: its
    node sends back the mean of the updates, not each one (:func:`node_mean`).
    """
    own: dict[str, ConfigRecordValues] = {"size": len(configs)}
    if node_mean_of:
        own[NODE_MEAN] = node_mean_of
    content = RecordDict({ARRAYS: arrays, COHORT: ConfigRecord(own)})
    for i, (config, state) in enumerate(zip(configs, states, strict=True)):
        content[f"{CONFIG}/{i}"] = ConfigRecord(config)
        if state is not None:
            content[f"{STATE}/{i}"] = state
    return Message(content=content, message_type=message_type, dst_node_id=node)


def is_cohort(content: RecordDict) -> bool:
    """Whether a message's content carries a cohort of clients (:func:`cohort_message`)."""
    return COHORT in content


def cohort_size(content: RecordDict) -> int:
    return as_int(config_of(content, COHORT)["size"])


def cohort_summed(content: RecordDict) -> str:
    """The cohort's name when its node sends back the mean of its updates, else empty."""
    return str(config_of(content, COHORT).get(NODE_MEAN, ""))


def cohort_contents(content: RecordDict) -> list[RecordDict]:
    """A cohort message's content as the content of one message per client, in order:
    what a message to that client alone would hold (the weights are shared, not copied)."""
    contents = []
    for i in range(cohort_size(content)):
        one = RecordDict({ARRAYS: content[ARRAYS], CONFIG: content[f"{CONFIG}/{i}"]})
        if f"{STATE}/{i}" in content:
            one[STATE] = content[f"{STATE}/{i}"]
        contents.append(one)
    return contents


def cohort_reply(replies: list[RecordDict | Error]) -> RecordDict:
    """The content of a cohort's reply: each client's reply content, or its error, by place."""
    content = RecordDict({COHORT: ConfigRecord({"size": len(replies)})})
    errors: dict[str, ConfigRecordValues] = {}
    for i, reply in enumerate(replies):
        if isinstance(reply, Error):
            errors[f"{i}/code"] = int(reply.code)
            errors[f"{i}/reason"] = str(reply.reason or "")
            continue
        for key, record in reply.items():
            content[f"{i}/{key}"] = record
    content["errors"] = ConfigRecord(errors)
    return content


def split_cohort_reply(reply: Message, size: int) -> list[Message]:
    """A cohort's reply as one reply per client, in the cohort's order.

    Each is a Flower message (by its metadata a reply to the cohort's reply) holding
    that client's content or error, so the server reads it as it reads the reply to a
    message of its own; an error of the whole message (the node failed outside any client) is
    every client's error.
    """
    if reply.has_error():
        return [Message(reply.error, reply_to=reply) for _ in range(size)]
    content = reply.content
    errors = config_of(content, "errors")
    own: list[RecordDict] = [RecordDict() for _ in range(size)]
    for key, record in content.items():  # one pass: the keys are "<place>/<key>"
        place, _, name = key.partition("/")
        if name:
            own[int(place)][name] = record
    replies = []
    for i in range(size):
        if f"{i}/code" in errors:
            error = Error(code=as_int(errors[f"{i}/code"]), reason=str(errors[f"{i}/reason"]))
            replies.append(Message(error, reply_to=reply))
        else:
            replies.append(Message(own[i], reply_to=reply))
    return replies


def client_error(ex: Exception) -> Error:
    """A client's exception as the error Flower's simulation replies with (its code, and
    its reason in Flower's words), for a client of a cohort, which has no reply of its own."""
    wrapped = ClientAppException(str(ex))
    reason = str(type(wrapped)) + ":<'" + str(wrapped) + "'>"
    return Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason)


Handler = Callable[[RecordDict, Context], RecordDict]
"""A ClientApp's work for one client: the content of its message -> its reply's."""


def each_client(
    content: RecordDict,
    context: Context,
    handle: Handler,
    compression: Callable[[], str] = lambda: "none",
) -> RecordDict:
    """The reply content of a message: ``handle``'s for a message to one client; for a
    cohort (:func:`pwfl.transport.cohort_message`), every client's in turn, each
    client's exception its own error (one failed try, not a failed node), as Flower
    reports the exception of a message to that client alone. A cohort whose node
    aggregates sends back the mean of its updates (:func:`pwfl.transport.node_mean`),
    decoded as ``compression()`` says."""
    if not is_cohort(content):
        return handle(content, context)
    replies: list[RecordDict | Error] = []
    for one in cohort_contents(content):
        try:
            replies.append(handle(one, context))
        except Exception as ex:  # the client's own failure, reported in its place
            replies.append(client_error(ex))
    summed = cohort_summed(content)
    if summed:
        node_mean(replies, arrays_of(content), compression(), summed)
    return cohort_reply(replies)


def retry_config(config: dict[str, Any], reply: Message, max_retries: int) -> dict[str, Any] | None:
    """The config of a new try of a message sent with ``config`` when ``reply`` is an
    error and tries are left."""
    if not reply.has_error():
        return None
    attempt = int(config.get("attempt", 0)) + 1
    if attempt > max_retries:
        return None
    return {**config, "attempt": attempt}
