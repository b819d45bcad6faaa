"""Who each message went to, what its reply cost on the simulated clock, and its records.

The engine pushes messages, gets replies (or errors, or nothing) and must turn
them into aggregatable updates and ``clients.csv`` rows. A ledger does that for
one job: it maps replies back to the message they answer (which also works for
errors that the SuperLink, not the client, reports), prices every reply with
the client's device profile and applies the deadline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message

from pwfl.clock import ClientProfile, ClientTiming, round_trip
from pwfl.transport import ARRAYS, CONFIG, METRICS, WEIGHT_KEY


@dataclass(frozen=True)
class Sent:
    """One pushed message."""

    client: int
    weight_set: int
    epochs: float
    bytes_down: int
    attempt: int = 0
    """0 for the first message of a round, 1 for its first retry, ..."""


@dataclass
class Settled:
    """The outcome of one exchange of messages (with its retries)."""

    accepted: dict[int, list[Message]] = field(default_factory=dict)
    """Replies that count, by weight set, in client order."""
    sent: dict[int, int] = field(default_factory=dict)
    """Clients each weight set's group was sent (retries not counted)."""
    group_s: dict[int, float] = field(default_factory=dict)
    """Simulated time each weight set's group took (its slowest accepted client,
    or the deadline when a reply came too late or never)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Partial ``clients.csv`` rows, one per message; ``rtt_s`` is relative to the
    group's start."""
    timings: dict[int, tuple[ClientTiming, float]] = field(default_factory=dict)
    """Each answering client's round trip and the epochs it ran (for the
    straggler estimates)."""


class Ledger:
    """Maps replies to messages and prices them on the simulated clock."""

    def __init__(self, profiles: dict[int, ClientProfile], deadline_s: float = 0.0):
        self.profiles = profiles
        # 0 and inf both mean no deadline (stragglers.deadline_s); one falsy value for
        # both keeps an infinite deadline out of the group times set below.
        self.deadline_s = deadline_s if math.isfinite(deadline_s) else 0.0
        self._sent: dict[str, Sent] = {}

    def remember(self, messages: Sequence[Message]) -> None:
        """Note pushed messages (their ids exist only after the push) until the next settle."""
        for m in messages:
            config = m.content[CONFIG]
            self._sent[m.metadata.message_id] = Sent(
                client=int(config["client-id"]),
                weight_set=int(config["weight-set"]),
                epochs=float(config.get("local-epochs", 0.0)),
                bytes_down=m.content[ARRAYS].count_bytes() if ARRAYS in m.content else 0,
                attempt=int(config.get("attempt", 0)),
            )

    def settle(self, replies: Iterable[Message], phase: str, server_round: int) -> Settled:
        """Sort replies into accepted updates and records; price training replies.

        Every remembered message gets one row. An error answered by a retry is
        ``retried`` and costs its client the download and latency of the failed
        try (``offset_s``) before the retry starts; the last try of a client is
        ``ok``, ``failed`` (an error), ``timeout`` (no reply) or ``late`` (past the
        deadline on the simulated clock).
        """
        answered = {r.metadata.reply_to_message_id: r for r in replies}
        pairs = sorted(
            ((sent, answered.get(mid)) for mid, sent in self._sent.items()),
            key=lambda pair: (pair[0].client, pair[0].weight_set, pair[0].attempt),
        )
        last_try = {}
        for sent, _ in pairs:
            last_try[sent.client, sent.weight_set] = sent.attempt
        self._sent = {}
        out = Settled()
        offset: dict[tuple[int, int], float] = {}
        for sent, reply in pairs:
            key = (sent.client, sent.weight_set)
            row: dict[str, Any] = {
                "round": server_round,
                "phase": phase,
                "client": sent.client,
                "weight_set": str(sent.weight_set),
                "attempt": sent.attempt,
            }
            out.accepted.setdefault(sent.weight_set, [])
            out.group_s.setdefault(sent.weight_set, 0.0)
            if sent.attempt == 0:
                out.sent[sent.weight_set] = out.sent.get(sent.weight_set, 0) + 1
            if reply is None or reply.has_error():
                if reply is None:
                    row["status"] = "timeout"
                else:
                    row["error"] = _error_reason(reply)
                    retried = sent.attempt < last_try[key]
                    row["status"] = "retried" if retried else "failed"
                    if retried and phase == "train":
                        profile = self.profiles[sent.client]
                        lost = round_trip(profile, 0.0, sent.bytes_down, 0).total_s
                        offset[key] = offset.get(key, 0.0) + lost
                if row["status"] != "retried" and self.deadline_s and phase == "train":
                    out.group_s[sent.weight_set] = self.deadline_s
                out.rows.append(row)
                continue
            metrics = reply.content[METRICS]
            row.update(
                num_examples=int(metrics[WEIGHT_KEY]),
                loss=float(metrics.get("loss", np.nan)),
                accuracy=float(metrics.get("accuracy", np.nan)),
                status="ok",
            )
            if phase == "train":
                timing, priced = self._price(sent, reply)
                row.update(priced)
                row["offset_s"] = offset.get(key, 0.0)
                out.timings[sent.client] = (timing, sent.epochs or 1.0)
                done = row["offset_s"] + row["rtt_s"]
                if self.deadline_s and done > self.deadline_s:
                    row["status"] = "late"
                    out.group_s[sent.weight_set] = self.deadline_s
                else:
                    group = out.group_s[sent.weight_set]
                    out.group_s[sent.weight_set] = max(group, done)
                    out.accepted[sent.weight_set].append(reply)
            else:
                out.accepted[sent.weight_set].append(reply)
            out.rows.append(row)
        return out

    def _price(self, sent: Sent, reply: Message) -> tuple[ClientTiming, dict[str, Any]]:
        metrics = reply.content[METRICS]
        bytes_up = reply.content[ARRAYS].count_bytes()
        compute = float(metrics["train-time-s"])
        timing = round_trip(self.profiles[sent.client], compute, sent.bytes_down, bytes_up)
        return timing, {
            "train_time_s": compute,
            "local_epochs": sent.epochs,
            "bytes_down": sent.bytes_down,
            "bytes_up": bytes_up,
            "download_s": timing.download_s,
            "compute_s": timing.compute_s,
            "upload_s": timing.upload_s,
            "rtt_s": timing.total_s,
        }


def on_clock(rows: list[dict[str, Any]], start_s: float) -> list[dict[str, Any]]:
    """Rows of a group sent at simulated time ``start_s``, with ``sim_start_s`` and
    ``sim_end_s`` on every priced reply (a retry starts after its failed tries)."""
    out = []
    for row in rows:
        if "rtt_s" in row:
            begin = start_s + row.get("offset_s", 0.0)
            row = {**row, "sim_start_s": begin, "sim_end_s": begin + row["rtt_s"]}
        out.append(row)
    return out


def _error_reason(reply: Message) -> str:
    """The first line of an error reply's reason, for ``clients.csv``."""
    reason = str(reply.error.reason or f"error code {reply.error.code}")
    lines = [line for line in reason.strip().splitlines() if line.strip()]
    # Flower puts the client's traceback in the reason; its last line names the exception.
    last = lines[-1] if lines else reason
    return last.split("Message: ", 1)[-1][:200]


def bytes_moved(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Total ``bytes_down`` and ``bytes_up`` of some ``clients.csv`` rows."""
    return {key: sum(int(r.get(key) or 0) for r in rows) for key in ("bytes_down", "bytes_up")}
