"""VGG-19 family: architecture counts, global conv-only pruning, late rewinding with the mask held,
the random-pruning control, the dense round shared by train.py and main.py, flags, plots, cluster lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from lth.datasets import ImageData
from lth.errors import UserError
from lth.families import family_module
from lth.imp import IMPSettings, run_imp, start_from_dense
from lth.masks import Mask
from lth.pruning import magnitude_scores, round_half_up
from lth.results import ROUND_COLUMNS, RunDirectory
from lth.rewinding import rewind

REPO = Path(__file__).resolve().parents[1]
VGG_DIR = REPO / "VGG"


@pytest.fixture(scope="module")
def vgg():
    """The family's modules, as its scripts import them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs gain nothing from a second thread and lose a lot on a busy machine
    modules = {
        name: family_module(VGG_DIR, name)
        for name in ("models", "pruning", "trainer", "data", "main", "train", "plotter")
    }
    yield type("VGGModules", (), modules)
    torch.set_num_threads(threads)


def conv_shapes(width_channels: list[int]) -> list[tuple[int, int]]:
    shapes, previous = [], 3
    for c in width_channels:
        shapes.append((previous, c))
        previous = c
    return shapes


def test_vgg19_parameter_and_prunable_counts(vgg):
    model = vgg.models.vgg19()
    params = dict(model.named_parameters())
    prunable = vgg.models.conv_weight_names(model)
    assert len(prunable) == 16
    assert all(params[n].dim() == 4 and params[n].shape[-2:] == (3, 3) for n in prunable)
    assert sum(params[n].numel() for n in prunable) == 20_018_880
    assert sum(p.numel() for n, p in params.items() if n.endswith("bn.weight")) == 5_504
    assert params["fc.weight"].shape == (10, 512)
    assert sum(p.numel() for p in params.values()) == 20_018_880 + 5_504 + 2 * 5_504 + 5_120 + 10
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 4
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_narrow_vgg_scales_every_conv(vgg):
    model = vgg.models.vgg19(width=0.125)
    channels = [8, 8, 16, 16, 32, 32, 32, 32, 64, 64, 64, 64, 64, 64, 64, 64]
    expected = sum(i * o * 9 for i, o in conv_shapes(channels))
    params = dict(model.named_parameters())
    assert sum(params[n].numel() for n in vgg.models.conv_weight_names(model)) == expected
    assert params["fc.weight"].shape == (10, 64)


def test_global_pruning_removes_20_percent_of_remaining_conv_weights_only(vgg):
    torch.manual_seed(0)
    model = vgg.models.vgg19(width=0.125)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = vgg.models.conv_weight_names(model)
    policy = vgg.pruning.vgg_pruning(model)
    mask = Mask.dense(model, names)
    assert mask.names() == names  # BatchNorm, biases and the classifier are not even in the mask
    remaining = mask.kept()
    for _ in range(6):
        weights = {n: torch.randn_like(p) for n, p in model.named_parameters()}  # "after training"
        new = policy.prune(magnitude_scores(weights, mask), mask)
        remaining -= round_half_up(0.2 * remaining)
        assert new.kept() == remaining
        for n in names:
            assert not (new[n] & ~mask[n]).any()  # pruned weights never come back
        alive_scores = torch.cat([weights[n].abs()[new[n]] for n in names])
        removed_scores = torch.cat([weights[n].abs()[mask[n] & ~new[n]] for n in names])
        assert removed_scores.max() <= alive_scores.min()  # ranked together across layers
        mask = new
    assert len({round(s, 3) for s in mask.layer_sparsity().values()}) > 1  # global: layers end at different sparsities
    mask.apply(model)
    after = model.state_dict()
    for key, value in before.items():
        if key not in names:
            assert torch.equal(after[key], value), key


def synthetic_cifar(n_train: int = 64, n_eval: int = 32) -> ImageData:
    generator = torch.Generator().manual_seed(0)

    def images(n):
        return torch.randn(n, 3, 32, 32, generator=generator), torch.randint(0, 10, (n,), generator=generator)

    return ImageData(*images(n_train), *images(n_eval), *images(n_eval), num_classes=10)


TINY = [
    "--width",
    "0.0625",
    "--train_iterations",
    "12",
    "--eval_every",
    "6",
    "--bs",
    "16",
    "--lr",
    "0.05",
    "--seed",
    "3",
]


def tiny_recipe(vgg, args, weights_seen: list):
    recipe = vgg.trainer.build_recipe(args, synthetic_cifar(), "cpu")
    evaluate = recipe.evaluate

    def recording_evaluate(model):
        weights_seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return evaluate(model)

    recipe.evaluate = recording_evaluate
    return recipe


def tiny_run_directory(vgg, tmp_path: Path, name: str, argv: list[str]):
    """A run directory named from the tiny settings, under its own folder `name` so that runs whose settings
    agree (a dense run and one that reuses it, say) stay apart."""
    args = vgg.main.parse_args([*TINY, *argv, "--output_dir", str(tmp_path / name)])
    return args, RunDirectory(args.output_dir, args)


def run_tiny(vgg, tmp_path: Path, name: str, argv: list[str], settings: IMPSettings, weights_seen: list | None = None):
    args, directory = tiny_run_directory(vgg, tmp_path, name, argv)
    seen = [] if weights_seen is None else weights_seen
    with directory as run:
        torch.manual_seed(settings.seed)
        rows = run_imp(run, tiny_recipe(vgg, args, seen), settings, quiet=True)
        return rows, run.load_state()


def test_late_rewinding_restores_iteration_k_with_pruned_weights_zero(vgg, tmp_path):
    k = 4
    dense_rows, dense = run_tiny(vgg, tmp_path, "dense", [], IMPSettings(rounds=0, seed=3, snapshot_iterations=(k,)))
    seen: list = []
    settings = IMPSettings(rounds=2, seed=3, rewind_iteration=k)
    rows, state = run_tiny(vgg, tmp_path, "imp", ["--rewind_iteration", str(k)], settings, seen)
    # The run captured the same weights at iteration k as the dense run's snapshot.
    for key, value in dense["snapshots"][k].items():
        assert torch.equal(state["rewind"][key], value), key
    # Evaluations: round 0 at 0, 6, 12; rounds 1 and 2 start at k (before any step) then 6, 12.
    assert len(seen) == 3 + 3 + 3
    conv = vgg.models.conv_weight_names(vgg.models.vgg19(0.0625))
    for first_eval in (seen[3], seen[6]):
        for key, value in state["rewind"].items():
            loaded = first_eval[key]
            if key in conv:
                alive = loaded != 0
                assert torch.equal(loaded[alive], value[alive]), key  # survivors exactly as at iteration k
                assert 0.05 < 1 - alive.float().mean() < 0.5 or key != conv[0]
            else:
                assert torch.equal(loaded, value), key  # BN, biases, classifier, running stats rewound too
    # After SGD with momentum and weight decay, pruned weights are still exactly zero.
    mask = Mask.from_state_dict(state["mask"])
    for name in conv:
        assert torch.count_nonzero(state["trained"][name][~mask[name]]) == 0
        assert torch.count_nonzero(seen[-1][name][~mask[name]]) == 0
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[2]["weights_remaining_pct"] == pytest.approx(100 * mask.kept() / mask.total())
    assert mask.kept() == mask.total() - round_half_up(0.2 * mask.total()) - round_half_up(
        0.2 * (mask.total() - round_half_up(0.2 * mask.total()))
    )


def test_rewind_then_sgd_with_weight_decay_keeps_mask(vgg):
    args = vgg.main.parse_args([*TINY, "--wd", "0.01"])
    torch.manual_seed(0)
    model = vgg.models.vgg19(0.0625)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    names = vgg.models.conv_weight_names(model)
    mask = vgg.pruning.vgg_pruning(model, 0.5).prune(
        magnitude_scores(saved, Mask.dense(model, names)), Mask.dense(model, names)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # training moved everything
    rewind(model, saved, mask)
    for name, param in model.named_parameters():
        if name in names:
            assert torch.count_nonzero(param[~mask[name]]) == 0
            assert torch.equal(param[mask[name]], saved[name][mask[name]])
        else:
            assert torch.equal(param, saved[name])
    optimizer = vgg.trainer.make_sgd(args)(model)
    enforce = mask.enforcer(model)
    batches = vgg.data.training_batches(synthetic_cifar(), 16, seed=0)
    for step in range(5):
        loss = torch.nn.functional.cross_entropy(model(batches(step)[0]), batches(step)[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        enforce()
    params = dict(model.named_parameters())
    for name in names:
        assert torch.count_nonzero(params[name][~mask[name]]) == 0
    # Without the enforcer, momentum and weight decay would have moved pruned weights off zero.
    optimizer.step()
    assert any(torch.count_nonzero(params[n][~mask[n]]) > 0 for n in names)


def test_dense_round_from_train_py_gives_the_same_run(vgg, tmp_path):
    """main.py reusing train.py's dense round ends exactly as a run that trains round 0 itself."""
    k = 6
    _, dense = run_tiny(vgg, tmp_path, "dense", [], IMPSettings(rounds=0, seed=3, snapshot_iterations=(k, 2)))
    own_rows, own = run_tiny(vgg, tmp_path, "own", [], IMPSettings(rounds=2, seed=3, rewind_iteration=k))
    reused_settings = IMPSettings(rounds=2, seed=3, rewind_iteration=k)
    reused_settings.initial_state = lambda: start_from_dense(dense, reused_settings)
    reused_rows, reused = run_tiny(vgg, tmp_path, "reused", [], reused_settings)
    strip = [{k: v for k, v in row.items() if k != "wall_time_s"} for row in own_rows]
    assert strip == [{k: v for k, v in row.items() if k != "wall_time_s"} for row in reused_rows]
    for key, value in own["trained"].items():
        assert torch.equal(reused["trained"][key], value), key


def test_random_pruning_keeps_per_layer_sparsity_of_the_magnitude_mask(vgg, tmp_path):
    _, dense = run_tiny(vgg, tmp_path, "dense", [], IMPSettings(rounds=0, seed=3))
    masks = {}
    for run_type in ("winning_ticket", "random_prune"):
        seen: list = []
        settings = IMPSettings(rounds=1, seed=3, run_type=run_type)
        settings.initial_state = lambda s=settings: start_from_dense(dense, s)
        _, state = run_tiny(vgg, tmp_path, run_type, [], settings, seen)
        masks[run_type] = Mask.from_state_dict(state["mask"])
        for name, keep in masks[run_type].layers.items():  # and the random mask holds during training too
            assert torch.count_nonzero(state["trained"][name][~keep]) == 0
    magnitude, random = masks["winning_ticket"], masks["random_prune"]
    assert random.kept_counts() == magnitude.kept_counts()
    assert random.jaccard(magnitude) < 0.9


def test_learning_rate_schedule_drops_at_half_and_three_quarters_with_warmup(vgg):
    args = vgg.main.parse_args(["--train_iterations", "1000", "--warmup_iterations", "100"])
    assert args.milestones == (500, 750)
    lr_at = vgg.trainer.lr_schedule(args.lr, args.milestones, args.gamma, args.warmup_iterations)
    assert lr_at(0) == pytest.approx(0.001)
    assert lr_at(49) == pytest.approx(0.05)
    assert lr_at(99) == pytest.approx(0.1)
    assert lr_at(499) == pytest.approx(0.1)
    assert lr_at(500) == pytest.approx(0.01)
    assert lr_at(749) == pytest.approx(0.01)
    assert lr_at(750) == pytest.approx(0.001)
    epochs = vgg.main.parse_args([])
    assert epochs.train_iterations == 160 * (45_000 // 64) and epochs.milestones == (80 * 703, 120 * 703)
    by_epochs = vgg.main.parse_args(["--schedule", "2", "3", "--epochs", "4"])
    assert (by_epochs.train_iterations, by_epochs.milestones) == (4 * 703, (2 * 703, 3 * 703))
    assert by_epochs.schedule is None and by_epochs.epochs is None  # inputs, resolved into the settings above
    with pytest.raises(UserError):
        vgg.main.parse_args(["--schedule", "2", "--milestones", "100"])


def test_earlier_flags_keep_their_meaning(vgg):
    parse = vgg.main.parse_args
    args = parse(["--iterations", "500", "--prunning", "random"])
    assert (args.rewind_iteration, args.run_type, args.seed, args.rounds) == (500, "random_prune", 42, 19)
    assert parse(["--pruning", "global"]).run_type == "winning_ticket"
    assert parse(["--random_reinit"]).run_type == "random_reinit"
    assert parse(["--run_type", "random_reinit"]).run_type == "random_reinit"
    assert parse(["--prune_iterations", "6"]).rounds == 5  # the earlier count included the dense round 0
    assert parse(["--prune_iterations", "6"]).identity() == parse(["--rounds", "5"]).identity()
    args = parse(["--bs", "128", "--wd", "5e-4", "--prune_rate", "0.3", "--workers", "8", "--no_augment"])
    assert (args.batch_size, args.weight_decay, args.global_prune_rate, args.augment) == (128, 5e-4, 0.3, False)
    assert args.workers is None and "workers" not in args.to_json()  # accepted, changes nothing, not saved
    for bad in (
        ["--random_reinit", "--pruning", "random"],
        ["--rewind_iteration", "100", "--train_iterations", "50"],
        ["--run_type", "winning_ticket", "--random_reinit"],
        ["--rounds", "5", "--prune_iterations", "5"],
        ["--width", "0"],
    ):
        with pytest.raises(UserError):
            parse(bad)
    assert (
        vgg.main.run_directory(parse(["--iterations", "2000", "--seed", "1"])).name
        == "vgg19-w1_winning_ticket_rewind2000_seed1"
    )
    train_args = vgg.train.parse_args(["--seed", "1", "--save_iterations", "2000", "500"])
    assert train_args.save_iterations == (500, 2000)
    dense = parse(["--seed", "1"]).training()
    assert vgg.train.run_directory(train_args) == Path(dense.output_dir) / dense.run_name()
    assert vgg.train.run_directory(train_args).name == "vgg19-w1_dense_seed1"
    with pytest.raises(UserError):
        vgg.train.parse_args(["--train_iterations", "100", "--save_iterations", "100"])


def test_main_refuses_a_dense_run_with_other_settings(vgg, tmp_path):
    from lth.storage import atomic_write_json

    dense_args = vgg.train.parse_args([*TINY, "--output_dir", str(tmp_path), "--save_iterations", "4"])
    path = vgg.train.run_directory(dense_args)
    path.mkdir()
    atomic_write_json(path / "settings.json", dense_args.to_json())
    (path / "finished").write_text("")
    other_lr = [*TINY, "--output_dir", str(tmp_path), "--lr", "0.2", "--iterations", "4"]
    args = vgg.main.parse_args(other_lr)
    # Found by name, a dense run of other settings is another directory: never reused, round 0 trained here.
    assert vgg.main.dense_round_source(args, IMPSettings(rounds=2, seed=3, rewind_iteration=4)) is None
    # Named explicitly, it is refused, naming the setting that differs.
    explicit = vgg.main.parse_args([*other_lr, "--dense_dir", str(path)])
    with pytest.raises(UserError, match="lr"):
        vgg.main.dense_round_source(explicit, IMPSettings(rounds=2, seed=3, rewind_iteration=4))
    same = vgg.main.parse_args([*TINY, "--output_dir", str(tmp_path), "--iterations", "4"])
    assert vgg.main.dense_round_source(same, IMPSettings(rounds=2, seed=3, rewind_iteration=4)) is not None
    other_k = vgg.main.parse_args([*TINY, "--output_dir", str(tmp_path), "--iterations", "5"])
    assert vgg.main.dense_round_source(other_k, IMPSettings(rounds=2, seed=3, rewind_iteration=5)) is None
    none = vgg.main.parse_args([*TINY, "--output_dir", str(tmp_path), "--dense_dir", "none"])
    assert vgg.main.dense_round_source(none, IMPSettings(rounds=2, seed=3)) is None
    # A directory of the right name holding other settings (copied or edited by hand) is refused too.
    atomic_write_json(path / "settings.json", {**dense_args.to_json(), "lr": 0.2})
    with pytest.raises(UserError, match="lr"):
        vgg.main.dense_round_source(same, IMPSettings(rounds=2, seed=3, rewind_iteration=4))


def write_rounds(vgg, root: Path, argv: tuple[str, ...] = ()) -> None:
    """rounds.csv files as main.py (and train.py) write them, every identity setting a column: 3 rewinding
    points x 3 run types x 2 seeds, plus a dense run; `argv` adds settings shared by all of them."""
    common = ["--width", "0.125", "--train_iterations", "3000", *argv, "--output_dir", str(root)]
    for k in (0, 500, 2000):
        for run_type, offset in (("winning_ticket", 0.0), ("random_prune", -5.0), ("random_reinit", -8.0)):
            for seed in (0, 1):
                rows = []
                for r in range(4):
                    remaining = 100 * 0.8**r
                    acc = 90 + seed + (offset * r if r else 0) + k / 1000
                    rows.append(
                        {
                            "round": r,
                            "weights_remaining_pct": remaining + 1e-9 * seed,
                            "sparsity_pct": 100 - remaining,
                            "early_stop_iteration": 1000,
                            "val_loss": 0.3,
                            "val_accuracy": acc,
                            "test_accuracy_early_stop": acc - 1,
                            "test_accuracy_final": acc,
                            "run_type": run_type,
                            "arch": "VGG-19",
                            "seed": seed,
                            "wall_time_s": 1.0,
                        }
                    )
                settings = vgg.main.parse_args(
                    [*common, "--rewind_iteration", str(k), "--run_type", run_type, "--seed", str(seed)]
                )
                with RunDirectory(root, settings) as run:
                    run.write_results(rows, [])
    dense = vgg.main.parse_args([*common, "--seed", "0"]).training()
    dense_row = pd.read_csv(next(root.glob("vgg19-w0p125_winning_ticket_rewind0_seed0*/rounds.csv"))).iloc[0]
    with RunDirectory(root, dense) as run:
        run.write_results([{**dense_row[ROUND_COLUMNS].to_dict(), "test_accuracy_final": 0.0}], [])
    assert "_dense_seed0" in run.name


def test_plots_build_from_rounds_csvs(vgg, tmp_path):
    write_rounds(vgg, tmp_path)
    rounds = vgg.plotter.pruning_runs(vgg.plotter.load_rounds(tmp_path))
    stats = vgg.plotter.accuracy_stats(rounds, "test_accuracy_final")
    point = stats[(stats.rewind_iteration == 500) & (stats.run_type == "random_prune") & (stats["round"] == 2)].iloc[0]
    assert (point["mean"], point["min"], point["max"], point["count"]) == (
        pytest.approx(81.0),
        pytest.approx(80.5),
        pytest.approx(81.5),
        2,
    )
    assert stats[stats["round"] == 0]["min"].min() > 50  # the dense (train.py) run is not pooled in
    written = vgg.plotter.plot_all(tmp_path, tmp_path / "figures")
    assert [p.name for p in written] == ["vgg19-w0p125_it3000_rewinding_final.png"]
    assert written[0].stat().st_size > 10_000
    subprocess.run(
        [sys.executable, str(VGG_DIR / "plotter.py"), "--results_dir", str(tmp_path), "--metric", "early_stop"],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "vgg19-w0p125_it3000_rewinding_early_stop.png").exists()


def test_runs_of_other_schedules_never_share_a_figure(vgg, tmp_path):
    """Runs that differ in any setting but the run type, rewinding point and seed get figures of their own."""
    write_rounds(vgg, tmp_path / "it3000")
    write_rounds(vgg, tmp_path / "it6000", ("--train_iterations", "6000", "--milestones", "1500", "2250"))
    write_rounds(vgg, tmp_path / "lr", ("--lr", "0.05"))
    written = vgg.plotter.plot_all(tmp_path, tmp_path / "figures")
    assert sorted(p.name for p in written) == [
        "vgg19-w0p125_it3000_lr0p05_rewinding_final.png",
        "vgg19-w0p125_it3000_lr0p1_rewinding_final.png",
        "vgg19-w0p125_it6000_lr0p1_rewinding_final.png",
    ]


def config_run_lines() -> list[str]:
    return [
        line for line in (VGG_DIR / "configs.txt").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def test_configs_cover_rewinding_points_controls_and_seeds():
    lines = config_run_lines()
    assert len(lines) == 27 and len(set(lines)) == 27
    for k in (0, 500, 2000):
        assert sum(f"--rewind_iteration {k} " in line for line in lines) == 9
    assert sum("--pruning random" in line for line in lines) == 9
    assert sum("--random_reinit" in line for line in lines) == 9
    script = (VGG_DIR / "run_experiments.sh").read_text()
    assert '#BSUB -J "vgg_lth[1-27]' in script and "#SBATCH --array=1-27" in script


@pytest.mark.parametrize("variable,index", [("LSB_JOBINDEX", 5), ("SLURM_ARRAY_TASK_ID", 27)])
def test_run_experiments_picks_the_array_line(variable, index):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LSB_JOBINDEX", "SLURM_ARRAY_TASK_ID", "LS_SUBCWD", "SLURM_SUBMIT_DIR")
    }
    env.update({variable: str(index), "LTH_PYTHON": sys.executable})
    result = subprocess.run(
        [str(VGG_DIR / "run_experiments.sh"), "--dry-run"], env=env, capture_output=True, text=True, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    wanted = config_run_lines()[index - 1]
    planned = [line for line in result.stdout.splitlines() if line.startswith("would run")]
    finished = [line for line in result.stdout.splitlines() if "finished earlier" in line]
    assert len(planned) + len(finished) == 1
    if planned:
        assert planned[0].endswith(f"main.py {wanted}")


def test_dense_round_killed_mid_round_resumes_with_the_same_snapshots(vgg, tmp_path):
    settings = IMPSettings(rounds=0, seed=3, snapshot_iterations=(2, 9))
    _, uninterrupted = run_tiny(vgg, tmp_path, "whole", ["--checkpoint_every", "4"], settings)

    args, directory = tiny_run_directory(vgg, tmp_path, "killed", ["--checkpoint_every", "4"])
    recipe = tiny_recipe(vgg, args, [])
    batches = recipe.batches

    def dies_at_10(iteration):
        if iteration == 10:
            raise KeyboardInterrupt  # killed after the checkpoint at 8, past the snapshot at 9
        return batches(iteration)

    recipe.batches = dies_at_10
    with directory as run, pytest.raises(KeyboardInterrupt):
        torch.manual_seed(3)
        run_imp(run, recipe, settings, quiet=True)
    assert (directory.path / "progress.pt").exists()
    _, resumed = run_tiny(vgg, tmp_path, "killed", ["--checkpoint_every", "4"], settings)
    assert sorted(resumed["snapshots"]) == [2, 9]
    for iteration in (2, 9):
        for key, value in uninterrupted["snapshots"][iteration].items():
            assert torch.equal(resumed["snapshots"][iteration][key], value), (iteration, key)
    for key, value in uninterrupted["trained"].items():
        assert torch.equal(resumed["trained"][key], value), key
