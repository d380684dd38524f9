"""`lth`: the cross-cutting jobs (demo, sweeps, summaries, ticket inspection, status, environment)."""

from __future__ import annotations

import sys

from lth.arguments import ArgumentParser, positive_int
from lth.errors import user_facing


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="lth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    demo = commands.add_parser("demo", help="offline demo: IMP on 8x8 digits, CSVs and a figure in about a minute")
    demo.add_argument("--output_dir", default="lth-demo")
    demo.add_argument("--rounds", type=positive_int, default=10)
    demo.add_argument("--iterations", type=positive_int, default=500)

    sweep = commands.add_parser("sweep", help="run every unfinished line of a config file (or one array-job line)")
    sweep.add_argument("config", help="config file: one line of flags per run")
    sweep.add_argument("--script", default="main.py", help="entry script the lines are for (default: main.py beside the config)")
    sweep.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="print what would run")

    summarize = commands.add_parser("summarize", help="one table of every run's rounds under a results directory")
    summarize.add_argument("results_dir")
    summarize.add_argument("--value", default="test_accuracy_early_stop", help="rounds.csv column to tabulate")
    return parser


def summarize(results_dir: str, value: str) -> None:
    import pandas as pd

    from lth.errors import UserError
    from lth.plotting import load_rounds, mean_min_max

    rounds = load_rounds(results_dir)
    if value not in rounds.columns:
        raise UserError(f"--value {value}: not a rounds.csv column (have {', '.join(rounds.columns)})")
    identity = [c for c in ("arch", "mode", "run_type", "dropout_rate") if c in rounds.columns]
    stats = mean_min_max(rounds, [*identity, "round"], value)
    with pd.option_context("display.max_rows", 500, "display.width", 160):
        print(stats.round(3).to_string(index=False))


@user_facing
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from lth.demo import run_demo

        run_demo(args.output_dir, rounds=args.rounds, iterations=args.iterations)
    elif args.command == "sweep":
        from pathlib import Path

        from lth.sweep import sweep

        script = Path(args.script)
        if not script.is_absolute() and not script.exists():
            script = Path(args.config).resolve().parent / script
        sys.exit(sweep(args.config, script, dry_run=args.dry_run))
    elif args.command == "summarize":
        summarize(args.results_dir, args.value)


if __name__ == "__main__":
    main()
