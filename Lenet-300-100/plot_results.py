"""Draw LeNet's Figure 3 (accuracy during training) and Figure 4 (early stop vs sparsity) from results,
one pair per condition (runs that differ in any setting but the trial are never averaged).

python plot_results.py --results_dir results/iterative-5k
"""

from __future__ import annotations

from pathlib import Path

from plotter import plot_mode, plot_pai

from lth.arguments import ArgumentParser, positive_int
from lth.errors import UserError, user_facing

HERE = Path(__file__).resolve().parent


@user_facing
def main(argv=None) -> None:
    parser = ArgumentParser(prog="Lenet-300-100/plot_results.py", description=__doc__.splitlines()[0])
    parser.add_argument("--results_dir", default=str(HERE / "results"), help="directory holding run directories")
    parser.add_argument("--mode", choices=["iterative", "oneshot"], default="iterative")
    parser.add_argument("--output_dir", default=None, help="where to write the PNGs (default: the results directory)")
    parser.add_argument("--max_iteration", type=positive_int, default=None, help="x-axis limit of Figure 3")
    parser.add_argument(
        "--pai_dir",
        default=None,
        help="also draw IMP (from --results_dir) against pruning at initialization (runs here)",
    )
    args = parser.parse_args(argv)
    results = Path(args.results_dir)
    if not results.is_dir():
        raise UserError(f"--results_dir {results} is not a directory")
    out = Path(args.output_dir or results)
    if args.pai_dir:
        for value in ("test_accuracy_early_stop", "test_accuracy_final"):
            print(
                f"figure: {plot_pai(Path(args.pai_dir), results, Path(args.pai_dir) / f'pai_vs_imp_{value}.png', value)}"
            )
        return
    for figure in plot_mode(results, out, args.mode, args.max_iteration):
        print(f"figure: {figure}")


if __name__ == "__main__":
    main()
