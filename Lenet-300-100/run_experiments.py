"""Run every unfinished line of configs.txt locally, one after another (same as ./run_experiments.sh).

python run_experiments.py [--dry-run] [--config configs_5k.txt]
"""

from __future__ import annotations

import sys
from pathlib import Path

from lth.cli import main

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    argv = sys.argv[1:]
    config = str(HERE / "configs.txt")
    if "--config" in argv:
        position = argv.index("--config")
        config = argv[position + 1] if position + 1 < len(argv) else ""
        del argv[position : position + 2]
    main(["sweep", config, "--script", str(HERE / "main.py"), *argv])
