"""Figures and summaries on a results tree holding all four families' runs (Conv-2 at two learning rates, VGG at
two widths, LeNet, BERT), one run reached through a symbolic link: each plotter draws only its own family's runs
and says how many others it passed over, figure names carry only what varies among the runs drawn, and `lth
summarize` calls a setting shared only when every run has that value."""

from __future__ import annotations

import os

import pytest
from conftest import family_module

from lth.results import RunDirectory


def rows_of(kind: str, run_type: str, arch: str, seed: int, rounds: int = 3) -> list[dict]:
    rows = []
    for r in range(rounds):
        remaining = 100 * 0.8**r
        row = {"round": r, "weights_remaining_pct": remaining, "sparsity_pct": 100 - remaining, "run_type": run_type,
               "arch": arch, "seed": seed, "wall_time_s": 1.0}  # fmt: skip
        if kind == "text":
            row |= {"dev_accuracy": 80.0 + r + seed / 100, "dev_loss": 0.5, "iterations": 10}
        else:
            row |= {"early_stop_iteration": 100 + r, "val_loss": 1.0, "val_accuracy": 60.0,
                    "test_accuracy_early_stop": 60.0 + r + seed / 10, "test_accuracy_final": 59.0}  # fmt: skip
        rows.append(row)
    return rows


def write(root, folder: str, cls: str, argv: list[str], kind: str, run_type: str, arch: str, seed: int):
    settings = getattr(family_module(folder, "settings"), cls).from_argv([*argv, "--output_dir", str(root)])
    curve = [] if kind == "text" else [
        {"round": r, "iteration": i, "train_loss": 1.0, "val_loss": 1.0, "val_accuracy": 60.0, "test_loss": 1.0,
         "test_accuracy": 95.0 + r + i / 1000}
        for r in range(3) for i in (0, 100)
    ]  # fmt: skip
    with RunDirectory(root, settings) as run:
        run.write_results(rows_of(kind, run_type, arch, seed), curve)
    return run.path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed") / "results"
    for seed in (1, 2):
        for lr in ("0.0002", "0.0004"):
            for run_type in ("winning_ticket", "random_reinit"):
                argv = ["--arch", "Conv-2", "--lr", lr, "--seed", str(seed), "--run_type", run_type]
                write(root, "CNN", "ConvSettings", argv, "image", run_type, "Conv-2", seed)
        for width in ("0.125", "0.25"):
            for run_type in ("winning_ticket", "random_prune"):
                argv = ["--width", width, "--seed", str(seed), "--run_type", run_type]
                write(root, "VGG", "VGGSettings", argv, "image", run_type, "VGG-19", seed)
        for run_type in ("winning_ticket", "random_reinit"):
            argv = ["--trial", str(seed), "--run_type", run_type]
            write(root / "lenet", "Lenet-300-100", "LenetSettings", argv, "image", run_type, "LeNet-300-100", seed)
        argv = ["--task", "sst2", "--model_name_or_path", "minilm", "--seed", str(seed)]
        write(root / "bert", "BERT", "LotterySettings", argv, "text", "winning_ticket", "minilm", seed)
    # One LeNet run kept elsewhere and linked into the tree.
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    linked = write(elsewhere, "Lenet-300-100", "LenetSettings", ["--trial", "3"], "image", "winning_ticket",
                   "LeNet-300-100", 3)  # fmt: skip
    os.symlink(linked, root / "lenet" / linked.name)
    return root


def figures(capsys) -> tuple[list[str], str]:
    out = capsys.readouterr().out
    return [line.split("wrote ", 1)[1] for line in out.splitlines() if line.startswith("wrote ")], out


@pytest.mark.parametrize(
    "folder, others, figure_count",
    [("CNN", 15, 2), ("VGG", 15, 2), ("Lenet-300-100", 18, 2), ("BERT", 21, 1)],
)
def test_each_plotter_draws_only_its_family(tree, tmp_path, capsys, folder, others, figure_count):
    plotter = family_module(folder, "plotter")
    plotter.main([str(tree), "--output_dir", str(tmp_path)])
    written, out = figures(capsys)
    assert f"skipped {others} runs of other families under {tree}" in out
    assert len(written) == figure_count and all(os.path.exists(path) for path in written)
    names = " ".join(os.path.basename(path) for path in written)
    assert "nan" not in names and len(max(names.split(), key=len)) < 80, names
    if folder == "CNN":  # the learning rate varies among Conv-2 runs, and nothing else does
        assert sorted(os.path.basename(p) for p in written) == [
            "plot_Conv-2_d0_lr0p0002.png",
            "plot_Conv-2_d0_lr0p0004.png",
        ]
    if folder == "Lenet-300-100":  # the linked run is read: trial 3 counts among the tickets
        assert "figure4_iterative.png" in names


def test_earlier_plot_command_forms_still_work(tree, tmp_path, capsys):
    family_module("VGG", "plotter").main(["--results_dir", str(tree), "--output_dir", str(tmp_path)])
    assert len(figures(capsys)[0]) == 2
    family_module("BERT", "plotter").main(["--results_dir", str(tree / "bert"), "--save_dir", str(tmp_path)])
    assert len(figures(capsys)[0]) == 1


def test_a_missing_results_folder_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        family_module("CNN", "plotter").main([str(tmp_path / "nowhere")])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_summarize_calls_shared_only_what_every_run_shares(tree, capsys):
    from lth.cli import main as lth

    lth(["summarize", str(tree)])
    header = [line for line in capsys.readouterr().out.splitlines() if ": " in line and not line.startswith(" ")]
    shared = dict(line.split(": ", 1) for line in header)
    assert "conv_prune_rate" not in shared and "momentum" not in shared and "weight_decay" not in shared
    assert all(value != "nan" for value in shared.values()), shared
    lth(["summarize", str(tree / "bert")])  # one family's runs: what they all share is said once
    assert "task: sst2" in capsys.readouterr().out.splitlines()
