"""The ``pwfl`` command: run one experiment, compare strategies, redraw figures.

Usage::

    pwfl run --config experiments/configs/quick.toml --set strategy.k=3 --out results/runs/k3
    pwfl compare --config experiments/configs/quick.toml --strategies fedavg,pwfl --seeds 0,1
    pwfl plot results/compare/quick

Problems with the input (a bad key or value, a missing file, an unknown data
set) end the command with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pwfl.config import Config, load_config
from pwfl.errors import ConfigError, PwflError


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

    run = sub.add_parser("run", help="run one experiment")
    experiment_args(run)

    compare = sub.add_parser("compare", help="compare strategies over seeds")
    experiment_args(compare)
    compare.add_argument(
        "--strategies", default="fedavg,pwfl-sequential,pwfl", help="comma-separated strategy names"
    )
    compare.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    compare.add_argument(
        "--vary",
        metavar="SECTION.KEY=V1,V2",
        help="also compare values of one config key, e.g. "
        "stragglers.load_balancing=off,proportional",
    )

    plot = sub.add_parser("plot", help="redraw the figures of a run or comparison folder")
    plot.add_argument("dir", help="a folder written by pwfl run or pwfl compare")
    return parser


def _default_out(kind: str, config_path: str, cfg: Config) -> Path:
    stem = Path(config_path).stem
    if kind == "run":
        return Path("results/runs") / f"{stem}-{cfg.strategy.name}-seed{cfg.seed}"
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


def _main(args: argparse.Namespace) -> int:
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

    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else _default_out(args.command, args.config, cfg)
    if args.command == "run":
        from pwfl.runner import run_experiment

        summary = run_experiment(cfg, out, quiet=args.quiet, verbose=args.verbose)
        accs = ", ".join(f"set {k}: {v:.4f}" for k, v in summary["final_accuracy_per_set"].items())
        print(f"final test accuracy ({accs}); records in {out}")
        return 0

    from pwfl.analysis import format_summary
    from pwfl.compare import check_strategies, parse_vary, run_comparison

    strategies = check_strategies([s.strip() for s in args.strategies.split(",") if s.strip()])
    summary = run_comparison(
        cfg, strategies, _seeds(args.seeds), out, args.quiet, args.verbose, parse_vary(args.vary)
    )
    print(format_summary(summary))
    print(f"comparison in {out} (comparison.csv, summary.csv, convergence.png)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pwfl`` console script."""
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except PwflError as err:
        print(f"pwfl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pwfl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
