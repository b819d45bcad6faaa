"""The run records' schema: every column of rounds.csv, clients.csv and server.csv, once.

Usage::

    row = ROUNDS.row(strategy="pwfl", seed=0, round=1, weight_set="0", accuracy=0.93)
    ROUNDS.names                 # the columns in file order
    ROUNDS.dtypes()              # pandas dtypes, for reading the file back

Each column has one meaning, written here beside its type and unit, and is
computed the same way for every strategy. A row holds exactly the table's
columns: a column that does not apply to a row (the client accuracy of a
round nobody evaluated, the bytes of an evaluation message) is empty, never
missing, and a name that is not a column is an error. The writer
(:mod:`pwfl.records`), the reader (:mod:`pwfl.analysis`), the checkpoints and
the notebooks all use these tables.

Times: the columns named ``*_wall_s`` and ``*_measured_s`` are measured on the
host that ran the simulation and change from run to run; every other ``*_s``
column is on the simulated clock (:mod:`pwfl.clock`), in seconds since the run
started unless its meaning says it is a duration, and depends only on the
config and the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# pandas dtypes: identifiers are text or integers, text that some rows lack is
# pandas' nullable string, counts that some rows lack are nullable integers, flags
# nullable booleans, measurements float64.
TEXT, NOTE, INT, COUNT, FLAG, FLOAT = "str", "string", "int64", "Int64", "boolean", "float64"
MERGED = "merged"
"""``weight_set`` of the row that describes the merged model of a merge round."""


@dataclass(frozen=True)
class Column:
    """One column: its name, pandas dtype, unit and meaning."""

    name: str
    dtype: str
    unit: str
    meaning: str
    required: bool = False
    """Every row must give it (the row's key)."""


class Table:
    """The columns of one record file, in file order."""

    def __init__(self, file: str, columns: list[Column]):
        self.file = file
        self.columns = columns
        self.names = [c.name for c in columns]
        self._known = set(self.names)
        self._required = [c.name for c in columns if c.required]

    def row(self, **values: Any) -> dict[str, Any]:
        """One row with exactly this table's columns; those not given are empty.

        Raises
        ------
        KeyError
            For a name that is not a column, or a required column left out.
        """
        unknown = sorted(set(values) - self._known)
        if unknown:
            raise KeyError(f"{self.file} has no column {', '.join(unknown)}")
        missing = [name for name in self._required if values.get(name) is None]
        if missing:
            raise KeyError(f"a {self.file} row needs {', '.join(missing)}")
        return {name: values.get(name) for name in self.names}

    def dtypes(self) -> dict[str, str]:
        """Column -> pandas dtype."""
        return {c.name: c.dtype for c in self.columns}

    def markdown(self) -> str:
        """The schema as a Markdown table (column, type, unit, meaning)."""
        lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
        lines += [f"| `{c.name}` | {c.dtype} | {c.unit} | {c.meaning} |" for c in self.columns]
        return "\n".join(lines)


def _key(name: str, dtype: str, meaning: str) -> Column:
    return Column(name, dtype, "", meaning, required=True)


RUN_KEYS = [
    _key("strategy", TEXT, "the run's label: its strategy, and key=value when a key is varied"),
    _key("seed", INT, "the experiment seed"),
]

ROUNDS = Table(
    "rounds.csv",
    [
        *RUN_KEYS,
        _key(
            "round",
            INT,
            "the weight set's round: a server round (sync), the set's own round "
            "(async), a server update (fedbuff)",
        ),
        _key("weight_set", TEXT, "0..K-1, or merged for the average of the sets"),
        Column(
            "set_name",
            NOTE,
            "",
            "the set's name (its [[weight_set]] table's, else its number; merged)",
        ),
        Column("status", NOTE, "", "ok, or quorum_missed when the set kept its weights"),
        Column(
            "accuracy",
            FLOAT,
            "",
            "server test accuracy of the set after the round (empty in personal mode: "
            "the clients keep their classifiers, so the server holds no client's model)",
        ),
        Column("loss", FLOAT, "", "server test loss of the set after the round (empty likewise)"),
        Column(
            "val_accuracy",
            FLOAT,
            "",
            "server validation accuracy of the set after the round (data.validation_fraction "
            "of the held-out examples, disjoint from the test set): what selection reads",
        ),
        Column(
            "val_loss",
            FLOAT,
            "",
            "server validation loss of the set after the round (what loss-aware allocates by)",
        ),
        Column(
            "client_accuracy",
            FLOAT,
            "",
            "evaluating clients' accuracy on the examples they held out of their training "
            "(data.client_holdout), weighted by examples; in personal mode each client's "
            "own model, the set's body with its own classifier (empty when none evaluated)",
        ),
        Column("client_loss", FLOAT, "", "the same clients' loss, weighted by examples"),
        Column(
            "train_loss",
            FLOAT,
            "",
            "aggregated clients' task loss (without a proximal term) in their last local "
            "epoch, weighted by examples",
        ),
        Column("num_clients", COUNT, "clients", "replies aggregated"),
        Column("num_sent", COUNT, "clients", "clients sent the weight set (retries not counted)"),
        Column(
            "num_unfilled",
            COUNT,
            "clients",
            "places of the round's sample left empty because too few clients were online "
            "(the sample's size minus the online clients found; the same on every set's "
            "row of a synchronous round); 0 for async and fedbuff, which wait for a free "
            "online client instead",
        ),
        Column("num_examples", COUNT, "examples", "training examples of the aggregated replies"),
        Column(
            "train_s",
            FLOAT,
            "sim. s",
            "duration from sending the group its weights to its last counted reply "
            "(or the deadline)",
        ),
        Column(
            "aggregate_s",
            FLOAT,
            "sim. s",
            "the server's aggregation time for the round's updates (on its cores)",
        ),
        Column(
            "aggregate_wall_s",
            FLOAT,
            "host s",
            "the same aggregations' time on this host (the executor's)",
        ),
        Column("group_start_s", FLOAT, "sim. s", "when the group was sent its weights"),
        Column("group_end_s", FLOAT, "sim. s", "when the group's new weights were ready"),
        Column(
            "round_wall_s",
            FLOAT,
            "host s",
            "host seconds of the run since the weight set's previous round ended (or the run "
            "started); after a resume, not counting the time between checkpoint and resume",
        ),
        Column("elapsed_wall_s", FLOAT, "host s", "host seconds since the run started"),
        Column("round_sim_s", FLOAT, "sim. s", "duration of the round"),
        Column("sim_time_s", FLOAT, "sim. s", "when the round ended"),
        Column(
            "idle_s",
            FLOAT,
            "sim. s",
            "time in a round over every weight set in which the server aggregated "
            "nothing (empty for one set's round in async mode)",
        ),
        Column("bytes_down", COUNT, "bytes", "weights sent to the round's training clients"),
        Column("bytes_up", COUNT, "bytes", "updates the round's training clients sent"),
    ],
)

CLIENTS = Table(
    "clients.csv",
    [
        *RUN_KEYS,
        _key(
            "round",
            INT,
            "the round of the records the message belongs to (as in rounds.csv); fedbuff: "
            "the server step that used its update, or for an update not used, the first "
            "step after its outcome (an unused one: the last step)",
        ),
        Column(
            "sent_round",
            COUNT,
            "",
            "the round the message was sent in (fedbuff: the step its weights lead to, "
            "their version + 1); equal to round for every other strategy",
        ),
        _key("phase", TEXT, "train or evaluate"),
        _key("client", INT, "the client's id (its data partition)"),
        _key("weight_set", TEXT, "the weight set the client was sent"),
        Column("attempt", COUNT, "", "0 for a round's first try, 1 for its first retry, ..."),
        Column(
            "num_examples",
            COUNT,
            "examples",
            "distinct examples the update was computed from (its weight), or evaluated on; "
            "empty, as are examples_run, train_measured_s and loss, for an error reply, for "
            "a reply that never came (a hang, a lost reply) and for a try given up on before "
            "its download ended on the simulated clock",
        ),
        Column(
            "examples_run",
            COUNT,
            "examples",
            "examples in the batches the client ran (its modelled compute)",
        ),
        Column(
            "train_measured_s",
            FLOAT,
            "host s",
            "the client's training time where it ran: its thread's CPU time (on a GPU, "
            "the wall time between device synchronisations)",
        ),
        Column(
            "loss",
            FLOAT,
            "",
            "the client's task loss (last local epoch, without a proximal term; or evaluation)",
        ),
        Column(
            "accuracy",
            FLOAT,
            "",
            "the client's evaluation accuracy on its held-out examples (empty when it "
            "evaluated none: num_examples 0)",
        ),
        Column(
            "status",
            NOTE,
            "",
            "ok; retried or failed (an error reply); timeout (no reply within "
            "faults.round_timeout_s, simulated) or late (past stragglers.deadline_s); "
            "lost (the host stopped waiting, simulation.reply_timeout_s, host seconds); "
            "unused (the run ended while the update was in flight or in a buffer)",
        ),
        Column(
            "aggregated",
            FLAG,
            "",
            "this try's update was in the list handed to the aggregation that changed its "
            "weight set (a group's, or a fedbuff step's); empty for evaluation",
        ),
        Column("error", NOTE, "", "why a try failed (first line of the client's error)"),
        Column(
            "straggler",
            FLAG,
            "",
            "flagged: its estimated round trip exceeds stragglers.threshold x the median",
        ),
        Column("local_epochs", FLOAT, "epochs", "local epochs the client was asked to run"),
        Column(
            "staleness",
            COUNT,
            "updates",
            "server updates of its weight set between the weights it was sent and its "
            "reply's arrival (what fedbuff discounts; 0 where a group trains the current "
            "weights); empty for a reply that does not count",
        ),
        Column("bytes_down", COUNT, "bytes", "weights the client received"),
        Column("bytes_up", COUNT, "bytes", "update the client sent"),
        Column(
            "download_s",
            FLOAT,
            "sim. s",
            "duration of the download (sharing the server's uplink with the others)",
        ),
        Column("compute_s", FLOAT, "sim. s", "duration of the local training"),
        Column(
            "upload_s",
            FLOAT,
            "sim. s",
            "duration of the upload (sharing the server's downlink with the others)",
        ),
        Column(
            "rtt_s",
            FLOAT,
            "sim. s",
            "from this try's start to its reply (latency included), or to when the "
            "server gave up on it",
        ),
        Column(
            "offset_s",
            FLOAT,
            "sim. s",
            "from the job's start to this try's (earlier failed tries, a busy client)",
        ),
        Column("sim_start_s", FLOAT, "sim. s", "when this try started"),
        Column(
            "sim_end_s",
            FLOAT,
            "sim. s",
            "when its reply (or error) reached the server, or the server gave up on it",
        ),
    ],
)

SERVER = Table(
    "server.csv",
    [
        *RUN_KEYS,
        _key("round", INT, "the round of the aggregated group"),
        _key("weight_set", TEXT, "the weight set aggregated"),
        Column(
            "busy_start_s",
            FLOAT,
            "sim. s",
            "when a server core started the aggregation (after any wait for one)",
        ),
        Column("busy_end_s", FLOAT, "sim. s", "when it ended"),
    ],
)

TABLES = {table.file: table for table in (ROUNDS, CLIENTS, SERVER)}


def is_empty(value: Any) -> bool:
    """Whether a cell holds nothing (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def markdown() -> str:
    """Every table's columns as Markdown, as the README shows them."""
    return "\n\n".join(f"`{table.file}`\n\n{table.markdown()}" for table in TABLES.values())


if __name__ == "__main__":
    print(markdown())
