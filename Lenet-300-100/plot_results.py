"""Draw LeNet's Figure 3 (accuracy during training) and Figure 4 (early stop vs sparsity) from results.

python plot_results.py --results_dir results/iterative-5k
"""

from __future__ import annotations

from pathlib import Path

from plotter import plot_figure3, plot_figure4

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
    args = parser.parse_args(argv)
    results = Path(args.results_dir)
    if not results.is_dir():
        raise UserError(f"--results_dir {results} is not a directory")
    out = Path(args.output_dir or results)
    figure3 = plot_figure3(results, out / f"figure3_{args.mode}.png", args.mode, args.max_iteration)
    figure4 = plot_figure4(results, out / f"figure4_{args.mode}.png", args.mode)
    print(f"figures: {figure3} and {figure4}")


if __name__ == "__main__":
    main()
