"""Checkpoint state: everything the next events depend on, in flight or not.

A checkpoint is taken at the end of a round of the records, and for a policy
without a round barrier (async PWFL, FedBuff) jobs are then still in flight. So
the state holds the simulated clock whole (its scheduled events, the transfers
on the server's links and how far each got, the cores), every job the server
still waits for or whose records wait for their round, each of their tries with
its client's reply when the host had it (serialised with Flower's own message
encoding), and the policy's own state. On resume, a try still waiting for a
reply is sent again: its client computes the same reply (every draw is seeded
by the run, the round, the client and the try).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage

from pwfl.aggregation import Arrays
from pwfl.checkpoint import Checkpoint
from pwfl.engine.events import TRY_EVENTS, Aggregated, GiveUp
from pwfl.engine.jobs import Job, Tally
from pwfl.engine.parts import Parts
from pwfl.ledger import Try
from pwfl.strategies.base import Aggregation, Plan
from pwfl.transport import to_record

_EVENT_KINDS = {cls.__name__.lower(): cls for cls in TRY_EVENTS}
_TRY_FIELDS = (
    "round", "attempt", "epochs", "config", "lost", "status", "error", "start_s", "download_s",
    "compute_s", "upload_s", "end_s", "straggler", "staleness", "events", "aggregated",
    "sent_round",
)  # fmt: skip


class CheckpointState(Parts):
    """Saving the run's state at a round's end, and continuing from it."""

    def checkpoint_state(self) -> tuple[dict[str, Any], Arrays]:
        """Everything beyond the seed that the next events depend on: JSON-able values
        and named arrays."""
        arrays: Arrays = {}
        state = {
            "sim": self.sim.state(lambda event, seq: self._event_state(event, seq, arrays)),
            "elapsed_wall_s": time.perf_counter() - self.run_started,
            "last_wall_s": {str(ws): t for ws, t in self.last_wall.items()},
            "quorum_streaks": self.watch.streaks,
            "failed_updates": self.watch.failed_updates,
            "tracker": self.tracker.state(),
            "free_at": {str(c): t for c, t in self.free_at.items()},
            "busy": sorted(self.busy),
            "unfilled": {str(r): n for r, n in self.unfilled.items()},
            "update_norms": [[c, ws, n] for (c, ws), n in sorted(self.norms.items())],
            "dispatches": [[*key, n] for key, n in self.dispatches.items()],
            "next_job": self.next_job,
            "jobs": [self._job_state(job, arrays) for job in self.jobs],
            "tallies": {str(ws): dataclasses.asdict(t) for ws, t in self.tallies.items()},
            "client_states": [[c, ws] for c, ws in sorted(self.messenger.states)],
            "policy": self.policy.state(),
            "weight_sets": [
                {
                    "rounds_trained": ws.rounds_trained,
                    "history": ws.history,
                    "val_loss": ws.val_loss,
                }
                for ws in self.sets
            ],
        }
        arrays.update({f"policy/{k}": v for k, v in self.policy.state_arrays().items()})
        for ws in self.sets:
            arrays.update({f"weights/{ws.id}/{name}": v for name, v in ws.arrays.items()})
        for i, optimizer in enumerate(self.optimizers):
            if optimizer is not None:
                arrays.update({f"optimizer/{i}/{k}": v for k, v in optimizer.state().items()})
        for (client, set_id), kept in self.messenger.states.items():
            arrays.update({f"client/{client}/{set_id}/{k}": v for k, v in kept.items()})
        return state, arrays

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: weight sets, optimisers, clocks, jobs, estimates, policy."""
        state, arrays = ckpt.strategy, ckpt.arrays
        self.wall_before = float(state["elapsed_wall_s"])
        self.last_wall = {int(ws): float(t) for ws, t in state["last_wall_s"].items()}
        self.watch.streaks = {k: int(v) for k, v in state["quorum_streaks"].items()}
        self.watch.failed_updates = int(state["failed_updates"])
        self.tracker.load_state(state["tracker"])
        self.free_at = {int(c): float(t) for c, t in state["free_at"].items()}
        self.busy = {int(c) for c in state["busy"]}
        self.unfilled = {int(r): int(n) for r, n in state["unfilled"].items()}
        self.norms = {(int(c), int(ws)): float(n) for c, ws, n in state.get("update_norms", [])}
        self.dispatches = {(int(r), int(c), int(ws)): int(n) for r, c, ws, n in state["dispatches"]}
        self.next_job = int(state["next_job"])
        for client, ws in state["client_states"]:
            self.messenger.states[int(client), int(ws)] = _under(arrays, f"client/{client}/{ws}/")
        self.policy.load_state(state["policy"], _under(arrays, "policy/"))
        self.checkpoint_round = ckpt.round
        for ws in self.sets:
            ws.arrays = _under(arrays, f"weights/{ws.id}/")
            saved = state["weight_sets"][ws.id]
            ws.rounds_trained, ws.history = int(saved["rounds_trained"]), list(saved["history"])
            ws.val_loss = float(saved["val_loss"])
        for i, optimizer in enumerate(self.optimizers):
            if optimizer is not None:
                optimizer.load_state(_under(arrays, f"optimizer/{i}/"))
        self.tallies = {int(ws): _tally(t) for ws, t in state["tallies"].items()}
        self.jobs = [self._restore_job(saved, arrays) for saved in state["jobs"]]
        self.sim.load_state(state["sim"], lambda saved: self._restore_event(saved, arrays))
        for job in self.jobs:  # what the host was still waiting for is asked again
            self.messenger.send_all(
                [
                    attempt
                    for attempt in job.tries
                    if not attempt.resolved and attempt.reply is None and not attempt.lost
                ]
            )

    # --- the simulated clock's events (the clock saves itself, Simulation.state) -------

    def _event_state(self, event: Any, seq: int, arrays: Arrays) -> dict[str, Any]:
        if isinstance(event, GiveUp):
            return {"kind": "give_up", "job": event.job.id, "status": event.status}
        if isinstance(event, Aggregated):
            prefix = f"aggregated/{seq}/"
            arrays.update({prefix + name: value for name, value in event.arrays.items()})
            a = event.aggregation
            return {
                "kind": "aggregated",
                "job": event.job.id,
                "weight_set": a.weight_set,
                "sources": list(a.sources),
                "start_s": event.start_s,
                "wall_s": event.wall_s,
                "arrays": prefix,
            }
        attempt = event.attempt
        return {"kind": type(event).__name__.lower(), "try": list(attempt.key)}

    def _restore_event(self, saved: dict[str, Any], arrays: Arrays) -> Any:
        kind = saved["kind"]
        if kind == "give_up":
            return GiveUp(self.job(int(saved["job"])), str(saved["status"]))
        if kind == "aggregated":
            # Its updates are decoded again from the sources' counted replies, which the
            # state holds: the policy is told of them when the aggregation ends.
            sources = tuple(int(j) for j in saved["sources"])
            updates = [u for j in sources for u in self.decode(self.job(j), self.job(j).counted())]
            aggregation = Aggregation(
                int(saved["weight_set"]), self.policy.aggregate, updates, sources
            )
            return Aggregated(
                self.job(int(saved["job"])),
                aggregation,
                float(saved["start_s"]),
                _under(arrays, saved["arrays"]),
                float(saved["wall_s"]),
            )
        job_id, client, attempt = saved["try"]
        found = next(
            t for t in self.job(int(job_id)).tries if t.client == client and t.attempt == attempt
        )
        return _EVENT_KINDS[kind](found)

    # --- jobs and tries ---------------------------------------------------------------

    def _job_state(self, job: Job, arrays: Arrays) -> dict[str, Any]:
        arrays.update({f"job/{job.id}/{name}": value for name, value in job.sent.items()})
        tries = []
        for attempt in job.tries:
            saved = {name: getattr(attempt, name) for name in _TRY_FIELDS}
            saved["client"] = attempt.client
            if attempt.reply is not None:
                key = f"reply/{job.id}/{attempt.client}/{attempt.attempt}"
                proto = message_to_proto(attempt.reply).SerializeToString()
                arrays[key] = np.frombuffer(proto, dtype=np.uint8)
                saved["reply"] = key
            tries.append(saved)
        plan = job.plan
        return {
            "id": job.id,
            "plan": [
                plan.weight_set,
                plan.round,
                list(plan.clients),
                plan.start_s,
                list(plan.epochs),
            ],
            "version": job.version,
            "staleness": job.staleness,
            "waiting": sorted(job.waiting),
            "end_s": job.end_s,
            "status": job.status,
            "events": job.events,
            "tries": tries,
        }

    def _restore_job(self, saved: dict[str, Any], arrays: Arrays) -> Job:
        ws, server_round, clients, start_s, epochs = saved["plan"]
        plan = Plan(int(ws), int(server_round), tuple(clients), float(start_s), tuple(epochs))
        sent = _under(arrays, f"job/{saved['id']}/")
        job = Job(int(saved["id"]), plan, sent, int(saved["version"]))
        job.staleness, job.status = int(saved["staleness"]), str(saved["status"])
        job.waiting = {int(c) for c in saved["waiting"]}
        job.end_s = None if saved["end_s"] is None else float(saved["end_s"])
        job.events = [int(token) for token in saved["events"]]
        record = to_record(sent)
        for t in saved["tries"]:
            attempt = Try(
                job.id, int(t["client"]), job.weight_set, int(t["round"]), 0, 0.0, record, {}
            )
            for name in _TRY_FIELDS:
                setattr(attempt, name, t[name])
            if "reply" in t:
                proto = ProtoMessage.FromString(arrays[t["reply"]].tobytes())
                attempt.reply = message_from_proto(proto)
            job.tries.append(attempt)
        return job


def _under(arrays: Arrays, prefix: str) -> Arrays:
    """The arrays saved under ``prefix``, by the rest of their key."""
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def _tally(saved: dict[str, Any]) -> Tally:
    tally = Tally(**saved)
    tally.busy = [(float(a), float(b)) for a, b in tally.busy]
    return tally
