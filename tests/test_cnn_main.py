"""CNN/main.py end to end on a tiny CIFAR-format data root: rows, condition columns, exact sparsity, masks held."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lth.errors import UserError
from lth.families import family_module
from lth.masks import default_prunable_names

CNN = Path(__file__).resolve().parents[1] / "CNN"
data = family_module(CNN, "data")
models = family_module(CNN, "models")
main = family_module(CNN, "main")


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch) -> Path:
    """Five training batches of 16 images and a test batch of 16, pickled as CIFAR-10's python batches."""
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (16, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 16))}
        (folder / name).write_bytes(pickle.dumps(batch))
    monkeypatch.setattr(data, "VALIDATION_SIZE", 16)  # the real split is 5,000 of 50,000
    return tmp_path / "data"


def test_main_trains_prunes_and_records_conditions(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "results"
    argv = [
        "--arch",
        "Conv-2",
        "--run_type",
        "winning_ticket",
        "--dropout_rate",
        "0.5",
        "--iterations",
        "3",
        "--eval_every",
        "2",
        "--prune_iterations",
        "1",
        "--batch_size",
        "16",
        "--data_dir",
        str(tiny_cifar),
        "--output_dir",
        str(out),
        "--device",
        "cpu",
        "--quiet",
    ]
    main.main(argv)
    settings = main.parse_args(argv)
    # The earlier flags keep their meaning: --iterations is per round, --prune_iterations the rounds after round 0.
    assert (settings.train_iterations, settings.rounds) == (3, 1)
    run = main.run_directory(settings)
    # Settings outside the readable prefix (batch size, eval interval) that differ from their defaults add a hash.
    assert run.parent == out and run.name.startswith("Conv-2_winning_ticket_d0p5_lr0p0002_it3_seed1_h")
    assert main.run_directory(main.parse_args([*argv, "--batch_size", "32"])).name != run.name
    rows = pd.read_csv(run / "rounds.csv")
    assert list(rows["round"]) == [0, 1]
    assert set(rows["dropout_rate"]) == {0.5} and set(rows["lr"]) == {2e-4} and set(rows["output_prune_rate"]) == {0.1}
    assert set(rows["train_iterations"]) == {3} and set(rows["batch_size"]) == {16} and set(rows["rounds"]) == {1}
    model = models.build_model("Conv-2")
    sizes = {n: p.numel() for n, p in model.named_parameters() if n in default_prunable_names(model)}
    rates = {n: 0.1 if n.startswith("features") else 0.2 for n in sizes} | {"classifier.6.weight": 0.1}

    def kept(rounds):
        counts = dict(sizes)
        for _ in range(rounds):
            counts = {n: c - int(rates[n] * c + 0.5) for n, c in counts.items()}
        return sum(counts.values())

    for r in range(2):
        assert rows["weights_remaining_pct"][r] == pytest.approx(100 * kept(r) / sum(sizes.values()), abs=1e-6)
    state = torch.load(run / "state.pt", weights_only=False)
    for name, alive in state["mask"].items():
        assert torch.count_nonzero(state["trained"][name][~alive]) == 0
    curve = pd.read_csv(run / "curve.csv")
    assert list(curve.query("round == 1")["iteration"]) == [0, 2, 3]
    main.main(argv)
    assert "nothing to do" in capsys.readouterr().out


def test_random_prune_flag_and_conflicts():
    args = main.parse_args(["--arch", "Conv-2", "--random_prune"])
    assert args.run_type == "random_prune" and "random_prune" in main.run_directory(args).name
    with pytest.raises(UserError, match="--random_prune"):
        main.parse_args(["--random_prune", "--run_type", "random_reinit"])
    with pytest.raises(UserError, match="--arch"):
        main.parse_args(["--arch", "Conv-8"])
    with pytest.raises(UserError, match="--dropout_rate"):
        main.parse_args(["--dropout_rate", "1.5"])
