"""No figure or summary of any family pools runs that differ in a result-changing setting: runs of two iteration
counts and two learning rates (2 seeds each) in one results tree are four conditions everywhere."""

from __future__ import annotations

import itertools

import pandas as pd
from conftest import family_module

# noqa: F401
from lth.cli import main as lth
from lth.cli import summary_table
from lth.results import RunDirectory

ITERATIONS = (300, 600)
LRS = (0.01, 0.02)


def image_row(round_index: int, seed: int, lr: float) -> dict:
    remaining = 100 * 0.8**round_index
    accuracy = 90 + 100 * lr + seed * 0.01 - round_index
    return {
        "round": round_index,
        "weights_remaining_pct": remaining,
        "sparsity_pct": 100 - remaining,
        "early_stop_iteration": 100,
        "val_loss": 0.3,
        "val_accuracy": accuracy,
        "test_accuracy_early_stop": accuracy,
        "test_accuracy_final": accuracy,
        "arch": "net",
        "wall_time_s": 1.0,
    }


def curve(round_index: int, lr: float) -> list[dict]:
    return [
        {
            "round": round_index,
            "iteration": i,
            "train_loss": 0.1,
            "val_loss": 0.3,
            "val_accuracy": 95.0,
            "test_loss": 0.3,
            "test_accuracy": 95.0 + 100 * lr,
        }
        for i in (0, 100)
    ]


def write_runs(root, make_settings, run_types=("winning_ticket", "random_reinit"), arch: str = "net") -> int:
    """Runs of every (iterations, lr, run type, seed); returns how many conditions (less run type) there are."""
    for iterations, lr, run_type, seed in itertools.product(ITERATIONS, LRS, run_types, (1, 2)):
        settings = make_settings(iterations, lr, run_type, seed)
        rows = [{**image_row(r, seed, lr), "run_type": run_type, "seed": seed, "arch": arch} for r in range(3)]
        points = [p for r in range(3) for p in curve(r, lr)]
        with RunDirectory(root, settings) as run:
            run.write_results(rows, points)
    return len(ITERATIONS) * len(LRS)


def summarized_conditions(root, capsys, value: str = "test_accuracy_early_stop") -> int:
    """Conditions in `lth summarize` (the table it prints, and that its command runs)."""
    lth(["summarize", str(root), "--value", value])
    assert "mean" in capsys.readouterr().out
    table = summary_table(str(root), value)
    return int((table["round"] == 0).sum())


def test_lenet(tmp_path, capsys):
    settings = family_module("Lenet-300-100", "settings").LenetSettings
    plotter = family_module("Lenet-300-100", "plotter")
    count = write_runs(
        tmp_path,
        lambda it, lr, rt, seed: settings(train_iterations=it, lr=lr, run_type=rt, seed=seed, eval_every=100),
        arch="LeNet-300-100",  # the plotter draws LeNet's runs only
    )
    figures = plotter.plot_mode(tmp_path, tmp_path / "figures", "iterative")
    assert len([f for f in figures if f.name.startswith("figure4_")]) == count
    assert summarized_conditions(tmp_path, capsys) == count * 2  # x run types


def test_cnn(tmp_path, capsys):
    settings = family_module("CNN", "settings").ConvSettings
    plotter = family_module("CNN", "plotter")
    count = write_runs(
        tmp_path, lambda it, lr, rt, seed: settings(arch="Conv-2", train_iterations=it, lr=lr, run_type=rt, seed=seed)
    )
    figures = plotter.plot_results(tmp_path, tmp_path / "figures")
    assert len(figures) == count and len({f.name for f in figures}) == count
    assert summarized_conditions(tmp_path, capsys) == count * 2


def test_vgg(tmp_path, capsys):
    settings = family_module("VGG", "settings").VGGSettings
    plotter = family_module("VGG", "plotter")
    count = write_runs(
        tmp_path,
        lambda it, lr, rt, seed: settings(width=0.125, train_iterations=it, lr=lr, run_type=rt, seed=seed),
        run_types=("winning_ticket", "random_prune"),
        arch="VGG-19",
    )
    figures = plotter.plot_all(tmp_path, tmp_path / "figures")
    assert len(figures) == count and len({f.name for f in figures}) == count
    assert summarized_conditions(tmp_path, capsys) == count * 2


def test_bert(tmp_path, capsys, monkeypatch):
    settings = family_module("BERT", "settings").LotterySettings
    plotter = family_module("BERT", "plotter")
    for epochs, lr, seed in itertools.product((1, 2), LRS, (1, 2)):
        s = settings(task="sst2", epochs=epochs, lr=lr, seed=seed, sparsity=0.2)
        rows = [
            {
                "round": r,
                "weights_remaining_pct": 100 - 10 * r,
                "sparsity_pct": 10 * r,
                "dev_accuracy": 80 + lr,
                "dev_loss": 0.4,
                "train_loss": 0.3,
                "dev_accuracy_best": 80.0,
                "iterations": 10,
                "run_type": "winning_ticket",
                "arch": "bert",
                "seed": seed,
                "wall_time_s": 1.0,
            }
            for r in range(3)
        ]
        with RunDirectory(tmp_path, s) as run:
            run.write_results(rows, [], ["round"], ["round"])
    lines = []
    original = plotter.plot_mean_range
    monkeypatch.setattr(
        plotter,
        "plot_mean_range",
        lambda ax, stats, x, label, *a, **k: (lines.append(label), original(ax, stats, x, label, *a, **k)),
    )
    plotter.plot_sparsity_curves(
        pd.concat([pd.read_csv(p).assign(run=p.parent.name) for p in tmp_path.rglob("rounds.csv")]),
        tmp_path / "bert.png",
    )
    assert len(lines) == len(set(lines)) == 4, lines  # one line per (epochs, lr), each named by both
    assert summarized_conditions(tmp_path, capsys, "dev_accuracy") == 4
