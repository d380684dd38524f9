"""Conv-2 on real CIFAR-10 (../shared/data): the family's recipe reaches >= 50% test accuracy in a short schedule."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from lth.datasets import load_cifar10
from lth.families import family_module
from lth.imp import IMPSettings, run_imp
from lth.results import RunDirectory

CNN = Path(__file__).resolve().parents[1] / "CNN"
DATA_ROOT = Path(os.environ.get("LTH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
main = family_module(CNN, "main")
trainer = family_module(CNN, "trainer")

# A short schedule that passes with margin on a 2-core CPU: 300 Adam steps of batch 60 at lr 1e-3 (0.4 epoch; test
# accuracy 45.7 / 50.2 / 55.1 / 56.2 / 60.9% after 100..500 steps, seed 1; chance is 10%).
ITERATIONS = 300
EVAL_IMAGES = 2000  # validation and test subsets: evaluation of full-width Conv-2 dominates CPU time otherwise


@pytest.mark.slow
@pytest.mark.skipif(
    not (DATA_ROOT / "cifar-10-batches-py").is_dir(), reason=f"real CIFAR-10 not found under {DATA_ROOT}"
)
def test_conv2_reaches_50_percent(tmp_path):
    args = main.parse_args(
        [
            "--arch",
            "Conv-2",
            "--lr",
            "1e-3",
            "--iterations",
            str(ITERATIONS),
            "--eval_every",
            str(ITERATIONS),
            "--prune_iterations",
            "0",
            "--seed",
            "1",
            "--output_dir",
            str(tmp_path),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    data = load_cifar10(DATA_ROOT, val_size=5000, seed=args.seed)
    data = dataclasses.replace(
        data,
        val_x=data.val_x[:EVAL_IMAGES],
        val_y=data.val_y[:EVAL_IMAGES],
        test_x=data.test_x[:EVAL_IMAGES],
        test_y=data.test_y[:EVAL_IMAGES],
    )
    recipe = trainer.build_recipe(args, data, "cpu")
    with RunDirectory(args.output_dir, args) as run:
        rows = run_imp(run, recipe, IMPSettings(rounds=0, seed=args.seed), quiet=True)
    row = rows[0]
    assert row["early_stop_iteration"] == ITERATIONS  # validation loss still falling: early stop is the last evaluation
    assert row["test_accuracy_early_stop"] >= 50.0, row
