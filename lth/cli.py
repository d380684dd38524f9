"""`lth`: the cross-cutting jobs (demo, sweeps, status, summaries, ticket inspection, environment)."""

from __future__ import annotations

import sys
from pathlib import Path

from lth.arguments import ArgumentParser, non_negative_int, positive_int
from lth.errors import UserError, user_facing


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="lth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    demo = commands.add_parser("demo", help="offline demo: IMP on 8x8 digits, CSVs and a figure in about a minute")
    demo.add_argument("--output_dir", default="lth-demo")
    demo.add_argument("--rounds", type=positive_int, default=10)
    demo.add_argument("--iterations", type=positive_int, default=500)

    sweep = commands.add_parser(
        "sweep", help="run every unfinished line of a config file, or submit it as an array job"
    )
    sweep.add_argument("config", help="config file: one line of flags per run")
    sweep.add_argument(
        "--script",
        default=None,
        help="entry script the lines are for (default: the first entry script of the config's family, else main.py)",
    )
    sweep.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="print what would run")
    sweep.add_argument("--submit", choices=["lsf", "slurm"], help="write an array job sized to the config file")
    sweep.add_argument("--yes", action="store_true", help="with --submit: also submit it (bsub / sbatch)")
    sweep.add_argument(
        "--per_device",
        "--parallel",
        dest="per_device",
        type=positive_int,
        default=1,
        help="run this many lines at once on each device (each its own process and lease); with several GPUs "
        "visible, N on each, every line seeing only its own GPU",
    )
    sweep.add_argument(
        "--batch",
        action="store_true",
        help="train lines that differ only in seed, trial, run type or IMP mode together in one batched step "
        "(image families; pays on a GPU); with --submit, one array task per batch",
    )
    sweep.add_argument(
        "--max_batch",
        type=positive_int,
        default=None,
        help="with --batch: at most this many runs per batch (what fits the device's memory); implies --batch",
    )

    sweep.add_argument(
        "--submit_options",
        default="",
        help="with --submit: sbatch/bsub options written into the header in place of the lines setting the same "
        'option, e.g. "--gres=none --cpus-per-task=2 --time=1:00:00" (a node without GPUs) or "-q short -n 2"',
    )
    sweep.add_argument(
        "--max_parallel",
        type=non_negative_int,
        default=8,
        help="with --submit: at most this many array tasks at once (the array's %%N throttle; 0: no limit)",
    )

    job_folder = commands.add_parser(
        "job_folder", help="print the folder a ready-made job script was submitted from (used by run_*.sh)"
    )
    job_folder.add_argument("script", help="the job script's $0")
    job_folder.add_argument("entry", help="the entry script that must be in that folder, e.g. main.py")

    status = commands.add_parser("status", help="finished, running, failed and missing runs")
    status.add_argument("results_dir", nargs="?", help="directory holding run directories")
    status.add_argument("--config", help="also list the config file's runs that have not started")
    status.add_argument("--script", default=None, help="as for lth sweep")

    summarize = commands.add_parser("summarize", help="mean/min/max of a rounds.csv column over seeds, per round")
    summarize.add_argument("results_dir")
    summarize.add_argument("--value", default="test_accuracy_early_stop", help="rounds.csv column to tabulate")

    batch = commands.add_parser(
        "batch", help="train several runs of one entry script together (seeds, run types, IMP modes) in one batch"
    )
    batch.add_argument("script", help="an image family's entry script, e.g. Lenet-300-100/main.py")
    batch.add_argument(
        "--lines", nargs="+", required=True, help='one quoted set of flags per run: "--trial 0" "--trial 1"'
    )

    stability = commands.add_parser(
        "stability", help="instability analysis: error barrier between two copies trained from iteration k"
    )
    stability.add_argument("script", help="the run's entry script, e.g. Lenet-300-100/main.py")
    stability.add_argument("--run", default="", help='the run\'s flags, quoted: --run "--trial 0 --iterations 5000"')
    stability.add_argument(
        "--k", type=non_negative_int, nargs="+", default=[0], help="iterations the copies start from"
    )
    stability.add_argument("--points", type=positive_int, default=11, help="points on the linear path (>= 2)")
    stability.add_argument("--output_dir", default=None, help="default: <the run's output_dir>/stability")

    ticket = commands.add_parser(
        "ticket",
        help="describe a BERT ticket file (masks, sparsity per layer, metadata); "
        "`lth ticket convert FILE...` writes earlier .pt tickets as safetensors",
    )
    ticket.add_argument("path", nargs="+", help="a ticket file; or `convert` and the files to convert")
    ticket.add_argument(
        "--output", default=None, help="with convert (one file): where to write (default: FILE.safetensors)"
    )
    ticket.add_argument(
        "--model_name_or_path", default=None, help="the ticket's base model, where the file names none or another"
    )

    export = commands.add_parser(
        "export",
        help="a ticket or a run's round as a folder others load: from_pretrained (BERT) or a safetensors state dict, "
        "with its mask and a model card",
    )
    export.add_argument("source", help="a run directory (image families or BERT) or a BERT ticket file")
    export.add_argument("output", help="the folder to write (must not exist or be empty)")
    export.add_argument("--round", type=non_negative_int, default=None, help="the round (default: the last finished)")
    export.add_argument(
        "--weights",
        choices=("trained", "ticket"),
        default="trained",
        help="trained: the round's trained weights (the last finished round only); ticket: the winning ticket of any "
        "round, its mask on the rewind weights (the subnetwork to train)",
    )
    export.add_argument("--model_name_or_path", default=None, help="BERT: the base model (default: the ticket's)")
    export.add_argument("--push_to_hub", default=None, metavar="REPO", help="also upload the folder to this hub repo")

    cost = commands.add_parser(
        "cost", help="parameters, FLOPs, bytes on disk and dense vs sparse latency of an exported folder or a ticket"
    )
    cost.add_argument("source", help="an exported folder (lth export) or a BERT ticket file")
    cost.add_argument("--batch_sizes", type=positive_int, nargs="+", default=[1, 64])
    cost.add_argument("--threads", type=positive_int, nargs="+", default=None, help="default: 1 and all cores")
    cost.add_argument("--min_run_time", type=float, default=0.5, help="seconds torch.utils.benchmark times each case")
    cost.add_argument("--output", default=None, help="also write the report as JSON here")

    env = commands.add_parser("env", help="what a run will use here; non-zero exit if something needed is missing")
    env.add_argument("--data_dir", default=None)
    env.add_argument("--model_name_or_path", default="bert-base-uncased")
    env.add_argument("--need", default="", help="comma-separated: cuda,mnist,cifar10,sst2,qqp,bert")
    env.add_argument(
        "--family", default=None, help="also need what this family needs (a folder registered in lth/families.py)"
    )
    return parser


def summary_table(results_dir: str, value: str):
    """Mean/min/max of `value` per condition and round: runs are pooled over seeds only."""
    from lth.plotting import load_rounds, mean_min_max
    from lth.results import condition_columns

    rounds = load_rounds(results_dir)
    if value not in rounds.columns:
        raise UserError(f"--value {value}: not a rounds.csv column (have {', '.join(rounds.columns)})")
    return mean_min_max(rounds, [*condition_columns(rounds.columns), "round"], value)


def summarize(results_dir: str, value: str) -> None:
    """Print the summary; settings the same for every run are printed once above the table, not in every row."""
    import pandas as pd

    from lth.plotting import load_rounds
    from lth.results import COST_COLUMNS, condition_columns

    stats = summary_table(results_dir, value)
    # Shared only when every run has the one value: a run without the setting (another family's) has none.
    constant = [c for c in condition_columns(stats.columns) if stats[c].notna().all() and stats[c].nunique() == 1]
    for column in constant:
        print(f"{column}: {stats[column].iloc[0]}")
    stats = stats.drop(columns=constant)
    with pd.option_context("display.max_rows", 1000, "display.width", 200, "display.max_columns", 50):
        print(stats.round(6).to_string(index=False))
    if value in COST_COLUMNS:  # what the whole study cost: every round of every run, resumed pieces included
        rounds = load_rounds(results_dir)
        print(
            f"total {value} over {rounds['run'].nunique()} runs: {pd.to_numeric(rounds[value], errors='coerce').sum():.6g}"
        )


def resolve_script(config: str, script: str | None) -> Path:
    if script is None:
        from lth.families import family_of

        family = family_of(config)
        script = family.entry_scripts[0] if family else "main.py"
    path = Path(script)
    if not path.is_absolute() and not path.exists():
        path = Path(config).resolve().parent / path
    return path


def show_status(results_dir: str | None, config: str | None, script: str) -> None:
    from lth.branches import dependency
    from lth.cluster import duration, queued_line_state, round_progress, run_status

    rows = []
    if config:
        from lth.sweep import check_lines, load_script, read_config

        lines = read_config(config)
        entry_script = resolve_script(config, script)
        directories = check_lines(load_script(entry_script), entry_script, Path(config), lines)
        rows = [(f"line {line.number}", d) for line, d in zip(lines, directories, strict=True)]
        positions = {d: i for i, d in enumerate(directories, start=1)}  # an array task runs the line of its index
    elif results_dir:
        root = Path(results_dir)
        if not root.is_dir():
            raise UserError(f"results directory {root} does not exist")
        rows = [("", p.parent) for p in sorted(root.rglob("settings.json"))]
        if not rows:
            print(f"no runs under {root} (no run directory with a settings.json)")
            return
    else:
        raise UserError("give a results directory or --config")
    names = [path.name for _, path in rows]
    base = Path(results_dir).resolve() if results_dir and not config else None
    counts: dict[str, int] = {}
    left = 0.0  # run time (s) the unfinished runs with rounds still need
    unstarted, whole_runs = 0, []  # runs without a finished round; what each finished run took (s)
    for label, path in rows:
        state = run_status(path)
        if state == "missing" and config:
            state = queued_line_state(Path(config), positions[path]) or state
        kind = state.split(" ")[0].rstrip(":")
        counts[kind] = counts.get(kind, 0) + 1
        progress = round_progress(path)
        if kind == "finished":
            if progress.seconds_per_round is not None:
                whole_runs.append(progress.done * progress.seconds_per_round)
        elif progress.done == 0:
            unstarted += 1
        else:
            left += progress.seconds_left or 0.0
        print(f"{label:<9} {state:<40} {str(progress):>26}  {shown_name(path, names, base)}")
        if kind != "finished" and dependency(path):
            print(f"{'':<9} {'':<40} {'':>26}    {dependency(path)}")
    print("total: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if left:
        print(
            f"the unfinished runs with rounds need ~{duration(left)} more run time, at the pace of their rounds so far"
        )
    if unstarted and whole_runs:
        average = duration(sum(whole_runs) / len(whole_runs))
        runs = "1 run has" if unstarted == 1 else f"{unstarted} runs have"
        print(f"{runs} no finished round yet; a finished run took {average} on average")


def shown_name(path: Path, names: list[str], base: Path | None) -> str:
    """A run's leaf name, or its path (below `base`) where another run listed has the same leaf name."""
    if names.count(path.name) < 2:
        return path.name
    if base is not None:
        try:
            return str(path.resolve().relative_to(base))
        except ValueError:
            pass
    return str(path)


@user_facing
def main(argv: list[str] | None = None) -> None:
    try:
        run_command(build_parser().parse_args(protect_lines(sys.argv[1:] if argv is None else list(argv))))
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        raise SystemExit(0) from None


def protect_lines(argv: list[str]) -> list[str]:
    """`lth batch SCRIPT --lines "--random_reinit" ...`: argparse would read a line of one flag as an option of its
    own; a leading space makes it a value (argparse never reads a string with a space as an option), and the
    shell-style split of the line drops the space again."""
    if not argv or argv[0] != "batch" or "--lines" not in argv:
        return argv
    start = argv.index("--lines") + 1
    return argv[:start] + [f" {line}" if line.startswith("-") and " " not in line else line for line in argv[start:]]


def run_command(args) -> None:
    if args.command == "demo":
        from lth.demo import run_demo

        run_demo(args.output_dir, rounds=args.rounds, iterations=args.iterations)
    elif args.command == "sweep":
        from lth.sweep import sweep

        sys.exit(
            sweep(
                args.config,
                resolve_script(args.config, args.script),
                dry_run=args.dry_run,
                submit_to=args.submit,
                yes=args.yes,
                parallel=args.per_device,
                batch=args.batch or args.max_batch is not None,
                max_batch=args.max_batch,
                submit_options=args.submit_options,
                max_parallel=args.max_parallel,
            )
        )
    elif args.command == "job_folder":
        from lth.cluster import job_script_folder

        print(job_script_folder(args.script, args.entry))
    elif args.command == "status":
        show_status(args.results_dir, args.config, args.script)
    elif args.command == "summarize":
        summarize(args.results_dir, args.value)
    elif args.command == "batch":
        import shlex

        from lth.sweep import image_entry, load_script

        entry = image_entry(load_script(args.script), f"lth batch: {args.script}", "run its lines with lth sweep")
        entry.run_lines([shlex.split(line) for line in args.lines])
    elif args.command == "stability":
        import shlex

        from lth.stability import run_stability

        if args.points < 2:
            raise UserError("--points must be at least 2 (the two ends of the path)")
        run_stability(args.script, shlex.split(args.run), sorted(set(args.k)), args.points, args.output_dir)
    elif args.command == "ticket":
        from lth.tickets import convert_ticket, describe_ticket

        if args.path[0] == "convert":
            sources = args.path[1:]
            if not sources:
                raise UserError("lth ticket convert: give the ticket files to convert")
            if args.output and len(sources) > 1:
                raise UserError("--output names one file: give one ticket with it")
            for source in sources:
                out = convert_ticket(source, args.output, args.model_name_or_path)
                before, after = Path(source).stat().st_size, out.stat().st_size
                print(f"{source} ({before / 1e6:.2f} MB) -> {out} ({after / 1e6:.2f} MB)")
        else:
            for path in args.path:
                print(describe_ticket(path, model_name_or_path=args.model_name_or_path))
    elif args.command == "export":
        from lth.export import export

        export(args.source, args.output, args.round, args.model_name_or_path, args.push_to_hub, args.weights)
    elif args.command == "cost":
        from lth.cost import cost_command

        cost_command(args.source, args.batch_sizes, args.threads, args.min_run_time, args.output)
    elif args.command == "env":
        from lth.environment import NEEDS, report

        needs = [n for n in args.need.split(",") if n]
        if args.family:
            from lth.families import family_named

            needs += family_named(args.family).needs
        unknown = [n for n in needs if n not in NEEDS]
        if unknown:
            raise UserError(f"--need {','.join(unknown)}: expected some of {','.join(NEEDS)}")
        sys.exit(report(args.data_dir, args.model_name_or_path, needs))


if __name__ == "__main__":
    main()
