"""CNN figures from rounds.csv files as main.py writes them: one per condition (arch, dropout and any other
setting that differs), matched by round."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lth.families import family_module
from lth.results import RunDirectory

CNN = Path(__file__).resolve().parents[1] / "CNN"
plotter = family_module(CNN, "plotter")
main = family_module(CNN, "main")


def write_run(
    root: Path,
    arch: str,
    run_type: str,
    dropout: float,
    seed: int,
    rounds: int = 4,
    lr: float = 2e-4,
    extra: tuple[str, ...] = (),
) -> None:
    """rounds.csv as main.py writes it: measurements plus every identity setting of the run as columns."""
    settings = main.parse_args(
        [
            *("--arch", arch, "--run_type", run_type, "--dropout_rate", str(dropout), "--seed", str(seed)),
            *("--lr", str(lr), "--train_iterations", "2000", "--output_dir", str(root), *extra),
        ]
    )
    rows = []
    for r in range(rounds):
        remaining = 100 * 0.8**r + 1e-5 * seed  # seeds differ in the 6th digit, as real runs do
        rows.append(
            {
                "round": r,
                "weights_remaining_pct": remaining,
                "sparsity_pct": 100 - remaining,
                "early_stop_iteration": 1000 + 100 * r + seed,
                "val_loss": 1.0,
                "val_accuracy": 60.0,
                "test_accuracy_early_stop": 60 + r + (5 if dropout else 0) + seed / 10,
                "test_accuracy_final": 59.0,
                "run_type": run_type,
                "arch": arch,
                "seed": seed,
                "wall_time_s": 1.0,
            }
        )
    with RunDirectory(root, settings) as run:
        run.write_results(rows, [])


@pytest.fixture
def results(tmp_path):
    for arch in ("Conv-2", "Conv-4"):
        for dropout in (0.0, 0.5):
            for run_type in ("winning_ticket", "random_reinit"):
                for seed in (1, 2, 3):
                    write_run(tmp_path, arch, run_type, dropout, seed)
    write_run(tmp_path, "Conv-2", "random_prune", 0.0, 1)
    return tmp_path


def test_one_figure_per_arch_and_dropout(results):
    groups = plotter.figure_groups(
        pd.concat([pd.read_csv(p) for p in sorted(results.rglob("rounds.csv"))], ignore_index=True)
    )
    assert sorted(stem for stem, _, _ in groups) == [
        "plot_Conv-2_d0",
        "plot_Conv-2_d0p5",
        "plot_Conv-4_d0",
        "plot_Conv-4_d0p5",
    ]
    for _, _, frame in groups:
        assert frame["dropout_rate"].nunique() == 1 and frame["arch"].nunique() == 1  # never pooled
        # Matched by round: one point per round per run type, despite per-seed differences in x.
        assert frame.groupby("run_type")["round"].nunique().eq(4).all()
    no_dropout = dict((stem, frame) for stem, _, frame in groups)["plot_Conv-2_d0"]
    assert set(no_dropout["run_type"]) == {"winning_ticket", "random_reinit", "random_prune"}
    assert no_dropout.query("run_type == 'winning_ticket' and round == 2")[
        "test_accuracy_early_stop"
    ].mean() == pytest.approx(62.2)


def test_figures_are_written_by_plot_mode(results, capsys):
    main.main(["--mode", "plot", "--output_dir", str(results)])
    pngs = sorted(p.name for p in results.glob("*.png"))
    assert pngs == ["plot_Conv-2_d0.png", "plot_Conv-2_d0p5.png", "plot_Conv-4_d0.png", "plot_Conv-4_d0p5.png"]
    assert all((results / p).stat().st_size > 10_000 for p in pngs)
    assert "figure:" in capsys.readouterr().out


def test_other_varying_settings_get_their_own_figures(tmp_path):
    write_run(tmp_path, "Conv-6", "winning_ticket", 0.0, 1, lr=3e-4)
    other = tmp_path / "other"
    write_run(other, "Conv-6", "winning_ticket", 0.0, 1, lr=2e-4)
    paths = plotter.plot_results(tmp_path)
    assert sorted(p.name for p in paths) == ["plot_Conv-6_d0_lr0p0002.png", "plot_Conv-6_d0_lr0p0003.png"]


def test_runs_differing_in_any_setting_are_never_pooled(tmp_path):
    """Seeds of one condition share a line; a run with other training iterations or augmentation does not."""
    for seed in (1, 2):
        write_run(tmp_path / "base", "Conv-2", "winning_ticket", 0.0, seed)
    write_run(tmp_path / "longer", "Conv-2", "winning_ticket", 0.0, 1, extra=("--train_iterations", "3000"))
    write_run(tmp_path / "augmented", "Conv-2", "winning_ticket", 0.0, 1, extra=("--augment",))
    groups = plotter.figure_groups(plotter.load_rounds(tmp_path))
    assert sorted(stem for stem, _, _ in groups) == [
        "plot_Conv-2_d0_train_iterations2000_augmentfalse",
        "plot_Conv-2_d0_train_iterations2000_augmenttrue",
        "plot_Conv-2_d0_train_iterations3000_augmentfalse",
    ]
    seeds = {stem: set(frame["seed"]) for stem, _, frame in groups}
    assert seeds["plot_Conv-2_d0_train_iterations2000_augmentfalse"] == {1, 2}


def test_empty_results_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--mode", "plot", "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no rounds.csv" in capsys.readouterr().err


def test_titles_count_the_seeds_each_point_rests_on(tmp_path, monkeypatch):
    """A study in progress: its later rounds rest on fewer seeds, and the title says so."""
    import lth.plotting

    for seed in (1, 2):
        write_run(tmp_path, "Conv-2", "winning_ticket", 0.0, seed)
    write_run(tmp_path, "Conv-2", "winning_ticket", 0.0, 3, rounds=2)
    titles = []
    monkeypatch.setattr(lth.plotting, "save_figure", lambda figure, path: titles.append(figure.get_suptitle()))
    rounds = lth.plotting.load_rounds(tmp_path)
    lth.plotting.plot_early_stop_panels(rounds, tmp_path / "figure.png", "Conv-2")
    lth.plotting.plot_early_stop_panels(rounds[rounds["seed"] < 3], tmp_path / "figure.png", "Conv-2")
    assert titles == ["Conv-2 (mean, band = min..max over 2-3 seeds)", "Conv-2 (mean, band = min..max over 2 seeds)"]
    assert lth.plotting.over_seeds([1]) == "1 seed" and lth.plotting.over_seeds([1, 5], "trial") == "1-5 trials"
