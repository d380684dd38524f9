"""Draw LeNet's Figure 3 (accuracy during training) and Figure 4 (early stop vs sparsity) from results: the earlier
form of `python plotter.py RESULTS_DIR`, with the same flags.

python plot_results.py --results_dir results/iterative-5k --mode iterative
"""

from __future__ import annotations

from lth.families import family_package

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from .plotter import main

if __name__ == "__main__":
    main()
