"""The ``pwfl`` command: run one experiment, compare strategies, redraw figures.

Usage::

    pwfl run --config experiments/configs/quick.toml --set strategy.k=3 --out results/runs/k3
    pwfl resume results/runs/k3      # continue a run that was killed
    pwfl deploy --config experiments/configs/tiny.toml --clients 3   # SuperLink + 3 SuperNodes
    pwfl compare --config experiments/configs/quick.toml --strategies fedavg,pwfl --seeds 0,1
    pwfl compare ... --out results/compare/quick --overwrite   # replace finished results
    pwfl plot results/compare/quick
    pwfl check results/runs/k3       # do its records satisfy the invariants?

Problems with the input (a bad key or value, a missing file, an unknown data
set) end the command with exit code 2 and one line on stderr. Ctrl-C stops a run
at the server's next poll (a second Ctrl-C at once) with exit code 130 and one
line saying how to continue it. A folder that holds finished results, or results
committed to git, is never written over without --overwrite.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import sys
from pathlib import Path

from pwfl.config import Config, load_config
from pwfl.errors import ConfigError, Interrupted, PwflError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pwfl", description="Parallel-weight federated learning")
    sub = parser.add_subparsers(dest="command", required=True)

    def experiment_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", required=True, help="TOML file, e.g. experiments/configs/quick.toml"
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override one config value (repeatable)",
        )
        p.add_argument("--out", help="output folder")
        p.add_argument("--quiet", action="store_true", help="no progress display")
        p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
        p.add_argument(
            "--ray-address",
            metavar="ADDRESS",
            help="run on an existing Ray cluster (auto, or the head's host:port); "
            "same as --set simulation.backend=ray --set simulation.ray_address=ADDRESS",
        )

    run = sub.add_parser("run", help="run one experiment")
    experiment_args(run)
    run.add_argument(
        "--overwrite", action="store_true", help="replace a run already in the output folder"
    )

    resume = sub.add_parser("resume", help="continue a killed run from its checkpoint")
    resume.add_argument("dir", help="the run folder (it holds checkpoint.npz)")
    resume.add_argument("--quiet", action="store_true", help="no progress display")
    resume.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")

    deploy = sub.add_parser(
        "deploy", help="run on Flower's Deployment Engine: a SuperLink and N SuperNodes here"
    )
    experiment_args(deploy)
    deploy.add_argument("--clients", type=int, required=True, help="number of SuperNodes")
    deploy.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds to wait for the run (3600)"
    )
    deploy.add_argument(
        "--overwrite", action="store_true", help="replace a run already in the output folder"
    )

    compare = sub.add_parser("compare", help="compare strategies over seeds")
    experiment_args(compare)
    compare.add_argument(
        "--strategies", default="fedavg,pwfl-sequential,pwfl", help="comma-separated strategy names"
    )
    compare.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    compare.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a comparison already in the output folder (else a stopped one "
        "carries on and a finished or committed one is refused)",
    )
    compare.add_argument(
        "--vary",
        metavar="SECTION.KEY=V1,V2",
        help="also compare values of one config key, e.g. "
        "stragglers.load_balancing=off,proportional",
    )

    plot = sub.add_parser("plot", help="redraw the figures of a run or comparison folder")
    plot.add_argument("dir", help="a folder written by pwfl run or pwfl compare")

    check = sub.add_parser(
        "check", help="check that runs' records satisfy the invariants every run must"
    )
    check.add_argument(
        "dirs", nargs="+", metavar="RUN_DIR", help="run folders (or comparison folders)"
    )
    return parser


def _default_out(kind: str, config_path: str, cfg: Config) -> Path:
    stem = Path(config_path).stem
    if kind == "run":
        return Path("results/runs") / f"{stem}-{cfg.strategy.name}-seed{cfg.seed}"
    if kind == "deploy":
        return Path("results/deploy") / f"{stem}-{cfg.strategy.name}-seed{cfg.seed}"
    return Path("results/compare") / stem


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(
            f"--seeds '{text}' must be comma-separated integers, e.g. 0,1,2"
        ) from None
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds '{text}' must list at least one seed >= 0")
    return seeds


def _tracked(folder: Path) -> bool:
    """Whether git tracks a file in ``folder`` (False outside a repository or without git)."""
    import subprocess

    if not folder.is_dir():
        return False
    try:
        listed = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "--", "."],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and bool(listed.stdout.strip())


def _refuse(out: Path, holds: str) -> ConfigError:
    return ConfigError(
        f"'{out}' holds {holds}; pass --out NEW to write elsewhere or --overwrite to replace it"
    )


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to write over a run unless told to (nothing is touched before)."""
    from pwfl.checkpoint import CHECKPOINT_FILE

    if overwrite:
        return
    if _tracked(out):
        raise _refuse(out, "results committed to git")
    if (out / "summary.json").is_file():
        raise _refuse(out, "a finished run")
    if (out / CHECKPOINT_FILE).is_file():
        raise ConfigError(
            f"'{out}' holds an unfinished run; continue it with 'pwfl resume {out}', or "
            "pass --overwrite to start again"
        )


def _check_comparison_dir(out: Path, overwrite: bool) -> bool:
    """Refuse to write over a comparison unless told to; True when ``out`` holds one
    that was stopped before its end (the comparison then carries on)."""
    if overwrite or not out.is_dir():
        return False
    if _tracked(out):
        raise _refuse(out, "results committed to git")
    if (out / "summary.csv").is_file() or (out / "summary.json").is_file():
        raise _refuse(out, "finished results")
    return any(out.iterdir())


def _resume(args: argparse.Namespace) -> int:
    from pwfl.checkpoint import CHECKPOINT_FILE, load_checkpoint
    from pwfl.runner import run_experiment

    out = Path(args.dir)
    if not out.is_dir():
        raise ConfigError(f"'{out}' is not a folder; pass the folder of the run to resume")
    ckpt = load_checkpoint(out / CHECKPOINT_FILE)
    if ckpt.round >= ckpt.num_rounds and (out / "summary.json").is_file():
        raise ConfigError(
            f"'{out}' is finished (round {ckpt.round} of {ckpt.num_rounds}); nothing to resume"
        )
    summary = run_experiment(
        ckpt.config, out, quiet=args.quiet, verbose=args.verbose, label=ckpt.label, resume=ckpt
    )
    _print_result(summary, out)
    return 0


def _round_reporter(out: Path, num_rounds: int):
    """A deployment poll hook that prints a line on stderr as each round is recorded."""
    seen = {"round": 0}

    def report(_deployment) -> None:
        rounds = out / "rounds.csv"
        if not rounds.is_file():
            return
        import pandas as pd

        done = int(pd.read_csv(rounds)["round"].max())
        if done > seen["round"]:
            seen["round"] = done
            print(f"round {done} of {num_rounds} recorded", file=sys.stderr)

    return report


def _print_result(summary: dict, out: Path) -> None:
    sets = {k: v for k, v in summary.items() if k.isdigit()}  # a weight set's numbers
    accs = ", ".join(f"set {k}: {v['final_accuracy']:.4f}" for k, v in sets.items())
    print(f"final test accuracy ({accs}); records in {out}")


def _check(args: argparse.Namespace) -> int:
    """Print OK or the violations of each run; exit 1 on a violation, 2 on a folder
    that is not a run (the others are still checked)."""
    from pwfl.invariants import check_run, run_folders

    code = 0
    for given in args.dirs:
        try:
            folders = run_folders(given)
        except PwflError as err:
            print(f"pwfl: error: {err}", file=sys.stderr)
            code = 2
            continue
        for folder in folders:
            try:
                found = check_run(folder)
            except PwflError as err:
                print(f"pwfl: error: {folder}: {err}", file=sys.stderr)
                code = 2
                continue
            for violation in found:
                print(violation)
            if found:
                code = max(code, 1)
            else:
                print(f"OK {folder}")
    return code


def _main(args: argparse.Namespace) -> int:
    if args.command == "check":
        return _check(args)
    if args.command == "resume":
        return _resume(args)
    if args.command == "plot":
        from pwfl.compare import redraw

        if not Path(args.dir).is_dir():
            raise ConfigError(f"'{args.dir}' is not a folder; pass a run or comparison folder")
        try:
            for path in redraw(args.dir):
                print(path)
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
        return 0

    overrides = list(args.set)
    if args.ray_address:
        overrides += ["simulation.backend=ray", f"simulation.ray_address={args.ray_address!r}"]
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else _default_out(args.command, args.config, cfg)
    if args.command == "run":
        from pwfl.runner import run_experiment

        _check_out_dir(out, args.overwrite)
        summary = run_experiment(cfg, out, quiet=args.quiet, verbose=args.verbose)
        _print_result(summary, out)
        return 0
    if args.command == "deploy":
        from pwfl.deploy import deploy

        if args.clients < 1:
            raise ConfigError(f"--clients {args.clients} must be >= 1")
        cfg = cfg.with_overrides([f"data.num_clients={args.clients}"])
        _check_out_dir(out, args.overwrite)
        watch = None if args.quiet else _round_reporter(out, cfg.strategy.num_rounds)
        summary = deploy(cfg, out, args.clients, timeout_s=args.timeout, on_poll=watch)
        _print_result(summary, out)
        return 0

    from pwfl.analysis import format_summary
    from pwfl.compare import check_strategies, parse_vary, run_comparison

    strategies = check_strategies([s.strip() for s in args.strategies.split(",") if s.strip()])
    seeds, vary = _seeds(args.seeds), parse_vary(args.vary)
    carry_on = _check_comparison_dir(out, args.overwrite)
    try:
        summary = run_comparison(
            cfg, strategies, seeds, out, args.quiet, args.verbose, vary, carry_on=carry_on
        )
    except Interrupted:
        raise Interrupted(
            f"stopped by Ctrl-C; the comparison in {out} continues where it stopped when "
            "the same pwfl compare command is run again"
        ) from None
    print(format_summary(summary))
    print(f"comparison in {out} (comparison.csv, summary.csv and figures)")
    return 0


# As the interpreter exits, what is still alive is moved out of the collector's reach, so
# its last collections do not walk PyTorch's and Flower's objects one by one (about a
# second). At exit only: a process that calls main() again and again is not affected.
atexit.register(gc.freeze)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pwfl`` console script."""
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except Interrupted as err:
        print(f"pwfl: interrupted: {err}", file=sys.stderr)
        return 130
    except PwflError as err:
        print(f"pwfl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pwfl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
