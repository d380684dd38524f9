"""The Python API on a model of one's own: examples/own_model.py runs IMP with the controls end to end."""

from __future__ import annotations

import importlib.util
import sys

import pandas as pd
from conftest import REPO
from torch import nn

import lth


def load_example():
    spec = importlib.util.spec_from_file_location("own_model_example", REPO / "examples" / "own_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_example_runs_imp_with_controls_on_its_own_model(tmp_path, capsys):
    example = load_example()
    argv = ["--output_dir", str(tmp_path), "--rounds", "2", "--train_iterations", "60", "--eval_every", "30", "--quiet"]
    example.main(argv)
    rounds = lth.load_rounds(tmp_path)
    assert set(rounds["run_type"]) == {"winning_ticket", "random_reinit"}
    assert {"channels", "lr", "train_iterations", "name"} <= set(rounds.columns), (
        "its own settings are identity columns"
    )
    # Layer-wise exact counts: conv 10%, hidden fc 20%, output 10% of the remaining weights per round.
    model = example.DigitsCNN(16)
    counts = [m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    rates = [0.1, 0.2, 0.1]
    kept = [[n] for n in counts]
    for _ in range(2):
        for k, rate in zip(kept, rates, strict=True):
            k.append(k[-1] - int(rate * k[-1] + 0.5))
    expected = [100 * sum(k[r] for k in kept) / sum(counts) for r in range(3)]
    for _, run in rounds.groupby("run"):
        assert run.sort_values("round")["weights_remaining_pct"].round(4).tolist() == [round(e, 4) for e in expected]
    assert (tmp_path / "digits_cnn_imp.png").stat().st_size > 1000
    before = {p: p.read_bytes() for p in tmp_path.rglob("rounds.csv")}
    example.main(argv)  # finished runs: nothing is trained or rewritten
    assert before == {p: p.read_bytes() for p in tmp_path.rglob("rounds.csv")}
    assert "nothing to do" in capsys.readouterr().out
    assert pd.api.types.is_numeric_dtype(rounds["test_accuracy_final"]) and rounds["test_accuracy_final"].min() > 50
