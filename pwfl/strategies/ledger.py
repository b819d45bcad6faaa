"""Who each message went to, what its reply cost on the simulated clock, and its records.

Every strategy pushes messages, gets replies (or errors, or nothing) and must
turn them into aggregatable updates and ``clients.csv`` rows. The ledger does
that once for all of them: it maps replies back to the message they answer
(which also works for errors that the SuperLink, not the client, reports),
prices every reply with the client's device profile, applies the deadline, and
feeds the straggler tracker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message

from pwfl.clock import ClientProfile, round_trip
from pwfl.stragglers import StragglerTracker
from pwfl.strategies.common import ARRAYS, CONFIG, METRICS, WEIGHT_KEY, ClientDirectory


@dataclass(frozen=True)
class Sent:
    """One pushed message."""

    client: int
    weight_set: int
    epochs: float
    bytes_down: int


@dataclass
class Settled:
    """The outcome of one exchange of messages."""

    accepted: dict[int, list[Message]] = field(default_factory=dict)
    """Replies that count, by weight set, in client order."""
    group_s: dict[int, float] = field(default_factory=dict)
    """Simulated time each weight set's group took (its slowest accepted client,
    or the deadline when a reply came too late or never)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """``clients.csv`` rows; ``rtt_s`` is relative to the group's start."""


class Ledger:
    """Maps replies to messages and prices them on the simulated clock."""

    def __init__(
        self,
        directory: ClientDirectory,
        profiles: dict[int, ClientProfile],
        tracker: StragglerTracker,
        deadline_s: float = 0.0,
    ):
        self.directory = directory
        self.profiles = profiles
        self.tracker = tracker
        self.deadline_s = deadline_s
        self._sent: dict[str, Sent] = {}

    def remember(self, messages: Sequence[Message]) -> None:
        """Note the pushed messages (their ids exist only after the push)."""
        self._sent = {}
        for m in messages:
            config = m.content[CONFIG]
            self._sent[m.metadata.message_id] = Sent(
                client=self.directory.partition_of(m.metadata.dst_node_id),
                weight_set=int(config["weight-set"]),
                epochs=float(config.get("local-epochs", 0.0)),
                bytes_down=m.content[ARRAYS].count_bytes() if ARRAYS in m.content else 0,
            )

    def settle(self, replies: Iterable[Message], phase: str, server_round: int) -> Settled:
        """Sort replies into accepted updates and records; price training replies."""
        answered = {r.metadata.reply_to_message_id: r for r in replies}
        pairs = sorted(
            ((sent, answered.get(mid)) for mid, sent in self._sent.items()),
            key=lambda pair: (pair[0].client, pair[0].weight_set),
        )
        out = Settled()
        finishers = []
        for sent, reply in pairs:
            row: dict[str, Any] = {
                "round": server_round,
                "phase": phase,
                "client": sent.client,
                "weight_set": sent.weight_set,
            }
            out.accepted.setdefault(sent.weight_set, [])
            out.group_s.setdefault(sent.weight_set, 0.0)
            if reply is None or reply.has_error():
                row["status"] = "timeout" if reply is None else "failed"
                if self.deadline_s and phase == "train":
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
                row.update(self._price(sent, reply))
                finishers.append(sent.client)
                late = bool(self.deadline_s) and row["rtt_s"] > self.deadline_s
                if late:
                    row["status"] = "late"
                    out.group_s[sent.weight_set] = self.deadline_s
                else:
                    group = out.group_s[sent.weight_set]
                    out.group_s[sent.weight_set] = max(group, row["rtt_s"])
                    out.accepted[sent.weight_set].append(reply)
            else:
                out.accepted[sent.weight_set].append(reply)
            out.rows.append(row)
        if phase == "train":
            for row in out.rows:
                row["straggler"] = self.tracker.is_straggler(row["client"])
            self.tracker.end_round(finishers)
        return out

    def _price(self, sent: Sent, reply: Message) -> dict[str, Any]:
        metrics = reply.content[METRICS]
        bytes_up = reply.content[ARRAYS].count_bytes()
        compute = float(metrics["train-time-s"])
        timing = round_trip(self.profiles[sent.client], compute, sent.bytes_down, bytes_up)
        self.tracker.observe(sent.client, timing, sent.epochs or 1.0)
        return {
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
    ``sim_end_s`` on every priced reply."""
    return [
        {**row, "sim_start_s": start_s, "sim_end_s": start_s + row["rtt_s"]}
        if "rtt_s" in row
        else row
        for row in rows
    ]


def bytes_moved(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Total ``bytes_down`` and ``bytes_up`` of some ``clients.csv`` rows."""
    return {key: sum(int(r.get(key, 0)) for r in rows) for key in ("bytes_down", "bytes_up")}
