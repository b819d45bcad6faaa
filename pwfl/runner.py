"""Run one experiment in-process on Flower's simulation engine with one shared Ray session.

``run_simulation`` is used rather than ``flwr run`` because a research runner
wants the results in this process, the config object handed straight to the
apps, and one Ray session that Flower's client actors and PWFL's aggregation
tasks share (Flower's backend reuses a session that is already up).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from pwfl.callbacks import Callback
from pwfl.checkpoint import CLIENT_STATE_DIR, Checkpoint
from pwfl.config import Config
from pwfl.errors import PwflError


def start_ray(cfg: Config, verbose: bool = False) -> None:
    """Start the run's Ray session once, before Flower or PWFL's executor needs it."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    if ray.is_initialized():
        return
    if cfg.simulation.ray_address:
        # Joining a cluster: its size and system settings are the cluster's own
        # (ray.init raises when given num_cpus or _system_config here).
        ray.init(
            address=cfg.simulation.ray_address,
            logging_level=logging.INFO if verbose else logging.ERROR,
            log_to_driver=verbose,
        )
        return
    ray.init(
        # "local", not None: with None Ray joins the cluster of the last `ray start`
        # on this machine (even a stopped one) instead of starting a session.
        address="local",
        num_cpus=cfg.simulation.ray_cpus or None,
        include_dashboard=False,
        logging_level=logging.INFO if verbose else logging.ERROR,
        log_to_driver=verbose,
        # Ray kills task workers idle for more than 1 s once the client actors
        # fill its worker quota, so every round's aggregation tasks paid ~0.9 s
        # to start fresh Python processes (0.9-1.0 s against 0.03 s with warm
        # workers: experiments/bench_ray_task_latency.py). Keep them for the run.
        _system_config={"idle_worker_killing_time_threshold_ms": 600_000},
    )


def quiet_libraries(verbose: bool) -> None:
    """Keep Flower's and Ray's log lines (and the run_simulation deprecation) off screen."""
    level = logging.DEBUG if verbose else logging.ERROR
    for name in ("ray", "datasets", "filelock"):
        logging.getLogger(name).setLevel(level)
    # Flower logs every failing ClientApp with its traceback at ERROR level; with
    # fault injection that is dozens per round. The reason of each is in
    # clients.csv (column ``error``), and --verbose shows them all.
    logging.getLogger("flwr").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    if not verbose:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="ray")


def prepare_data(cfg: Config) -> None:
    """Check what can fail before any process starts, and cache the client split.

    The data set is loaded and split (the client processes then read the cached
    split instead of redoing it), the device profiles drawn (a bad trace file
    fails here) and the aggregator resolved (an unknown dotted path fails here).
    """
    from pwfl.clock import make_profiles
    from pwfl.data import partition_indices, server_test_data
    from pwfl.strategies import aggregator_from_config

    server_test_data(cfg.data, cfg.seed)
    partition_indices(cfg.data, cfg.seed)
    make_profiles(cfg.clients, range(cfg.data.num_clients), cfg.seed)
    if cfg.strategy.name != "fedavg":
        aggregator_from_config(cfg)


def run_experiment(
    cfg: Config,
    out_dir: str | Path,
    quiet: bool = False,
    verbose: bool = False,
    label: str | None = None,
    resume: Checkpoint | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Run one experiment and write ``rounds.csv``, ``clients.csv``, ``config.toml``,
    ``summary.json``, ``checkpoint.npz`` and ``final_weights.npz`` into ``out_dir``;
    return the summary.

    ``label`` names the run in the tables (default: the strategy's name);
    ``resume`` continues the run saved in that checkpoint (``cfg`` must be its
    config); ``callbacks`` also watch the rounds (benchmarks time them).

    Raises
    ------
    PwflError
        When the run stopped early because every weight set kept missing quorum
        (its records are kept).
    """
    import json

    from flwr.simulation import run_simulation

    from pwfl.apps.client_app import make_client_app
    from pwfl.apps.server_app import make_server_app
    from pwfl.callbacks import Progress

    quiet_libraries(verbose)
    prepare_data(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start_ray(cfg, verbose)
    done = resume.round if resume is not None else 0
    watchers = list(callbacks) + (
        []
        if quiet
        else [
            Progress(
                cfg.strategy.num_rounds * (cfg.strategy.k if cfg.strategy.mode == "async" else 1),
                f"{label or cfg.strategy.name} seed {cfg.seed}",
                done=done,
            )
        ]
    )
    backend_config = {
        "client_resources": {
            "num_cpus": cfg.simulation.client_cpus,
            "num_gpus": cfg.simulation.client_gpus,
        },
    }
    run_simulation(
        server_app=make_server_app(cfg, out, watchers, label, resume),
        client_app=make_client_app(cfg, out / CLIENT_STATE_DIR),
        num_supernodes=cfg.data.num_clients,
        backend_config=backend_config,
        verbose_logging=verbose,
    )
    quiet_libraries(verbose)  # Flower resets its console handler level on each run
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        raise RuntimeError(f"the run ended without writing {summary_path}; rerun with --verbose")
    summary = json.loads(summary_path.read_text())
    if summary.get("stopped"):
        raise PwflError(summary["stopped"])
    return summary
