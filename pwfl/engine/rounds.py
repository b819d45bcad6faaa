"""The end of a round of the records: evaluate, build its rows, hand them to the callbacks.

A round's rows hold the jobs the server has settled for its weight sets since
their last round (a FedBuff step's round holds the jobs its buffer consumed, and
those that failed meanwhile), each set's server test and validation, the
clients' own evaluation of the round's sets (synchronous rounds), and the
server's busy spans. Records, checkpoints and progress are callbacks.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flwr.app import MessageType, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from pwfl.aggregation import Arrays
from pwfl.callbacks import RoundRecord
from pwfl.clock import idle_time
from pwfl.engine.jobs import Closing, Job, Tally, train_loss
from pwfl.engine.messaging import Evaluation
from pwfl.engine.parts import Parts
from pwfl.ledger import FAILED, LOST, OK, UNUSED, bytes_moved, error_reason
from pwfl.partition import sample_clients, split_complementary
from pwfl.quorum import QUORUM_MISSED
from pwfl.schema import CLIENTS, MERGED, ROUNDS, SERVER
from pwfl.seeding import rng_for
from pwfl.strategies.base import RoundEnd
from pwfl.transport import WEIGHT_KEY, as_float, as_int, metrics_of, to_record


class RoundRecords(Parts):
    """Closing rounds of the records."""

    def close_round(self, end: RoundEnd) -> None:
        """Settle the round's jobs and ask the clients to evaluate its weight sets; the
        rest of the round's closing waits for their replies (:meth:`finish_round`)."""
        if self.closing is not None:
            raise RuntimeError(
                f"round {end.round} closed while round "
                f"{self.closing.end.round} waits for its evaluations"
            )
        tallies = {ws: self.tallies.pop(ws, Tally()) for ws in end.weight_sets}
        for job in self._settled(end):
            for attempt in job.tries:
                attempt.round = end.round
            tallies[job.weight_set].add_job(job)
        if end.last:  # the sets' jobs still in flight are given up, and recorded here
            for row in self._unused(end.round, end.weight_sets):
                tally = tallies[int(row["weight_set"])]
                tally.clients.append(row)
                tally.num_sent += row["attempt"] == 0
        cohort = sorted({row["client"] for t in tallies.values() for row in t.clients})
        asked = self._ask_clients(end, cohort) if end.evaluate_clients else []
        self.messenger.send_all(asked, MessageType.EVALUATE)
        self.closing = Closing(end, tallies, asked)
        if not asked:
            self.finish_round()

    def finish_round(self) -> None:
        """The round's clients have answered: write its records, checkpoint, check quorum.

        The loop (:mod:`pwfl.engine.loop`) handles no event and plans nothing between
        :meth:`close_round` and this, so the engine's state here, which a checkpoint
        saves, is the state at the round's end.
        """
        assert self.closing is not None and self.closing.settled
        end, tallies, asked = self.closing.end, self.closing.tallies, self.closing.asked
        self.closing = None
        client_metrics, eval_rows = _client_metrics(asked, end.round)
        unused = self._unused(end.round) if self.policy.done() else []
        for row in unused:  # sent, so counted among the last round's messages and bytes
            tally = tallies.get(int(row["weight_set"]))
            if tally is not None:
                tally.clients.append(row)
                tally.num_sent += row["attempt"] == 0
        record = self._record(end, tallies, client_metrics)
        record.clients += [self._client_row(row) for row in eval_rows]
        record.clients += [
            self._client_row(row) for row in unused if int(row["weight_set"]) not in tallies
        ]
        self.unfilled.pop(end.round, None)
        self.watch.observe(
            {
                row["weight_set"]: row["status"]
                for row in record.rounds
                if row["weight_set"] != MERGED
            }
        )
        for callback in self.callbacks:
            callback.on_round_end(record)
        self.watch.stop_if_lost(end.round)

    def _settled(self, end: RoundEnd) -> list[Job]:
        """The settled jobs of the round's weight sets, taken off the engine's list."""
        settled = [j for j in self.jobs if j.end_s is not None and j.weight_set in end.weight_sets]
        self.jobs = [j for j in self.jobs if j not in settled]
        return settled

    def _record(
        self, end: RoundEnd, tallies: dict[int, Tally], client_metrics: dict[int, dict[str, float]]
    ) -> RoundRecord:
        everyone = len(end.weight_sets) == self.policy.num_weight_sets
        busy = [span for t in tallies.values() for span in t.busy]
        length = end.end_s - end.start_s
        now = time.perf_counter()
        clock = {
            "elapsed_wall_s": now - self.run_started,
            "round_sim_s": length,
            "sim_time_s": end.end_s,
            "idle_s": idle_time(busy, end.start_s, end.end_s) if everyone else None,
        }
        record = RoundRecord(end.round)
        for ws in end.weight_sets:
            tally = tallies[ws]
            record.rounds.append(self._round_row(end, ws, tally, client_metrics, now, clock))
            record.clients += [self._client_row(row) for row in tally.clients]
            record.server += [
                SERVER.row(
                    strategy=self.label,
                    seed=self.cfg.seed,
                    round=end.round,
                    weight_set=str(ws),
                    busy_start_s=start,
                    busy_end_s=stop,
                )
                for start, stop in tally.busy
            ]
        # Merging comes last: the rows above describe each set's own model, the
        # merged row their average, and the next round starts from it.
        merged = self.policy.merge(end, self)  # type: ignore[arg-type]
        if merged is not None:
            metrics = self.server_evaluate(0, merged)  # merging needs one model in every set
            record.rounds.append(
                ROUNDS.row(
                    strategy=self.label,
                    seed=self.cfg.seed,
                    round=end.round,
                    weight_set=MERGED,
                    set_name=MERGED,
                    accuracy=metrics["accuracy"],
                    loss=metrics["loss"],
                    val_accuracy=metrics["val_accuracy"],
                    val_loss=metrics["val_loss"],
                    **clock,
                )
            )
        return record

    def _unused(self, server_round: int, only: tuple[int, ...] = ()) -> list[dict[str, Any]]:
        """Rows of the updates the run ends without using (jobs still in flight, replies
        still in a server step's buffer): every message sent has its row. With ``only``,
        those of these weight sets alone (a set that has taken its last step)."""
        rows = []
        kept = []
        for job in self.jobs:
            if only and job.weight_set not in only:
                kept.append(job)
                continue
            for token in job.events:  # its deadline or timeout: the job is gone
                self.sim.drop(token)
            for attempt in job.tries:
                if not attempt.resolved:
                    self.give_up(attempt, UNUSED)
                elif attempt.status == OK:
                    attempt.status = UNUSED
                attempt.round = server_round
                rows.append(attempt.row(job.plan.start_s))
        self.jobs = kept
        return rows

    def _round_row(
        self,
        end: RoundEnd,
        ws: int,
        tally: Tally,
        client_metrics: dict[int, dict[str, float]],
        now: float,
        clock: dict[str, Any],
    ) -> dict[str, Any]:
        weight_set = self.sets[ws]
        metrics = self.server_evaluate(ws, weight_set.arrays)
        weight_set.history.append(metrics["accuracy"])
        weight_set.val_loss = metrics["val_loss"]
        client = client_metrics.get(ws, {})
        counted = [row for row in tally.clients if row["aggregated"]]
        elapsed = now - self.run_started
        started = self.last_wall.get(ws, 0.0)
        self.last_wall[ws] = elapsed
        return ROUNDS.row(
            strategy=self.label,
            seed=self.cfg.seed,
            round=end.round,
            weight_set=str(ws),
            set_name=self.cfg.set_name(ws),
            status=OK if tally.updated else QUORUM_MISSED,
            accuracy=metrics["accuracy"],
            loss=metrics["loss"],
            val_accuracy=metrics["val_accuracy"],
            val_loss=metrics["val_loss"],
            client_accuracy=client.get("accuracy"),
            client_loss=client.get("loss"),
            train_loss=train_loss(counted) if tally.updated else math.nan,
            num_clients=len(counted),
            num_sent=tally.num_sent,
            num_unfilled=self.unfilled.get(end.round, 0),
            num_examples=sum(int(row["num_examples"]) for row in counted),
            train_s=tally.end_s - tally.start_s if tally.clients else 0.0,
            aggregate_s=tally.aggregate_s,
            aggregate_wall_s=tally.aggregate_wall_s,
            group_start_s=tally.start_s if tally.clients else end.start_s,
            group_end_s=tally.ready_s if tally.clients else end.start_s,
            round_wall_s=elapsed - started,
            **clock,
            **bytes_moved(tally.clients),
        )

    def _client_row(self, row: dict[str, Any]) -> dict[str, Any]:
        return CLIENTS.row(strategy=self.label, seed=self.cfg.seed, **row)

    def server_evaluate(self, ws: int, arrays: Arrays) -> dict[str, float]:
        """The server's test and validation of weight set ``ws``'s weights ``arrays``:
        empty (NaN) in personal mode, where every client's classifier stays on the client
        and the server's never trains, so no model the server holds is any client's."""
        if self.cfg.train.client_state == "personal":
            return {key: math.nan for key in ("accuracy", "loss", "val_accuracy", "val_loss")}
        if self.set_models:
            return self.set_models[ws].evaluate(arrays)
        return self.evaluate(arrays)

    def _ask_clients(self, end: RoundEnd, cohort: list[int]) -> list[Evaluation]:
        """A seeded share of the round's cohort, to evaluate its weight sets on their own data.

        ``strategy.fraction_evaluate`` of the clients sent training messages this
        round (at least one) is split into as many groups as the round has weight
        sets, one set per group; a client asked for a task it does not hold
        (``data.participation``) is left out. Evaluation is a measurement, not part
        of the protocol: it takes no simulated time.
        """
        s = self.cfg.strategy
        sets = list(end.weight_sets)
        if s.fraction_evaluate == 0 or not cohort:
            return []
        rng = rng_for(self.cfg.seed, "sample-evaluate", end.round)
        clients = sample_clients(cohort, s.fraction_evaluate, 1, rng)
        if len(clients) < len(sets):
            return []
        groups = split_complementary(
            clients, len(sets), rng_for(self.cfg.seed, "split-evaluate", end.round)
        )
        records = {ws: to_record(self.sets[ws].arrays) for ws in sets}  # one per set
        return [
            Evaluation(
                client,
                ws,
                records[ws],
                {
                    **self.train_config(ws),
                    "server-round": end.round,
                    "weight-set": ws,
                    "client-id": client,
                },
            )
            for ws, group in zip(sets, groups, strict=True)
            for client in group
            if self.population.holds(client, ws)  # never on a task it does not hold
        ]


def _client_metrics(
    asked: list[Evaluation], server_round: int
) -> tuple[dict[int, dict[str, float]], list[dict[str, Any]]]:
    """Flower's weighted means per weight set of the clients' evaluations, and their rows.

    A client that evaluates nothing (no held-out examples, or no personal layer of
    its own for the set) is in the records but not in the mean.
    """
    rows: list[dict[str, Any]] = []
    accepted: dict[int, list[RecordDict]] = {}
    for item in sorted(asked, key=lambda e: e.client):
        row = _evaluation_row(item, server_round)
        if row["status"] == OK and row["num_examples"] > 0:
            assert item.reply is not None
            accepted.setdefault(item.weight_set, []).append(item.reply.content)
        rows.append(row)
    metrics = {
        ws: {k: as_float(v) for k, v in aggregate_metricrecords(contents, WEIGHT_KEY).items()}
        for ws, contents in accepted.items()
    }
    return metrics, rows


def _evaluation_row(item: Evaluation, server_round: int) -> dict[str, Any]:
    """One client's evaluation as its ``clients.csv`` fields."""
    row: dict[str, Any] = {
        "round": server_round,
        "phase": "evaluate",
        "client": item.client,
        "weight_set": str(item.weight_set),
        "attempt": 0,
    }
    reply = item.reply
    if reply is None:  # the host stopped waiting (evaluation takes no simulated time)
        row["status"] = LOST
    elif reply.has_error():
        row.update(status=FAILED, error=error_reason(reply))
    else:
        metrics = metrics_of(reply.content)
        row.update(
            status=OK,
            num_examples=as_int(metrics[WEIGHT_KEY]),
            loss=as_float(metrics["loss"]),
            accuracy=as_float(metrics["accuracy"]),
        )
    return row
