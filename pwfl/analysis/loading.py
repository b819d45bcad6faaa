"""Run and comparison folders read into typed DataFrames."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pwfl import schema
from pwfl.analysis.summaries import summarize_comparison, summarize_runs
from pwfl.config import StrategyConfig
from pwfl.schema import COUNT, TEXT

# Column types of the run tables, from their schema. Columns a table does not
# declare (files written by an older pwfl) are read as float64 when numeric.
ROUND_TYPES = schema.ROUNDS.dtypes()
CLIENT_TYPES = schema.CLIENTS.dtypes()
SERVER_TYPES = schema.SERVER.dtypes()


def typed(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Cast a run table's columns to their types.

    Parameters
    ----------
    frame
        A table as ``pd.read_csv`` returns it.
    types
        Column -> dtype for identifiers, counts and flags (``ROUND_TYPES``,
        ``CLIENT_TYPES``, ``SERVER_TYPES``). Other numeric columns become
        float64; other columns are kept as read.

    Returns
    -------
    pandas.DataFrame
        The same rows and columns, typed.
    """
    casts: dict[str, Any] = {}
    for column in frame.columns:
        dtype = types.get(column)
        series = frame[column]
        if (
            dtype is None
            and pd.api.types.is_numeric_dtype(series)
            and not pd.api.types.is_bool_dtype(series)
        ):
            dtype = "float64"
        if dtype == TEXT and pd.api.types.is_float_dtype(series):
            # A weight-set column with gaps is read as float ("0.0"); go through Int64.
            frame = frame.assign(**{column: series.astype(COUNT)})
        if dtype is not None:
            casts[column] = dtype
    return frame.astype(casts)


def _tables(path: Path, name: str) -> list[Path]:
    return [path / name] if (path / name).is_file() else sorted(path.glob(f"*/{name}"))


def _read(path: str | Path, name: str, types: dict[str, str]) -> pd.DataFrame:
    path = Path(path)
    files = _tables(path, name)
    if not files:
        raise FileNotFoundError(f"no {name} in '{path}' or its run folders")
    return typed(pd.concat([pd.read_csv(f) for f in files], ignore_index=True), types)


def load_rounds(path: str | Path) -> pd.DataFrame:
    """Read ``rounds.csv`` of a run, or ``comparison.csv`` of a comparison directory.

    Parameters
    ----------
    path
        A folder written by ``pwfl run`` or ``pwfl compare``.

    Returns
    -------
    pandas.DataFrame
        One row per run, round and weight set, typed by ``ROUND_TYPES``
        (``weight_set`` is text: ``"0"``, ``"1"``, ... or ``"merged"``).

    Raises
    ------
    FileNotFoundError
        When the folder holds neither file.
    """
    path = Path(path)
    for name in ("comparison.csv", "rounds.csv"):
        if (path / name).is_file():
            return typed(pd.read_csv(path / name), ROUND_TYPES)
    raise FileNotFoundError(f"no comparison.csv or rounds.csv in '{path}'")


def load_clients(path: str | Path) -> pd.DataFrame:
    """Read ``clients.csv`` of a run, or of every run folder of a comparison.

    Parameters
    ----------
    path
        A run folder, or a comparison folder whose run folders hold the file.

    Returns
    -------
    pandas.DataFrame
        One row per client message, typed by ``CLIENT_TYPES``.

    Raises
    ------
    FileNotFoundError
        When no ``clients.csv`` is found.
    """
    return _read(path, "clients.csv", CLIENT_TYPES)


def load_server(path: str | Path) -> pd.DataFrame:
    """Read ``server.csv`` (aggregation intervals) of a run or of every run in a comparison.

    Parameters
    ----------
    path
        A run folder, or a comparison folder whose run folders hold the file.

    Returns
    -------
    pandas.DataFrame
        One row per aggregation on the simulated clock, typed by ``SERVER_TYPES``.

    Raises
    ------
    FileNotFoundError
        When no ``server.csv`` is found.
    """
    return _read(path, "server.csv", SERVER_TYPES)


def target_accuracy(path: str | Path) -> float | dict[str, float]:
    """The target accuracy the runs in ``path`` were configured with.

    Read from the ``config.toml`` of the run (or of the first run folder of a
    comparison); without one, the default of ``strategy.target_accuracy``.

    Parameters
    ----------
    path
        A run or comparison folder.

    Returns
    -------
    float or dict
        The accuracy whose first crossing the summaries report, or weight set ->
        its own when the sets' ``[[weight_set]]`` tables give them different ones
        (:meth:`pwfl.config.Config.targets`).
    """
    from pwfl.config import recorded_config_from_toml
    from pwfl.errors import ConfigError

    path = Path(path)
    for config in _tables(path, "config.toml"):
        text = config.read_text()
        try:
            return recorded_config_from_toml(text).targets()
        except ConfigError:  # e.g. a trace file the folder's machine had: the key alone
            return float(tomllib.loads(text)["strategy"]["target_accuracy"])
    return StrategyConfig().target_accuracy


def _same_runs(table: pd.DataFrame, rounds: pd.DataFrame) -> pd.DataFrame:
    # A comparison folder can keep run folders of an earlier comparison: keep the
    # rows of the runs that comparison.csv lists, in its order (the folders are
    # read in alphabetical order).
    runs = rounds[["strategy", "seed"]].drop_duplicates()
    return runs.merge(table, on=["strategy", "seed"])


@dataclass(frozen=True, eq=False)
class Results:
    """The tables of one run or one comparison.

    ``clients`` and ``server`` are ``None`` when the run folders are absent
    (a comparison folder checked in with only ``comparison.csv``).
    """

    path: Path
    rounds: pd.DataFrame
    clients: pd.DataFrame | None
    server: pd.DataFrame | None
    target: float | Mapping[str, float]

    def runs(self) -> pd.DataFrame:
        """One row of headline numbers per run; see :func:`summarize_runs`."""
        return summarize_runs(self.rounds, self.target, self.clients, self.server)

    def summary(self) -> pd.DataFrame:
        """Mean and std over seeds per strategy; see :func:`summarize_comparison`."""
        return summarize_comparison(self.rounds, self.target, self.clients, self.server)


def load_results(path: str | Path, target: float | Mapping[str, float] | None = None) -> Results:
    """Load a run or comparison folder into typed DataFrames.

    Parameters
    ----------
    path
        A folder written by ``pwfl run`` or ``pwfl compare``.
    target
        Accuracy target for the summaries; ``None`` reads it from the runs'
        ``config.toml`` (:func:`target_accuracy`).

    Returns
    -------
    Results
        ``rounds`` always; ``clients`` and ``server`` where the files exist,
        restricted to the runs in ``rounds``.
    """
    path = Path(path)
    rounds = load_rounds(path)
    try:
        clients = _same_runs(load_clients(path), rounds)
        server = _same_runs(load_server(path), rounds)
    except FileNotFoundError:
        clients = server = None
    return Results(
        path=path,
        rounds=rounds,
        clients=clients,
        server=server,
        target=target_accuracy(path) if target is None else target,
    )


def repo_root(start: str | Path | None = None) -> Path:
    """The repository folder at or above ``start``.

    Notebooks run with the working directory ``notebooks/``; they find
    ``experiments/`` and ``results/`` from here instead of hard-coded paths.

    Parameters
    ----------
    start
        Where to begin looking; default the working directory.

    Returns
    -------
    pathlib.Path
        The first folder holding ``pyproject.toml`` and ``experiments/configs``.

    Raises
    ------
    FileNotFoundError
        When no parent folder is the repository.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "experiments" / "configs").is_dir():
            return folder
    raise FileNotFoundError(f"'{here}' is not inside the pwfl repository")
