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

from pwfl.transport import ARRAYS, METRICS, WEIGHT_KEY

OK, RETRIED, FAILED, TIMEOUT, LATE = "ok", "retried", "failed", "timeout", "late"


@dataclass
class Try:
    """One message to one client, from its push to its outcome."""

    job: int
    client: int
    weight_set: int
    round: int
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
    hung: bool = False
    """The host gave up waiting for a reply (``faults.round_timeout_s``)."""
    status: str = ""
    """Empty while in flight; then ok, retried, failed, timeout or late."""
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

    @property
    def key(self) -> tuple[int, int, int]:
        """A stable identity for the simulated links: (job, client, attempt)."""
        return (self.job, self.client, self.attempt)

    @property
    def bytes_down(self) -> int:
        return self.arrays.count_bytes()

    @property
    def bytes_up(self) -> int:
        if self.reply is None or self.reply.has_error():
            return 0
        return self.reply.content[ARRAYS].count_bytes()

    def metric(self, name: str, default: float = math.nan) -> float:
        """A number from the client's reply (NaN when it sent none)."""
        if self.reply is None or self.reply.has_error():
            return default
        return float(self.reply.content[METRICS].get(name, default))

    @property
    def resolved(self) -> bool:
        return bool(self.status)

    def row(self, job_start_s: float) -> dict[str, Any]:
        """This try's ``clients.csv`` fields (without the run's label and seed)."""
        answered = self.reply is not None and not self.reply.has_error()
        return {
            "round": self.round,
            "phase": "train",
            "client": self.client,
            "weight_set": str(self.weight_set),
            "attempt": self.attempt,
            "num_examples": int(self.metric(WEIGHT_KEY)) if answered else None,
            "examples_run": int(self.metric("examples-run")) if answered else None,
            "train_measured_s": self.metric("train-measured-s") if answered else None,
            "loss": self.metric("loss") if answered else None,
            "status": self.status,
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
    return last.split("Message: ", 1)[-1][:200]


def bytes_moved(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Total ``bytes_down`` and ``bytes_up`` of some ``clients.csv`` rows."""
    return {key: sum(int(r.get(key) or 0) for r in rows) for key in ("bytes_down", "bytes_up")}
