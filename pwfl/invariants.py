"""The run checker: what a run's records must satisfy, whatever its config.

Usage::

    problems = check_run("results/runs/tiny-pwfl-seed0")   # [] when every invariant holds
    assert_valid("results/runs/tiny-pwfl-seed0")            # AssertionError listing them
    pwfl check results/runs/tiny-pwfl-seed0                 # the same on the command line

Each invariant follows from the definitions of the columns in
:mod:`pwfl.schema` (and of the config keys in :mod:`pwfl.config`), never from
the engine's code: the checker reads only the run folder (``rounds.csv``,
``clients.csv``, ``server.csv``, ``summary.json``, ``config.toml``) and prices
round trips with the clock's pure functions (:mod:`pwfl.clock`), which are
themselves tested against closed forms. ``INVARIANTS`` names and explains each
one; a :class:`Violation` names the run, the invariant and the offending rows.

Why one module of about 680 lines: one checker holds every invariant, so that
a reader finds all of them in one place and every test calls the same function;
each invariant is a small generator of its own below, in the order of the
schema's tables.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pwfl.clock import compute_seconds, idle_time, transfer_seconds
from pwfl.config import Config, recorded_config_from_toml
from pwfl.errors import PwflError
from pwfl.measures import first_reaching, total_bytes
from pwfl.schema import CLIENTS, MERGED, ROUNDS, SERVER

INVARIANTS = {
    "counted": "a (round, weight set)'s ok replies are its num_clients (none when it missed "
    "quorum), their examples its num_examples",
    "counted-total": "the run's ok replies of rounds that updated their set add up to the "
    "sum of num_clients",
    "aggregated": "every try passed to aggregation has status ok, and a (round, set)'s "
    "aggregated tries are exactly its counted ones (clients.csv column aggregated)",
    "sent": "num_sent is the number of first tries (attempt 0) of the (round, set)",
    "quorum": "a (round, set) is ok exactly when ceil(faults.quorum x num_sent) (at least "
    "one) replies count",
    "no-overlap": "a client's tries never overlap on the simulated clock",
    "staleness": "staleness is empty for a reply that does not count, >= 0, and 0 where a "
    "group trains its set's current weights (every strategy but fedbuff)",
    "attempts": "a client's tries in a job are numbered 0, 1, ... consecutively, each retry "
    "after a retried try, at most faults.max_retries + 1 of them",
    "unheard": "a try given up on (late, timeout, unused) before its download ended on the "
    "simulated clock (download_s empty) holds none of the client's numbers (num_examples, "
    "examples_run, train_measured_s, loss)",
    "bytes": "rounds.csv bytes of a (round, set) are the sums over its clients.csv rows; only "
    "an ok try sends an update; every try of a set is sent the same weights",
    "bytes-total": "the run's bytes in rounds.csv are the sums over clients.csv",
    "round-trip": "rtt_s is sim_end_s - sim_start_s; download + compute + upload + latency "
    "is the round trip of an ok try, download + latency that of an error reply",
    "in-round": "a round's tries lie within the round on the simulated clock (so its length "
    "is at least every counted round trip)",
    "clock-order": "simulated times never go back: rounds in order, round ends "
    "non-decreasing, group and aggregation times inside their round",
    "idle": "idle_s is the round's length less the union of its aggregation intervals",
    "closed-form": "where the server's links cannot bind, every try's transfers and compute "
    "equal the clock's closed forms (bytes / link, FLOPs / throughput) for its device",
    "summary": "summary.json's numbers are what rounds.csv gives by their definitions",
}
"""Every invariant the checker holds a run to, by name."""

TOL = 1e-7
"""Absolute tolerance on simulated seconds (they are sums of float parts)."""
REL = 1e-9
SHOWN = 4
"""Offending rows named per violation; the rest are counted."""


@dataclass(frozen=True)
class Violation:
    """One invariant a run's records break, and where."""

    run: str
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.run}: {self.invariant}: {self.detail}"


@dataclass
class Records:
    """A run folder's tables, typed, and its config."""

    name: str
    cfg: Config
    rounds: pd.DataFrame
    """``rounds.csv`` rows of the weight sets (merged rows left out)."""
    merged: pd.DataFrame
    train: pd.DataFrame
    """``clients.csv`` training rows, with ``line``: their line in the file."""
    server: pd.DataFrame
    summary: dict[str, Any] | None

    @functools.cached_property
    def fedbuff(self) -> bool:
        """Whether each round is a server step that consumes replies sent before earlier
        steps (FedBuff, FedAsync), rather than the jobs sent for it."""
        from pwfl.strategies import policy_class

        return policy_class(self.cfg).rounds_are_steps

    @functools.cached_property
    def by_round(self) -> dict[tuple[int, str], pd.DataFrame]:
        """The training rows of each (round, weight set), by their ``round`` column."""
        groups = self.train.groupby(["round", "weight_set"], sort=False)
        return {(int(r), str(ws)): rows for (r, ws), rows in groups}


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a run folder (it holds ``config.toml`` and ``rounds.csv``)."""
    path = Path(path)
    return (path / "config.toml").is_file() and (path / ROUNDS.file).is_file()


def run_folders(path: str | Path) -> list[Path]:
    """The run folders of ``path``: itself, or those one level below (a comparison).

    Raises
    ------
    PwflError
        When ``path`` is neither a run folder nor holds any.
    """
    path = Path(path)
    if is_run(path):
        return [path]
    below = sorted(p for p in path.glob("*") if is_run(p)) if path.is_dir() else []
    if not below:
        what = "folder" if path.is_dir() else "folder (it does not exist)"
        raise PwflError(
            f"'{path}' is not a run {what}: a run folder holds config.toml and rounds.csv "
            "(pass a folder written by pwfl run or pwfl compare)"
        )
    return below


def load_records(run_dir: str | Path) -> Records:
    """Read a run folder's tables and config.

    Raises
    ------
    PwflError
        When the folder is not a run folder, or its config does not read back.
    """
    from pwfl.analysis.loading import typed

    path = Path(run_dir)
    if not is_run(path):
        run_folders(path)  # raises the one-line error
    cfg = recorded_config_from_toml((path / "config.toml").read_text())

    def read(table, types) -> pd.DataFrame:
        file = path / table.file
        if not file.is_file() or not file.read_text().strip():
            return pd.DataFrame({name: pd.Series(dtype=t) for name, t in types.items()})
        return typed(pd.read_csv(file), types)

    rounds = read(ROUNDS, ROUNDS.dtypes())
    clients = read(CLIENTS, {**CLIENTS.dtypes(), "aggregated": "boolean"})
    clients = clients.assign(line=clients.index + 2)  # the header is line 1
    summary_file = path / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    merged = rounds["weight_set"] == MERGED
    return Records(
        name=str(path),
        cfg=cfg,
        rounds=rounds[~merged].reset_index(drop=True),
        merged=rounds[merged].reset_index(drop=True),
        train=clients[clients["phase"] == "train"].reset_index(drop=True),
        server=read(SERVER, SERVER.dtypes()),
        summary=summary,
    )


def check_run(run_dir: str | Path) -> list[Violation]:
    """Every invariant of ``INVARIANTS`` the run's records break.

    Parameters
    ----------
    run_dir
        A folder written by ``pwfl run`` (or one run of ``pwfl compare``).

    Returns
    -------
    list of Violation
        Empty when the records satisfy every invariant.

    Raises
    ------
    PwflError
        When ``run_dir`` is not a run folder.
    """
    records = load_records(run_dir)
    found = []
    for check in CHECKS:
        for invariant, detail in check(records):
            found.append(Violation(records.name, invariant, detail))
    return found


def assert_valid(run_dir: str | Path) -> None:
    """Raise ``AssertionError`` naming every invariant the run's records break."""
    found = check_run(run_dir)
    assert not found, "\n".join(str(v) for v in found)


# --- helpers ---------------------------------------------------------------------------

Found = Iterator[tuple[str, str]]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=TOL)


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:SHOWN])
    return shown + (f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _try(row: Any) -> str:
    return (
        f"clients.csv line {row.line} (round {row.round}, set {row.weight_set}, "
        f"client {row.client}, attempt {row.attempt})"
    )


def _key(row: Any) -> str:
    return f"round {row.round} set {row.weight_set}"


def _num(value: Any) -> float:
    return math.nan if value is None or pd.isna(value) else float(value)


def _rows_of(groups: dict[tuple[int, str], pd.DataFrame], row: Any) -> pd.DataFrame:
    return groups.get((int(row.round), str(row.weight_set)), _EMPTY)


_EMPTY = pd.DataFrame(
    {**{name: pd.Series(dtype=t) for name, t in CLIENTS.dtypes().items()}, "line": []}
)
"""The tries of a (round, set) that sent nobody (a group policy may leave a set empty)."""


def _updated(row: Any) -> bool:
    return row.status == "ok"


# --- the invariants --------------------------------------------------------------------


def _counted(records: Records) -> Found:
    groups = records.by_round
    bad = []
    for row in records.rounds.itertuples():
        tries = _rows_of(groups, row)
        ok = tries[tries["status"] == "ok"] if _updated(row) else tries.iloc[0:0]
        examples = int(ok["num_examples"].fillna(0).sum())
        if len(ok) != _num(row.num_clients) or examples != _num(row.num_examples):
            bad.append(
                f"{_key(row)} ({row.status}): {len(ok)} counted replies of {examples} "
                f"examples, num_clients {row.num_clients}, num_examples {row.num_examples}"
            )
    if bad:
        yield "counted", _listed(bad)
    # The same over the whole run, which no row-to-round key can get wrong.
    statuses = records.rounds[["round", "weight_set", "status"]].astype({"round": "int64"})
    joined = records.train.astype({"round": "int64"}).merge(
        statuses, on=["round", "weight_set"], how="left", suffixes=("", "_round")
    )
    if not records.fedbuff:
        total = int(((joined["status"] == "ok") & (joined["status_round"] == "ok")).sum())
    else:  # every reply is recorded with the step that consumes it, updated or not
        total = int((records.train["status"] == "ok").sum())
    expected = int(records.rounds["num_clients"].fillna(0).sum())
    if total != expected:
        yield "counted-total", f"{total} counted replies in clients.csv, num_clients sum {expected}"


def _aggregated(records: Records) -> Found:
    train = records.train
    if "aggregated" not in train or train["aggregated"].isna().all():
        return  # records written before the column existed
    flagged = train[train["aggregated"].fillna(False).astype(bool)]
    wrong = flagged[flagged["status"] != "ok"]
    if len(wrong):
        yield (
            "aggregated",
            _listed([f"{_try(r)} aggregated with status {r.status}" for r in wrong.itertuples()]),
        )
    groups = records.by_round
    bad = []
    for row in records.rounds.itertuples():
        tries = _rows_of(groups, row)
        counted = tries[tries["status"] == "ok"] if _updated(row) else tries.iloc[0:0]
        mine = tries[tries["aggregated"].fillna(False).astype(bool)]
        if set(mine["line"]) != set(counted["line"]):
            bad.append(
                f"{_key(row)}: aggregated clients.csv lines {sorted(mine['line'])}, "
                f"counted {sorted(counted['line'])}"
            )
    if bad:
        yield "aggregated", _listed(bad)


def _sent_and_quorum(records: Records) -> Found:
    from pwfl.quorum import has_quorum

    groups = records.by_round
    sent_bad, quorum_bad = [], []
    for row in records.rounds.itertuples():
        tries = _rows_of(groups, row)
        first = int((tries["attempt"] == 0).sum())
        if first != _num(row.num_sent):
            sent_bad.append(f"{_key(row)}: {first} first tries, num_sent {row.num_sent}")
        if records.fedbuff:
            continue  # a step's quorum is per reply, not per round
        ok = int((tries["status"] == "ok").sum())
        if has_quorum(records.cfg.faults.quorum, first, ok) != _updated(row):
            quorum_bad.append(f"{_key(row)}: {ok} of {first} replies ok, status {row.status}")
    if sent_bad:
        yield "sent", _listed(sent_bad)
    if quorum_bad:
        yield "quorum", _listed(quorum_bad)


def _no_overlap(records: Records) -> Found:
    bad = []
    ordered = records.train.sort_values(["sim_start_s", "sim_end_s"], kind="stable")
    for client, rows in ordered.groupby("client"):
        tries = list(rows.itertuples())
        reach = None
        for earlier, later in zip(tries, tries[1:], strict=False):
            reach = earlier if reach is None or earlier.sim_end_s > reach.sim_end_s else reach
            if later.sim_start_s < reach.sim_end_s - TOL and later.sim_end_s > later.sim_start_s:
                bad.append(
                    f"client {client}: {_try(later)} starts at {later.sim_start_s:.6g} s, "
                    f"before {_try(reach)} ends at {reach.sim_end_s:.6g} s"
                )
    if bad:
        yield "no-overlap", _listed(bad)


def _staleness(records: Records) -> Found:
    train = records.train
    ok = train["status"] == "ok"
    bad = [
        f"{_try(r)} {r.status} with staleness {r.staleness}"
        for r in train[~ok & train["staleness"].notna()].itertuples()
    ]
    counted = train[ok]
    bad += [
        f"{_try(r)} ok without staleness" for r in counted[counted["staleness"].isna()].itertuples()
    ]
    bad += [
        f"{_try(r)} staleness {r.staleness}" for r in counted[counted["staleness"] < 0].itertuples()
    ]
    if not records.fedbuff:
        stale = counted[counted["staleness"].fillna(0) != 0]
        bad += [
            f"{_try(r)} staleness {r.staleness} (the group trained its set's current weights)"
            for r in stale.itertuples()
        ]
    if bad:
        yield "staleness", _listed(bad)


def _attempts(records: Records) -> Found:
    limit = records.cfg.faults.max_retries
    bad = []
    ordered = records.train.sort_values(["sim_start_s", "attempt"], kind="stable")
    for _, rows in ordered.groupby(["round", "weight_set", "client"], sort=False):
        previous: Any = None
        for row in rows.itertuples():
            attempt = _num(row.attempt)
            follows = previous is not None and previous.status == "retried"
            if follows and attempt != _num(previous.attempt) + 1:
                bad.append(f"{_try(row)} after the retried {_try(previous)}")
            elif not follows and attempt != 0:
                bad.append(f"{_try(row)} is no first try and follows no retried try")
            if attempt > limit:
                bad.append(f"{_try(row)}: more than faults.max_retries = {limit} retries")
            previous = row
        if previous is not None and previous.status == "retried":
            bad.append(f"{_try(previous)} retried, but no retry follows")
    if bad:
        yield "attempts", _listed(bad)


def _unheard(records: Records) -> Found:
    train = records.train
    given_up = train["status"].isin(["late", "timeout", "unused"]) & train["download_s"].isna()
    numbers = ["num_examples", "examples_run", "train_measured_s", "loss"]
    held = given_up & train[numbers].notna().any(axis=1)
    bad = [f"{_try(r)} {r.status} before its download ended" for r in train[held].itertuples()]
    if bad:
        yield "unheard", _listed(bad)


def _bytes(records: Records) -> Found:
    groups = records.by_round
    train = records.train
    bad = []
    for row in records.rounds.itertuples():
        tries = _rows_of(groups, row)
        down, up = total_bytes(tries, "bytes_down"), total_bytes(tries, "bytes_up")
        if down != _num(row.bytes_down) or up != _num(row.bytes_up):
            bad.append(
                f"{_key(row)}: clients sum {down} down / {up} up, "
                f"rounds.csv {row.bytes_down} / {row.bytes_up}"
            )
    sent = train[(train["status"] != "ok") & (train["bytes_up"].fillna(0) != 0)]
    bad += [f"{_try(r)} {r.status} yet sent {r.bytes_up} bytes" for r in sent.itertuples()]
    for ws, rows in train.groupby("weight_set"):
        sizes = sorted(rows["bytes_down"].dropna().unique())
        if len(sizes) > 1:
            bad.append(f"set {ws}: its tries were sent {sizes} bytes (one model, one size)")
    if records.cfg.comm.compression == "none" and records.cfg.train.client_state != "personal":
        # An uncompressed update holds every array the client was sent.
        ok = train[(train["status"] == "ok") & (train["bytes_up"] != train["bytes_down"])]
        bad += [
            f"{_try(r)} sent {r.bytes_up} bytes for {r.bytes_down} received"
            for r in ok.itertuples()
        ]
    if bad:
        yield "bytes", _listed(bad)
    for column in ("bytes_down", "bytes_up"):
        total, recorded = total_bytes(train, column), total_bytes(records.rounds, column)
        if total != recorded:
            yield "bytes-total", f"{column}: clients.csv sum {total}, rounds.csv sum {recorded}"


def _profiles(records: Records) -> Any:
    from pwfl.devices import make_profiles

    cfg = records.cfg
    return make_profiles(cfg.clients, cfg.data.num_clients, cfg.seed)


def _round_trip(records: Records) -> Found:
    profiles = _profiles(records)
    bad = []
    for row in records.train.itertuples():
        rtt = _num(row.rtt_s)
        if not _close(rtt, _num(row.sim_end_s) - _num(row.sim_start_s)):
            bad.append(f"{_try(row)}: rtt_s {rtt:.9g} is not sim_end_s - sim_start_s")
        if _num(row.offset_s) < -TOL:
            bad.append(f"{_try(row)}: offset_s {row.offset_s} < 0")
        parts = [_num(row.download_s), _num(row.compute_s), _num(row.upload_s)]
        if any(p < -TOL for p in parts if not math.isnan(p)):
            bad.append(f"{_try(row)}: a negative part {parts}")
        latency = profiles[int(row.client)].latency_ms / 1000
        if row.status == "ok":
            total = sum(parts) + latency
            if math.isnan(total) or not _close(total, rtt):
                bad.append(
                    f"{_try(row)}: download + compute + upload + latency = {total:.9g} s, "
                    f"rtt_s {rtt:.9g}"
                )
        elif row.status in ("failed", "retried"):
            total = parts[0] + latency
            if math.isnan(total) or not _close(total, rtt) or not all(map(math.isnan, parts[1:])):
                bad.append(
                    f"{_try(row)} {row.status}: download + latency = {total:.9g} s, "
                    f"rtt_s {rtt:.9g}, compute/upload {parts[1:]}"
                )
        elif _num(row.download_s) > rtt + TOL:
            # Given up on: its download, if it ended, ended before. (Its compute is the
            # device's whole training, which may outlast the server's wait.)
            bad.append(f"{_try(row)} {row.status}: download_s {row.download_s:.9g} > rtt_s")
    if bad:
        yield "round-trip", _listed(bad)


def _in_round(records: Records) -> Found:
    groups = records.by_round
    bad = []
    for row in records.rounds.itertuples():
        end, length = _num(row.sim_time_s), _num(row.round_sim_s)
        tries = _rows_of(groups, row)
        # A fedbuff step consumes replies sent before its previous step: only their
        # arrival is bounded by the step.
        start = -math.inf if records.fedbuff else end - length
        outside = tries[(tries["sim_start_s"] < start - TOL) | (tries["sim_end_s"] > end + TOL)]
        bad += [
            f"{_try(r)} [{r.sim_start_s:.6g}, {r.sim_end_s:.6g}] s outside {_key(row)} "
            f"[{start:.6g}, {end:.6g}] s"
            for r in outside.itertuples()
        ]
    if bad:
        yield "in-round", _listed(bad)


def _clock_order(records: Records) -> Found:
    rounds = records.rounds
    bad = []
    ends = rounds["sim_time_s"].to_numpy()
    back = [i for i in range(1, len(ends)) if ends[i] < ends[i - 1] - TOL]
    bad += [f"rounds.csv line {i + 2} ends at {ends[i]:.6g} s, before the row above" for i in back]
    for ws, rows in rounds.groupby("weight_set"):
        numbers = rows["round"].tolist()
        if numbers != list(range(1, len(numbers) + 1)):
            bad.append(f"set {ws}: rounds {numbers} are not 1, 2, ... in order")
    for row in rounds.itertuples():
        start, end = _num(row.sim_time_s) - _num(row.round_sim_s), _num(row.sim_time_s)
        times = [_num(row.group_start_s), _num(row.group_end_s)]
        lower = -math.inf if records.fedbuff else start
        if start < -TOL or not (lower - TOL <= times[0] <= times[1] + TOL <= end + 2 * TOL):
            bad.append(
                f"{_key(row)}: round [{start:.6g}, {end:.6g}] s, group "
                f"[{times[0]:.6g}, {times[1]:.6g}] s"
            )
        if min(_num(row.train_s), _num(row.aggregate_s), _num(row.round_sim_s)) < -TOL:
            bad.append(f"{_key(row)}: a negative duration")
    ends_of = {(int(r.round), str(r.weight_set)): r for r in rounds.itertuples()}
    for row in records.server.itertuples():
        mine = ends_of.get((int(row.round), str(row.weight_set)))
        if mine is None:
            bad.append(f"server.csv line {row.Index + 2}: no {_key(row)} in rounds.csv")
            continue
        start = _num(mine.sim_time_s) - _num(mine.round_sim_s)
        lower = -math.inf if records.fedbuff else start
        if not lower - TOL <= row.busy_start_s <= row.busy_end_s <= _num(mine.sim_time_s) + TOL:
            bad.append(
                f"server.csv line {row.Index + 2}: busy [{row.busy_start_s:.6g}, "
                f"{row.busy_end_s:.6g}] s outside {_key(row)} ending at {mine.sim_time_s:.6g} s"
            )
    if bad:
        yield "clock-order", _listed(bad)


def _idle(records: Records) -> Found:
    bad = []
    for number, rows in records.rounds.groupby("round"):
        idle = rows["idle_s"].dropna()
        if idle.empty:
            continue
        end = float(rows["sim_time_s"].max())
        start = end - float(rows["round_sim_s"].max())
        busy = records.server[records.server["round"] == number]
        intervals = list(zip(busy["busy_start_s"], busy["busy_end_s"], strict=True))
        expected = idle_time(intervals, start, end)
        if not all(_close(value, expected) for value in idle):
            bad.append(
                f"round {number}: idle_s {sorted(set(idle))}, from server.csv {expected:.9g}"
            )
    if bad:
        yield "idle", _listed(bad)


def _links_cannot_bind(records: Records, profiles: Any) -> bool:
    """Whether every transfer runs at its client's own bandwidth: the server's link in
    each direction carries even all clients' full bandwidths at once."""
    cfg = records.cfg
    clients = sorted(records.train["client"].unique())
    down = sum(profiles[int(c)].down_mbps for c in clients)
    up = sum(profiles[int(c)].up_mbps for c in clients)
    return down <= cfg.server.up_mbps and up <= cfg.server.down_mbps


def _closed_form(records: Records) -> Found:
    cfg = records.cfg
    if cfg.clock.compute != "modelled" or records.train.empty:
        return
    profiles = _profiles(records)
    if not _links_cannot_bind(records, profiles):
        return
    flops = _flops_per_set(cfg)
    bad = []
    for row in records.train.itertuples():
        device = profiles[int(row.client)]
        expected = {
            "download_s": transfer_seconds(int(row.bytes_down), device.down_mbps),
            "upload_s": transfer_seconds(int(_num(row.bytes_up) or 0), device.up_mbps),
        }
        if not pd.isna(row.examples_run):
            expected["compute_s"] = compute_seconds(
                int(row.examples_run),
                flops[int(row.weight_set)],
                cfg.clock.reference_gflops,
                device.speed,
            )
        parts = ["download_s"] if row.status in ("failed", "retried") else []
        if row.status == "ok":
            parts = ["download_s", "compute_s", "upload_s"]
        for part in parts:
            value = _num(getattr(row, part))
            closed = expected.get(part, math.nan)
            if not _close(value, closed):
                bad.append(f"{_try(row)}: {part} {value:.9g}, closed form {closed:.9g}")
    if bad:
        yield "closed-form", _listed(bad)


def _flops_per_set(cfg: Config) -> dict[int, float]:
    """Each weight set's training FLOPs per example, as the model's counter gives them."""
    from pwfl import training
    from pwfl.apps.settings import train_settings
    from pwfl.strategies import build_policy

    sets = build_policy(cfg).num_weight_sets
    counted: dict[str, float] = {}
    flops = {}
    for ws in range(sets):
        settings = train_settings(cfg.for_set(ws))
        key = f"{settings.model}/{settings.batch_size}"
        if key not in counted:
            counted[key] = training.flops_per_example(settings)
        flops[ws] = counted[key]
    return flops


def _summary(records: Records) -> Found:
    summary = records.summary
    if summary is None or records.rounds.empty:
        return
    targets = records.cfg.targets()
    bad = []

    def compare(where: str, name: str, expected: float) -> None:
        value = _num(where_dict(where).get(name))
        same = (math.isnan(value) and math.isnan(expected)) or _close(value, expected)
        if not same:
            bad.append(f"{where}.{name} = {value:.9g}, rounds.csv gives {expected:.9g}")

    def where_dict(where: str) -> dict[str, Any]:
        value = summary.get(where)
        return value if isinstance(value, dict) else {}

    finals = []
    for ws, rows in records.rounds.groupby("weight_set"):
        rows = rows.sort_values("round")
        acc = rows["accuracy"].astype("float64")
        target = targets[str(ws)] if isinstance(targets, dict) else targets
        reached = rows[acc >= target]
        finals.append(float(acc.iloc[-1]))
        compare(str(ws), "rounds", float(rows["round"].max()))
        compare(str(ws), "final_accuracy", float(acc.iloc[-1]))
        compare(str(ws), "best_accuracy", float(acc.max()))
        compare(str(ws), "reached", float(len(reached) > 0))
        compare(str(ws), "rounds_to_target", first_reaching(rows, target, "round"))
        compare(str(ws), "total_sim_time_s", float(rows["sim_time_s"].max()))
        compare(str(ws), "total_bytes_up", float(total_bytes(rows, "bytes_up")))
        compare(str(ws), "total_bytes_down", float(total_bytes(rows, "bytes_down")))
    compare("all", "sets", float(len(finals)))
    compare("all", "final_accuracy", sum(finals) / len(finals))
    compare("all", "best_of_k_final_accuracy", max(finals))
    compare("all", "total_sim_time_s", float(records.rounds["sim_time_s"].max()))
    compare("all", "total_bytes_up", float(total_bytes(records.rounds, "bytes_up")))
    if len(records.merged):
        last = records.merged.sort_values("round")["accuracy"].iloc[-1]
        compare("all", "merged_final_accuracy", float(last))
    if bad:
        yield "summary", _listed(bad)


CHECKS = [
    _counted,
    _aggregated,
    _sent_and_quorum,
    _no_overlap,
    _staleness,
    _attempts,
    _unheard,
    _bytes,
    _round_trip,
    _in_round,
    _clock_order,
    _idle,
    _closed_form,
    _summary,
]
"""The checks :func:`check_run` runs, in order; each yields (invariant, detail) pairs."""
