"""Checkpoints: what a killed run needs to continue to the numbers it would have reached.

A server checkpoint (``checkpoint.npz`` in the run folder) holds the weight
sets, the round, the strategy's state (straggler estimates, server-optimiser
moments, the simulated clock, the quorum streak), the resolved config, and for
each record file (``rounds.csv``, ``clients.csv``, ``server.csv``) not its rows
but its mark (:class:`pwfl.records.FileMark`): how many rows and bytes of it
belong to this state, and their digest. The files are appended to after every
round; a resume cuts each back to its mark, so a checkpoint's size does not grow
with the rows. Random choices need no saved generator state: each is drawn
from ``(seed, purpose, round, client)``, so knowing the round is enough.

Clients that keep state between rounds (``train.client_state``) write it after
each of their rounds under ``client_state/<client>/set-<k>/round-<r>.npz``, one
folder per weight set; on resume a client starts from its newest file not later
than the server checkpoint.

Every file is written to a temporary name and renamed, so a run killed while
writing leaves the previous checkpoint intact. Arrays and a JSON header go in
one ``.npz``, read without pickle.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pwfl import __version__
from pwfl.callbacks import RoundRecord
from pwfl.config import Config, config_from_toml
from pwfl.errors import ConfigError, PwflError
from pwfl.records import FileMark, atomic_savez

FORMAT_VERSION = 5  # 5: round wall-time marks, the update-failure streak in the engine
CHECKPOINT_FILE = "checkpoint.npz"
CLIENT_STATE_DIR = "client_state"
_HEADER = "__header__"
_ROUND_FILE = re.compile(r"round-(\d+)\.npz$")

Arrays = dict[str, np.ndarray]


class CheckpointError(PwflError):
    """A checkpoint that is missing, corrupt, or written by an incompatible version."""


@dataclass
class Checkpoint:
    """One run's state after ``round`` of ``num_rounds`` rounds."""

    round: int
    num_rounds: int
    label: str
    config_toml: str
    strategy: dict[str, Any] = field(default_factory=dict)
    """The run's own state (clocks, estimates, the strategy's), as JSON-able values."""
    arrays: Arrays = field(default_factory=dict)
    """The run's arrays (weight sets, optimiser moments) by key."""
    files: dict[str, FileMark] = field(default_factory=dict)
    """Record file name -> how much of it belongs to this state (rows, bytes, digest)."""

    @property
    def config(self) -> Config:
        """The run's resolved configuration."""
        return config_from_toml(self.config_toml)


class Checkpointable(Protocol):
    """A run (the round engine) whose state can be saved and restored."""

    checkpoint_round: int

    def checkpoint_state(self) -> tuple[dict[str, Any], Arrays]:
        """The run's state: JSON-able values and named arrays."""
        ...

    def quiet(self) -> bool:
        """Whether nothing is in flight (a checkpoint can be taken)."""
        ...


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):  # numpy scalars in the run's state
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    header = {
        "format": FORMAT_VERSION,
        "pwfl_version": __version__,
        "round": ckpt.round,
        "num_rounds": ckpt.num_rounds,
        "label": ckpt.label,
        "config": ckpt.config_toml,
        "strategy": ckpt.strategy,
        "files": {name: mark.to_json() for name, mark in ckpt.files.items()},
    }
    payload = {_HEADER: np.array(json.dumps(header, default=_to_json))}
    payload.update(ckpt.arrays)
    atomic_savez(path, payload)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        When the file is missing, unreadable, truncated, of another format
        version, or holds an invalid config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at '{path}': pass a folder written by pwfl run with "
            "checkpoint.every > 0 (runs in async mode write none)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data[_HEADER]))
            arrays = {key: data[key] for key in data.files if key != _HEADER}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt or truncated ({type(err).__name__}); "
            "start the run again with pwfl run --overwrite"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        found = header.get("format") if isinstance(header, dict) else None
        written_by = header.get("pwfl_version", "?") if isinstance(header, dict) else "?"
        raise CheckpointError(
            f"checkpoint '{path}' has format {found!r} (written by pwfl {written_by}); this "
            f"pwfl {__version__} reads format {FORMAT_VERSION}: resume it with the version "
            "that wrote it, or start again with pwfl run --overwrite"
        )
    try:
        ckpt = Checkpoint(
            round=int(header["round"]),
            num_rounds=int(header["num_rounds"]),
            label=str(header["label"]),
            config_toml=str(header["config"]),
            strategy=dict(header["strategy"]),
            arrays=arrays,
            files={k: FileMark.from_json(v) for k, v in header["files"].items()},
        )
        ckpt.config  # noqa: B018 - validates the stored config now, not mid-resume
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise CheckpointError(f"checkpoint '{path}' holds an invalid config: {err}") from None
        raise CheckpointError(
            f"checkpoint '{path}' is incomplete ({type(err).__name__}: {err}); "
            "start the run again with pwfl run --overwrite"
        ) from None
    return ckpt


class Checkpointer:
    """A callback that saves the run after every ``every`` rounds and after the last one."""

    def __init__(
        self,
        path: str | Path,
        cfg: Config,
        label: str,
        engine: Checkpointable,
        records: Any,
    ):
        self.path = Path(path)
        self.cfg = cfg
        self.label = label
        self.engine = engine
        self.records = records
        """The recorder: its ``marks()`` say how far each record file is written."""

    def on_run_start(self, total_rounds: int, done: int) -> None:
        """Nothing to save before the first round."""

    def due(self, server_round: int) -> bool:
        """Whether a checkpoint is written after ``server_round``."""
        every, last = self.cfg.checkpoint.every, self.cfg.strategy.num_rounds
        return every > 0 and (server_round % every == 0 or server_round == last)

    def on_round_end(self, record: RoundRecord) -> None:
        """Save the run if this round is due and nothing is in flight.

        With a deadline, a round can end while a client of it is still given up
        on: the round is then skipped, and a resume starts from the one before
        (it reproduces the same run: nothing depends on when it was saved).
        """
        if not self.due(record.server_round) or not self.engine.quiet():
            return
        state, arrays = self.engine.checkpoint_state()
        save_checkpoint(
            self.path,
            Checkpoint(
                round=record.server_round,
                num_rounds=self.cfg.strategy.num_rounds,
                label=self.label,
                config_toml=self.cfg.to_toml(),
                strategy=state,
                arrays=arrays,
                files=self.records.marks(),
            ),
        )
        self.engine.checkpoint_round = record.server_round

    def on_run_end(self) -> None:
        """Nothing to do: the last round is always checkpointed."""


# --- client-side state -----------------------------------------------------------


def _state_folder(directory: str | Path, client: int, weight_set: int) -> Path:
    return Path(directory) / str(client) / f"set-{weight_set}"


def save_client_state(
    directory: str | Path, client: int, server_round: int, local: Arrays, weight_set: int = 0
) -> None:
    """Save what client ``client`` keeps for ``weight_set`` after ``server_round``, atomically."""
    path = _state_folder(directory, client, weight_set) / f"round-{server_round}.npz"
    atomic_savez(path, dict(local))


def client_state_rounds(directory: str | Path, client: int, weight_set: int = 0) -> list[int]:
    """Rounds for which client ``client`` has saved state for ``weight_set``, ascending."""
    folder = _state_folder(directory, client, weight_set)
    if not folder.is_dir():
        return []
    found = (_ROUND_FILE.search(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def load_client_state(
    directory: str | Path, client: int, weight_set: int = 0
) -> tuple[int, Arrays] | None:
    """The newest saved state of client ``client`` for ``weight_set`` as ``(round, arrays)``."""
    rounds = client_state_rounds(directory, client, weight_set)
    if not rounds:
        return None
    path = _state_folder(directory, client, weight_set) / f"round-{rounds[-1]}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            return rounds[-1], {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"client state '{path}' is corrupt ({type(err).__name__}); delete it to let "
            "the client start afresh"
        ) from None


def prune_client_state(
    directory: str | Path, client: int, checkpoint_round: int, weight_set: int = 0
) -> None:
    """Delete files the server checkpoint can no longer need.

    A resume from ``checkpoint_round`` needs the newest file not later than it,
    and every later one; older files go. A negative ``checkpoint_round`` means
    the run writes no checkpoints: only the newest file is kept.
    """
    rounds = client_state_rounds(directory, client, weight_set)
    if checkpoint_round < 0:
        checkpoint_round = rounds[-1] if rounds else 0
    needed = [r for r in rounds if r <= checkpoint_round]
    if not needed:
        return
    folder = _state_folder(directory, client, weight_set)
    for r in rounds:
        if r < needed[-1]:
            (folder / f"round-{r}.npz").unlink(missing_ok=True)


def drop_client_state_after(directory: str | Path, server_round: int) -> None:
    """Delete client files written after ``server_round`` (by a run that was then killed)."""
    root = Path(directory)
    if not root.is_dir():
        return
    for path in root.glob("*/set-*/round-*.npz"):
        found = _ROUND_FILE.search(path.name)
        if found and int(found.group(1)) > server_round:
            path.unlink(missing_ok=True)
