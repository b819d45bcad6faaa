"""One message's try at a client: where it went, what came back, its times, its record.

Every message the engine sends to a client is a :class:`Try`: the first one of
a job, or a retry after an error. The engine fills in its reply (when the host
gets one) and its times on the simulated clock as the events come; the try
then writes its ``clients.csv`` row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, Message

from pwfl.faults import HANG_KEY
from pwfl.transport import ARRAYS, METRICS, WEIGHT_KEY, as_float, metrics_of

OK, RETRIED, FAILED, TIMEOUT, LATE = "ok", "retried", "failed", "timeout", "late"
LOST = "lost"
"""The host stopped waiting for the reply (``simulation.reply_timeout_s``, host seconds)."""
UNUSED = "unused"
"""The run ended before the update was used (still in flight, or in a server's buffer)."""


@dataclass
class Try:
    """One message to one client, from its push to its outcome."""

    job: int
    client: int
    weight_set: int
    round: int
    """The round of the records it is written in (fedbuff: the step that used it)."""
    attempt: int
    """0 for a job's first message to the client, 1 for its first retry, ..."""
    epochs: float
    """Local epochs the client was asked to run."""
    arrays: ArrayRecord
    """The weights it is sent (shared by its job's tries)."""
    config: dict[str, Any]
    """Its message's config: the client, weight set, round, attempt, training values."""
    message: Message | None = None
    """The message once pushed (a pool node may not be free at once)."""
    message_id: str = ""
    node: int | None = None
    pushed_at: float = math.nan
    """Host ``time.monotonic()`` of the push (the host's timeout runs from it)."""
    reply: Message | None = None
    lost: bool = False
    """The host gave up waiting for a reply (``simulation.reply_timeout_s``)."""
    status: str = ""
    """Empty while in flight; then ok, retried, failed, timeout, late, lost or unused."""
    error: str | None = None
    start_s: float = math.nan
    download_s: float = math.nan
    compute_s: float = math.nan
    upload_s: float = math.nan
    end_s: float = math.nan
    """When the reply (or the error) reached the server, or the server gave up."""
    straggler: bool | None = None
    staleness: int | None = None
    """Server updates of its weight set between the weights it was sent and its
    reply's arrival (set for a reply that counts)."""
    events: list[int] = field(default_factory=list)
    """Tokens of its events on the simulated clock (dropped once it is settled)."""
    aggregated: bool = False
    """Its update was in the list handed to the aggregation that changed its weight set."""
    sent_round: int = -1
    """The round it was sent in (its job's plan); ``round`` once it is created."""

    def __post_init__(self) -> None:
        if self.sent_round < 0:
            self.sent_round = self.round

    @property
    def key(self) -> tuple[int, int, int]:
        """A stable identity for the simulated links: (job, client, attempt)."""
        return (self.job, self.client, self.attempt)

    @property
    def bytes_down(self) -> int:
        return self.arrays.count_bytes()

    @property
    def answered(self) -> bool:
        """Whether the host holds the client's update: a reply that is not an error and
        not a hanging client's (which on the simulated clock never arrives)."""
        if self.reply is None or self.reply.has_error():
            return False
        return HANG_KEY not in self.reply.content[METRICS]

    @property
    def silent(self) -> bool:
        """The client hangs: on the simulated clock its reply never comes."""
        return self.reply is not None and not self.reply.has_error() and not self.answered

    @property
    def bytes_up(self) -> int:
        """The bytes of its update on the wire (a node that aggregates reports them)."""
        if not self.answered:
            return 0
        assert self.reply is not None
        if ARRAYS not in self.reply.content:
            return int(self.metric("update-bytes"))
        return self.reply.content[ARRAYS].count_bytes()

    def metric(self, name: str, default: float = math.nan) -> float:
        """A number from the client's reply (NaN when it sent none)."""
        if not self.answered:
            return default
        assert self.reply is not None
        return as_float(metrics_of(self.reply.content).get(name, default))

    @property
    def resolved(self) -> bool:
        return bool(self.status)

    def row(self, job_start_s: float) -> dict[str, Any]:
        """This try's ``clients.csv`` fields (without the run's label and seed)."""
        answered = self.answered
        return {
            "round": self.round,
            "sent_round": self.sent_round,
            "phase": "train",
            "client": self.client,
            "weight_set": str(self.weight_set),
            "attempt": self.attempt,
            "num_examples": int(self.metric(WEIGHT_KEY)) if answered else None,
            "examples_run": int(self.metric("examples-run")) if answered else None,
            "train_measured_s": self.metric("train-measured-s") if answered else None,
            "loss": self.metric("loss") if answered else None,
            "status": self.status,
            "aggregated": self.aggregated,
            "error": self.error,
            "straggler": self.straggler,
            "local_epochs": self.epochs,
            "staleness": self.staleness,
            "bytes_down": self.bytes_down,
            "bytes_up": self.bytes_up if self.status == OK else 0,
            "download_s": _or_none(self.download_s),
            "compute_s": _or_none(self.compute_s),
            "upload_s": _or_none(self.upload_s),
            "rtt_s": self.end_s - self.start_s,
            "offset_s": self.start_s - job_start_s,
            "sim_start_s": self.start_s,
            "sim_end_s": self.end_s,
        }


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def error_reason(reply: Message) -> str:
    """The first line of an error reply's reason, for ``clients.csv``."""
    reason = str(reply.error.reason or f"error code {reply.error.code}")
    lines = [line for line in reason.strip().splitlines() if line.strip()]
    # Flower puts the client's traceback in the reason; its last line names the exception.
    last = lines[-1] if lines else reason
    # The reason can end in the repr of the exception (``...'>``): keep its message.
    return last.split("Message: ", 1)[-1].removesuffix("'>").rstrip("'\"")[:200]


def bytes_moved(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Total ``bytes_down`` and ``bytes_up`` of some ``clients.csv`` rows."""
    return {key: sum(int(r.get(key) or 0) for r in rows) for key in ("bytes_down", "bytes_up")}
