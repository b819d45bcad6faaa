"""Run one experiment in-process on Flower's simulation engine with one shared Ray session.

``run_simulation`` is used rather than ``flwr run`` because a research runner
wants the results in this process, the config object handed straight to the
apps, and one Ray session that Flower's client actors and PWFL's aggregation
tasks share (Flower's backend reuses a session that is already up).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pwfl import arithmetic
from pwfl.callbacks import Callback
from pwfl.checkpoint import CLIENT_STATE_DIR, Checkpoint
from pwfl.config import Config, check_single_run
from pwfl.errors import ConfigError, Interrupted, PwflError
from pwfl.extensions import is_dotted, search_path, working_dir_on_path

if TYPE_CHECKING:
    from flwr.clientapp import ClientApp

    from pwfl.apps.server_app import Outcome


def start_ray(cfg: Config, verbose: bool = False) -> None:
    """Start the run's Ray session once, before Flower or PWFL's executor needs it."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    if ray.is_initialized():
        return
    mode = cfg.reproducibility.arithmetic
    # Your code by dotted path (a model, an aggregator shipped to Ray tasks) is
    # imported from the working directory first in every worker, as in this process
    # (pwfl.extensions); on a cluster that holds where the nodes share this folder.
    user_path = {"PYTHONPATH": search_path()}
    if cfg.simulation.ray_address:
        # Joining a cluster: its size and system settings are the cluster's own
        # (ray.init raises when given num_cpus or _system_config here).
        ray.init(
            address=cfg.simulation.ray_address,
            # The cluster's workers were not started from this process: the kernel
            # pins travel with the job (a local session's workers inherit them).
            runtime_env={"env_vars": {**arithmetic.child_environment(mode), **user_path}},
            logging_level=logging.INFO if verbose else logging.ERROR,
            log_to_driver=verbose,
        )
        return
    ray.init(
        # "local", not None: with None Ray joins the cluster of the last `ray start`
        # on this machine (even a stopped one) instead of starting a session.
        address="local",
        num_cpus=cfg.simulation.ray_cpus or None,
        runtime_env={"env_vars": user_path},
        include_dashboard=False,
        logging_level=logging.INFO if verbose else logging.ERROR,
        log_to_driver=verbose,
        # Ray kills task workers idle for more than 1 s once the client actors
        # fill its worker quota, so every round's aggregation tasks paid ~0.9 s
        # to start fresh Python processes (0.9-1.0 s against 0.03 s with warm
        # workers: experiments/bench_ray_task_latency.py). Keep them for the run.
        _system_config={"idle_worker_killing_time_threshold_ms": 600_000},
    )


class RayStart:
    """The run's Ray session, started by :func:`start_ray` in a thread of its own.

    ``ray.init`` spends seconds waiting for Ray's own processes (its control store,
    the node's raylet and API server) to come up, and nothing of that needs this
    process: started first, it comes up while this process imports PyTorch and
    prepares the data. :meth:`wait` is called where the session is first needed.

    The thread lives as long as the session: Ray starts its daemons to die with the
    thread that started them (Linux's parent-death signal follows the thread, not
    the process), so a thread that ended after ``ray.init`` would take the session
    down with it. :meth:`release` lets it end once the session is shut down.
    """

    def __init__(self, cfg: Config, verbose: bool = False):
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._released = threading.Event()
        # A daemon: a run stopped by a second Ctrl-C is not held at exit by a start
        # still under way (Ray's processes die with this one).
        self._thread = threading.Thread(
            target=self._run, args=(cfg, verbose), name="pwfl-ray-start", daemon=True
        )
        self._thread.start()

    def _run(self, cfg: Config, verbose: bool) -> None:
        try:
            start_ray(cfg, verbose)
        except BaseException as err:  # handed to the thread that waits
            self._error = err
        finally:
            self._started.set()
        self._released.wait()

    def wait(self) -> None:
        """Block until the session is up; raise what ``ray.init`` raised, if anything."""
        self._started.wait()
        if self._error is not None:
            raise self._error

    def release(self) -> None:
        """Let the thread end: the session is shut down (Flower's backend does it when
        its simulation ends, :meth:`stop` otherwise)."""
        self._released.set()

    def stop(self) -> None:
        """Wait for the start to end, shut the session down, and :meth:`release`."""
        self._started.wait()
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            self.release()


def aggregation_executor(cfg: Config) -> str:
    """Where the run's aggregations go: ``strategy.executor``, except that on the inline
    backend (one machine: a cluster address needs the Ray backend) the ``ray`` executor
    aggregates in threads. The aggregation functions are the same, so are the records
    (only the host's ``aggregate_wall_s`` differs), and an inline run starts no Ray
    session: that start alone took longer than the rest of a small run's start-up."""
    if cfg.simulation.backend == "inline" and cfg.strategy.executor == "ray":
        return "threads"
    return cfg.strategy.executor


def needs_ray(cfg: Config) -> bool:
    """Whether the run starts a Ray session: Flower's simulation engine runs on one, and
    the ``ray`` executor's tasks share it; the inline backend needs none
    (:func:`aggregation_executor`)."""
    return cfg.simulation.backend == "ray"


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


NODE_BOUND_LIMIT = 5_000
"""Most clients a simulation binds one Flower node each: Flower 1.41's simulation
loop scans every stored message for every node every 0.1 s, so 10,000 nodes did not
get past their first query in five minutes here."""


def simulation_nodes(cfg: Config) -> int:
    """Flower nodes a simulation starts. Node binding: one per client. Pool binding:
    ``simulation.pool_size``, else as many as clients train at once (the clients
    sampled per round, or FedBuff's concurrency), with cohort messages at most as many
    as client processes run at once."""
    if cfg.simulation.client_binding == "node":
        if cfg.data.num_clients > NODE_BOUND_LIMIT:
            raise PwflError(
                f"simulation.client_binding = node starts one Flower node per client, and "
                f"{cfg.data.num_clients:,} clients is more than Flower's simulation handles "
                f"(at most {NODE_BOUND_LIMIT:,}); use simulation.client_binding = pool"
            )
        return cfg.data.num_clients
    if cfg.simulation.pool_size:
        return cfg.simulation.pool_size
    from pwfl.strategies import policy_class

    in_flight = policy_class(cfg).clients_in_flight(cfg)
    if cfg.simulation.messages == "client" or cfg.simulation.ray_address:
        return in_flight
    # A cohort message keeps its node busy for all its clients: more nodes than client
    # processes running at once would only queue, and each node is warmed up once.
    return max(1, min(in_flight, client_processes(cfg)))


def client_processes(cfg: Config) -> int:
    """How many clients run at once on this machine: its CPUs (or ``simulation.ray_cpus``)
    over ``simulation.client_cpus``, as Ray places the client actors."""
    cpus = cfg.simulation.ray_cpus or os.cpu_count() or 1
    return max(1, int(cpus // cfg.simulation.client_cpus))


def prepare_data(cfg: Config) -> None:
    """Check what can fail before any process starts, and cache the client split.

    Every weight set's model is built once on the data set's input shape (a model
    that does not take its examples fails here: the config's validation loads no
    PyTorch), the data set is loaded and split (the client processes then read the
    cached split instead of redoing it), the device profiles drawn (a bad trace file
    fails here), the policy built (an unknown aggregator path fails here) and your own
    model, data set and training step checked (:func:`check_user_code`).
    """
    from pwfl import data
    from pwfl.devices import make_profiles
    from pwfl.strategies import build_policy

    working_dir_on_path()
    data.check_inputs(cfg)
    for task_data, seed in {cfg.set_data(ws) for ws in range(len(cfg.weight_set))} or {
        (cfg.data, cfg.seed)
    }:
        data.prepare(task_data, seed)
    make_profiles(cfg.clients, cfg.data.num_clients, cfg.seed)
    build_policy(cfg)
    check_user_code(cfg)


def check_user_code(cfg: Config) -> None:
    """Fail in one line, naming the key, when a model, data set or training step given
    by dotted path does not load or does not fit: each set's model is built for the
    data set's examples and run on two made-up ones, which must give one output per
    class; the step is run on a made-up batch.

    Raises
    ------
    ConfigError
        Naming ``model.name``, ``train.augment`` or ``train.step``.
    """
    import torch

    from pwfl import training
    from pwfl.apps.settings import train_settings
    from pwfl.data import dataset_info
    from pwfl.models import build_model

    sets = [cfg.for_set(ws) for ws in range(len(cfg.weight_set))] or [cfg]
    for one in sets:
        name = one.model.name
        if not (is_dotted(name) or is_dotted(one.data.name)):
            continue  # both registered: the config's validation built it already
        info = dataset_info(one.data)
        fits = f"config key 'model.name' = {name!r} with data.name = {one.data.name!r}"
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                model = build_model(name, info.input_shape, info.num_classes).eval()
                out = model(torch.zeros(2, *info.input_shape))
        except ValueError as err:
            raise ConfigError(f"{fits}: {err}") from None
        except Exception as err:
            problem = " ".join(str(err).split())
            raise ConfigError(
                f"{fits}: the model fails on examples of shape {info.input_shape} "
                f"({type(err).__name__}: {problem})"
            ) from None
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        if shape != (2, info.num_classes):
            raise ConfigError(
                f"{fits}: the model gives {shape} for 2 examples, not (2, {info.num_classes}) "
                "(one output per class)"
            )
    for one in sets:
        info = dataset_info(one.data)
        if one.train.augment and not info.images:
            raise ConfigError(
                f"config key 'train.augment' = true: augmentation rotates images; data.name = "
                f"{one.data.name!r} has examples of shape {info.input_shape}"
            )
    if cfg.train.step:
        settings = train_settings(cfg)
        try:
            training.check_step(replace(settings, step=cfg.train.step))
        except ValueError as err:
            raise ConfigError(f"config key 'train.step': {err}") from None


def run_experiment(
    cfg: Config,
    out_dir: str | Path,
    quiet: bool = False,
    verbose: bool = False,
    label: str | None = None,
    resume: Checkpoint | None = None,
    callbacks: Sequence[Callback] = (),
    stop: threading.Event | None = None,
) -> dict:
    """Run one experiment and write ``rounds.csv``, ``clients.csv``, ``server.csv``,
    ``config.toml``, ``summary.json``, ``checkpoint.npz`` and ``final_weights.npz``
    into ``out_dir``; return the summary.

    ``label`` names the run in the tables (default: the strategy's name);
    ``resume`` continues the run saved in that checkpoint (``cfg`` must be its
    config); ``callbacks`` also watch the rounds (benchmarks time them).
    ``simulation.backend`` picks Flower's simulation engine on Ray (``ray``) or
    clients in threads of this process (``inline``, :mod:`pwfl.inline`).

    Setting ``stop`` (another thread may), or a Ctrl-C while the run is under
    way in the main thread, stops the run at the server's next poll
    (:mod:`pwfl.interrupt`); Ray is shut down and the folder keeps what its last
    checkpoint wrote, so ``pwfl resume`` continues it.

    Raises
    ------
    PwflError
        When the run stopped early because every weight set kept missing quorum
        (its records are kept).
    Interrupted
        When it was stopped; the message says how to continue it.
    """
    check_single_run(cfg)
    quiet_libraries(verbose)
    nodes = simulation_nodes(cfg)
    # Started before PyTorch and Flower are imported and the data prepared: Ray's
    # processes come up meanwhile.
    ray_start = RayStart(cfg, verbose) if needs_ray(cfg) else None
    handed_over = False  # to Flower's simulation, which shuts the session down itself
    try:
        from pwfl.apps.client_app import make_client_app
        from pwfl.callbacks import Progress
        from pwfl.interrupt import sigint_sets

        quiet_libraries(verbose)  # again: importing Flower sets its logger's level
        arithmetic.ensure(cfg.reproducibility.arithmetic)
        prepare_data(cfg)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        watchers = list(callbacks)
        if not quiet:
            watchers.append(Progress(f"{label or cfg.strategy.name} seed {cfg.seed}"))
        client_app = make_client_app(cfg, out / CLIENT_STATE_DIR)
        if stop is None:
            stop = threading.Event()
        with sigint_sets(stop):
            if cfg.simulation.backend == "inline":
                outcome = _inline(cfg, out, client_app, watchers, label, resume, nodes, stop)
            else:
                handed_over = True
                outcome = _simulate(
                    cfg, out, client_app, watchers, label, resume, nodes, verbose, stop, ray_start
                )
    finally:
        if ray_start is not None and not handed_over:
            ray_start.stop()
    if isinstance(outcome.error, Interrupted):
        raise Interrupted(how_to_continue(out))
    if outcome.error is not None:
        raise outcome.error
    if not outcome.summary:
        raise RuntimeError(f"the run in {out} ended without a result; rerun with --verbose")
    return outcome.summary


def _inline(
    cfg: Config,
    out: Path,
    client_app: ClientApp,
    watchers: Sequence[Callback],
    label: str | None,
    resume: Checkpoint | None,
    nodes: int,
    stop: threading.Event,
) -> Outcome:
    """Run the apps on the inline grid (:mod:`pwfl.inline`), without Ray."""
    from pwfl.apps.server_app import Outcome, run_server
    from pwfl.inline import InlineGrid

    grid = InlineGrid(client_app, nodes, workers=max(4, os.cpu_count() or 1))
    try:
        return run_server(
            grid,
            cfg,
            out,
            watchers,
            label,
            resume,
            nodes,
            stop=stop,
            aggregate_with=aggregation_executor(cfg),
        )
    except Interrupted as err:
        return Outcome(error=err)
    finally:
        grid.shutdown()


def _simulate(
    cfg: Config,
    out: Path,
    client_app: ClientApp,
    watchers: Sequence[Callback],
    label: str | None,
    resume: Checkpoint | None,
    nodes: int,
    verbose: bool,
    stop: threading.Event,
    ray_start: RayStart | None = None,
) -> Outcome:
    """Run the apps on Flower's simulation engine; Ray is down when this returns.

    ``ray_start`` is the session already starting (:class:`RayStart`); without one it
    is started here."""
    import ray
    from flwr.simulation import run_simulation

    from pwfl.apps.server_app import Outcome, make_server_app

    outcome = Outcome()
    try:
        if ray_start is None:
            start_ray(cfg, verbose)
        else:
            ray_start.wait()
        run_simulation(
            server_app=make_server_app(cfg, out, watchers, label, resume, outcome, nodes, stop),
            client_app=client_app,
            num_supernodes=nodes,
            backend_config={
                "client_resources": {
                    "num_cpus": cfg.simulation.client_cpus,
                    "num_gpus": cfg.simulation.client_gpus,
                },
            },
            verbose_logging=verbose,
        )
    finally:
        # Flower's backend shuts Ray down when its runtime ends; this covers a run
        # that ended before it started (a Ctrl-C during ray.init, an error).
        if ray.is_initialized():
            ray.shutdown()
        if ray_start is not None:
            ray_start.release()
        quiet_libraries(verbose)  # Flower resets its console handler level on each run
    if stop.is_set() and outcome.error is None and not outcome.summary:
        outcome.error = Interrupted("stopped")  # before the server app started
    return outcome


def how_to_continue(out: Path) -> str:
    """The line a stopped run ends with: the round its checkpoint holds, and the command
    that continues it (or why none can)."""
    from pwfl.checkpoint import CHECKPOINT_FILE, load_checkpoint

    path = out / CHECKPOINT_FILE
    if not path.is_file():
        return (
            f"stopped by Ctrl-C; the run in {out} has no checkpoint to continue from (none "
            "written yet, checkpoint.every = 0, or a strategy that writes none): start it "
            "again with --overwrite"
        )
    ckpt = load_checkpoint(path)
    return (
        f"stopped by Ctrl-C; the run in {out} is saved at round {ckpt.round} of "
        f"{ckpt.num_rounds}: continue it with 'pwfl resume {out}'"
    )
