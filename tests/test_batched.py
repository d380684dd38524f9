"""Runs trained batched are faithful to the same runs trained alone."""

from __future__ import annotations

import pytest
import torch
from imp_fixtures import DIGITS, FixtureSettings, digits_recipe
from torch import nn

from lth.batched import Replicate, run_imp_batched
from lth.batches import ShuffledBatches
from lth.demo import DigitsMLP
from lth.errors import UserError
from lth.imp import IMPSettings, run_imp
from lth.masks import Mask
from lth.results import RunDirectory, read_csv_rows

RUNS = [(3, "winning_ticket", "iterative"), (4, "random_reinit", "iterative"), (5, "random_prune", "oneshot"),
        (6, "winning_ticket", "oneshot")]  # fmt: skip


class DropoutDigits(DigitsMLP):
    """The digits MLP with dropout after each hidden layer, registered in the opposite order to their calls."""

    def __init__(self):
        super().__init__()
        self.second = nn.Dropout(0.5)
        self.first = nn.Dropout(0.3)

    def forward(self, x):
        hidden = self.first(self.layers[2](self.layers[1](self.layers[0](x))))
        return self.layers[5](self.second(self.layers[4](self.layers[3](hidden))))


def job(root, seed, run_type, mode, eval_every=10, iterations=40, rounds=2, dropout=False, compile=False):
    recipe = digits_recipe(iterations=iterations, eval_every=eval_every)
    recipe.compile = compile
    if dropout:
        recipe.model_factory = DropoutDigits
    recipe.batches = ShuffledBatches(DIGITS.train_x, DIGITS.train_y, 32, seed=seed)  # each run's own data order
    cfg = IMPSettings(rounds=rounds, seed=seed, mode=mode, run_type=run_type)
    settings = FixtureSettings(name="b", seed=seed, run_type=run_type, imp_mode=mode)
    return RunDirectory(root, settings), recipe, cfg


def alone(root, *spec, **kw):
    run, recipe, cfg = job(root, *spec, **kw)
    with run:
        run_imp(run, recipe, cfg, quiet=True)
    return run


def batched(root, specs, **kw):
    jobs = [job(root, *spec, **kw) for spec in specs]
    for run, _, _ in jobs:
        run.open()
    try:
        run_imp_batched([Replicate(run, recipe, cfg) for run, recipe, cfg in jobs], quiet=True)
    finally:
        for run, _, _ in jobs:
            run.close()
    return [run for run, _, _ in jobs]


def masks_per_round(run) -> Mask:
    return Mask.from_state_dict(run.load_state()["mask"])


@pytest.mark.parametrize("rounds", [1, 2])
def test_batched_runs_match_runs_trained_alone(tmp_path, rounds):
    """Every round's mask (the last mask of runs stopped after 1 and after 2 rounds), sparsity and curve."""
    together = batched(tmp_path / "batched", RUNS, rounds=rounds)
    for spec, run in zip(RUNS, together, strict=True):
        reference = alone(tmp_path / "alone", *spec, rounds=rounds)
        a, b = read_csv_rows(reference.rounds_csv), read_csv_rows(run.rounds_csv)
        assert [r["weights_remaining_pct"] for r in a] == [r["weights_remaining_pct"] for r in b], "exact sparsity"
        assert masks_per_round(reference).equals(masks_per_round(run)), "the same mask after the last round"
        for x, y in zip(read_csv_rows(reference.curve_csv), read_csv_rows(run.curve_csv), strict=True):
            for column in ("train_loss", "val_loss", "test_accuracy"):
                if x[column] != "nan":
                    assert float(y[column]) == pytest.approx(float(x[column]), rel=1e-4), (spec, column)
        assert (run.path / "batched.json").exists() and (run.path / "finished").exists()


def test_figures_and_summaries_keep_batched_runs_apart_from_the_same_runs_trained_alone(tmp_path):
    """Batched runs drift from alone ones by rounding: one tree holding both is two conditions, never averaged."""
    from lth.cli import summary_table
    from lth.plotting import condition_groups, load_curves, load_rounds

    batched(tmp_path / "tree" / "batched", RUNS[:2], rounds=1)
    for spec in RUNS[:2]:
        alone(tmp_path / "tree" / "alone", *spec, rounds=1)
    rounds = load_rounds(tmp_path / "tree")
    assert sorted(rounds.groupby("engine")["run"].nunique().items()) == [("alone", 2), ("batched", 2)]
    assert set(load_curves(tmp_path / "tree")["engine"]) == {"alone", "batched"}
    groups = condition_groups(rounds)
    assert len(groups) == 2 and {setting["engine"] for setting, _ in groups} == {"alone", "batched"}
    table = summary_table(str(tmp_path / "tree"), "test_accuracy_early_stop")
    assert (table.groupby(["engine", "run_type", "round"])["count"].max() == 1).all(), "one run each, never pooled"


def test_per_iteration_losses_agree_over_the_first_50_iterations(tmp_path):
    spec = RUNS[0]
    reference = alone(tmp_path / "alone", *spec, eval_every=1, iterations=50, rounds=0)
    (run, *_) = batched(tmp_path / "batched", [spec, RUNS[1], RUNS[2]], eval_every=1, iterations=50, rounds=0)
    a = [float(r["train_loss"]) for r in read_csv_rows(reference.curve_csv)[1:]]
    b = [float(r["train_loss"]) for r in read_csv_rows(run.curve_csv)[1:]]
    assert len(a) == 50 and b == pytest.approx(a, rel=1e-4)


def test_a_replicate_does_not_depend_on_which_others_share_its_batch(tmp_path):
    first = batched(tmp_path / "one", [RUNS[0], RUNS[1]])[0]
    second = batched(tmp_path / "two", [RUNS[0], RUNS[2], RUNS[3]])[0]
    assert masks_per_round(first).equals(masks_per_round(second))
    a, b = read_csv_rows(first.curve_csv), read_csv_rows(second.curve_csv)
    assert [float(r["val_loss"]) for r in a] == pytest.approx([float(r["val_loss"]) for r in b], rel=1e-6)


def test_a_batched_run_is_never_continued_alone_and_is_finished_for_everyone(tmp_path):
    (run, *_) = batched(tmp_path, [RUNS[0], RUNS[1]])
    again = alone(tmp_path, *RUNS[0])  # finished: nothing to do
    assert again.path == run.path
    (run.path / "finished").unlink()
    with pytest.raises(UserError, match="batched"):
        alone(tmp_path, *RUNS[0])


def test_dropout_replicates_draw_the_masks_they_draw_alone_whoever_shares_their_batch(tmp_path):
    """Per-iteration losses within 1e-4 of the run alone in both rounds, the same pruning mask, in two batches."""
    kw = {"eval_every": 1, "iterations": 50, "rounds": 1, "dropout": True}
    reference = alone(tmp_path / "alone", *RUNS[0], **kw)
    first = batched(tmp_path / "one", [RUNS[0], RUNS[1]], **kw)[0]
    second = batched(tmp_path / "two", [RUNS[2], RUNS[0], RUNS[3]], **kw)[1]
    losses = [float(r["train_loss"]) for r in read_csv_rows(reference.curve_csv) if r["train_loss"] != "nan"]
    assert len(losses) == 100
    for run in (first, second):
        assert masks_per_round(reference).equals(masks_per_round(run))
        assert [float(r["train_loss"]) for r in read_csv_rows(run.curve_csv) if r["train_loss"] != "nan"] == (
            pytest.approx(losses, rel=1e-4)
        )
    no_dropout = alone(tmp_path / "plain", *RUNS[0], eval_every=1, iterations=50, rounds=1)
    plain = [float(r["train_loss"]) for r in read_csv_rows(no_dropout.curve_csv) if r["train_loss"] != "nan"]
    assert plain != pytest.approx(losses, rel=1e-2), "dropout was active"


class FunctionalDropout(DigitsMLP):
    def forward(self, x):
        return torch.nn.functional.dropout(super().forward(x), 0.2, self.training)


class RepeatedDropout(DropoutDigits):
    def forward(self, x):
        hidden = self.second(self.layers[2](self.layers[1](self.layers[0](x))))
        return self.layers[5](self.second(self.layers[4](self.layers[3](hidden))))


@pytest.mark.parametrize(
    ("factories", "message"),
    [
        ((FunctionalDropout, FunctionalDropout), "random numbers other than nn.Dropout"),
        ((RepeatedDropout, RepeatedDropout), "calls a dropout layer twice"),
        ((DigitsMLP, DropoutDigits), "differ in more than seed"),
    ],
)
def test_networks_whose_draws_cannot_be_kept_per_replicate_are_refused(tmp_path, factories, message):
    jobs = [job(tmp_path, *spec) for spec in RUNS[:2]]
    for (_, recipe, _), factory in zip(jobs, factories, strict=True):
        recipe.model_factory = factory
    for run, _, _ in jobs:
        run.open()
    try:
        with pytest.raises(UserError, match=message):
            run_imp_batched([Replicate(run, recipe, cfg) for run, recipe, cfg in jobs], quiet=True)
    finally:
        for run, _, _ in jobs:
            run.close()
    assert not list(tmp_path.rglob("batched.json")), "refused before any run is marked batched: each may run alone"


def test_compiled_training_alone_and_batched_agrees_with_uncompiled(tmp_path):
    """`--compile` (torch.compile of the training step) changes how, not what: losses within 1e-4, same masks."""
    kw = {"eval_every": 1, "iterations": 30, "rounds": 1, "dropout": True}
    reference = alone(tmp_path / "eager", *RUNS[0], **kw)
    compiled_alone = alone(tmp_path / "alone", *RUNS[0], **kw, compile=True)
    compiled_batched = batched(tmp_path / "batched", [RUNS[0], RUNS[1]], **kw, compile=True)[0]
    losses = [float(r["train_loss"]) for r in read_csv_rows(reference.curve_csv) if r["train_loss"] != "nan"]
    for run in (compiled_alone, compiled_batched):
        assert masks_per_round(reference).equals(masks_per_round(run))
        assert [float(r["train_loss"]) for r in read_csv_rows(run.curve_csv) if r["train_loss"] != "nan"] == (
            pytest.approx(losses, rel=1e-4)
        )


class Interrupt(Exception):
    pass


@pytest.mark.parametrize(("die_at", "dropout"), [(5, False), (9, False), (5, True)])
def test_a_killed_batched_job_resumes_to_identical_results(tmp_path, die_at, dropout):
    from imp_fixtures import csv_without_wall_time

    reference = batched(tmp_path / "ref", RUNS[:3], eval_every=10, dropout=dropout)
    jobs = [job(tmp_path / "killed", *spec, eval_every=10, dropout=dropout) for spec in RUNS[:3]]
    for _, recipe, _ in jobs:
        recipe.schedule.checkpoint_every = 20
    calls = {"n": 0}
    original = jobs[0][1].evaluate

    def evaluate_then_die(model):
        calls["n"] += 1
        if calls["n"] == die_at:  # inside round 0 after its checkpoint at 20 (5), or inside round 1 (9)
            raise Interrupt
        return original(model)

    jobs[0][1].evaluate = evaluate_then_die
    for run, _, _ in jobs:
        run.open()
    with pytest.raises(Interrupt):
        run_imp_batched([Replicate(run, recipe, cfg) for run, recipe, cfg in jobs], quiet=True)
    for run, _, _ in jobs:
        run.close()
    resumed = batched(tmp_path / "killed", RUNS[:3], eval_every=10, dropout=dropout)
    for a, b in zip(reference, resumed, strict=True):
        assert csv_without_wall_time(a.rounds_csv) == csv_without_wall_time(b.rounds_csv)
        assert a.curve_csv.read_bytes() == b.curve_csv.read_bytes()


def test_sweep_batch_groups_lines_and_trains_them_together(tmp_path, capsys):
    from conftest import REPO, require_data, tiny_mnist

    from lth.cli import main as lth

    tiny_mnist(tmp_path / "data", require_data("MNIST/raw"))
    common = f"--iterations 30 --eval_every 15 --rounds 1 --quiet --device cpu --data_dir {tmp_path / 'data'} --output_dir {tmp_path / 'runs'}"
    config = tmp_path / "configs.txt"
    config.write_text(f"--trial 0 {common}\n--trial 0 --random_reinit {common}\n--trial 0 --lr 0.01 {common}\n")
    script = str(REPO / "Lenet-300-100" / "main.py")
    with pytest.raises(SystemExit) as done:
        lth(["sweep", str(config), "--script", script, "--batch"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "3 lines in 2 batch(es)" in out, "the --lr 0.01 line is another condition: its own unit"
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 3 and all((run / "finished").exists() for run in runs)
    assert sum((run / "batched.json").exists() for run in runs) == 2


def test_a_line_of_one_flag_is_a_line_not_an_option():
    import shlex

    from lth.cli import build_parser, protect_lines

    argv = ["batch", "main.py", "--lines", "--random_reinit", "--trial 1", "--trial 2 --random_prune"]
    lines = build_parser().parse_args(protect_lines(argv)).lines
    assert [shlex.split(line) for line in lines] == [
        ["--random_reinit"],
        ["--trial", "1"],
        ["--trial", "2", "--random_prune"],
    ]


def test_max_batch_splits_a_group_into_batches_that_fit_and_array_tasks_follow(tmp_path, capsys, monkeypatch):
    from conftest import REPO

    from lth.cli import main as lth

    config = tmp_path / "configs.txt"
    common = f"--iterations 30 --rounds 1 --quiet --device cpu --output_dir {tmp_path / 'runs'}"
    config.write_text("".join(f"--trial {t} {common}\n" for t in range(5)))
    script = str(REPO / "Lenet-300-100" / "main.py")
    with pytest.raises(SystemExit) as done:
        lth(["sweep", str(config), "--script", script, "--max_batch", "2", "--dry-run"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "5 lines in 3 batch(es)" in out
    assert out.count("would run line") == 3 and "would run line 5: main.py --trial 4" in out, "the last one alone"
    with pytest.raises(SystemExit):
        lth(["sweep", str(config), "--script", script, "--batch", "--max_batch", "2", "--submit", "slurm"])
    job = (tmp_path / "configs.slurm.sh").read_text()
    assert "#SBATCH --array=1-3" in job and "--batch --max_batch 2" in job
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    with pytest.raises(SystemExit):
        lth(["sweep", str(config), "--script", script, "--batch", "--max_batch", "2", "--dry-run"])
    assert "would run line 3: main.py batched: --trial 2" in capsys.readouterr().out, "task 2: the second batch"


def test_entry_scripts_name_several_runs_at_once_and_train_them_batched_sharing_energy(tmp_path, monkeypatch):
    from conftest import family_module, require_data, tiny_mnist

    from lth.experiment import several_runs

    assert several_runs(["--trial", "0", "--lr", "0.1"]) is None
    lines = several_runs(["--trial", "0", "1", "--iterations", "5", "--run_type", "winning_ticket", "random_reinit"])
    assert sorted(map(tuple, lines)) == sorted(
        ("--iterations", "5", "--trial", t, "--run_type", r) for t in "01" for r in ("winning_ticket", "random_reinit")
    )
    tiny_mnist(tmp_path / "data", require_data("MNIST/raw"))
    main = family_module("Lenet-300-100", "main")
    monkeypatch.setenv("LTH_ENERGY", "on")
    main.main(["--trial", "0", "1", "--mode", "iterative", "oneshot", "--iterations", "30", "--eval_every", "15",
               "--rounds", "1", "--quiet", "--device", "cpu", "--data_dir", str(tmp_path / "data"),
               "--output_dir", str(tmp_path / "runs"), "--carbon_intensity", "100", "--batch"])  # fmt: skip
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 4 and all((r / "finished").exists() and (r / "batched.json").exists() for r in runs)
    for round_index in (0, 1):  # the batch's energy, metered once and shared evenly
        shares = [read_csv_rows(r / "rounds.csv")[round_index] for r in runs]
        assert float(shares[0]["energy_kwh"]) > 0 and len({row["energy_kwh"] for row in shares}) == 1
        assert all(row["energy_method"].endswith("; shared evenly by 4 batched runs") for row in shares)
        assert float(shares[0]["co2_kg"]) == pytest.approx(float(shares[0]["energy_kwh"]) * 100 / 1000, rel=1e-3)


@pytest.mark.slow
def test_batchnorm_replicates_keep_their_own_statistics_and_match_vgg_alone(tmp_path):
    from conftest import family_module
    from test_resume_kill import random_cifar

    random_cifar(tmp_path / "data")
    main = family_module("VGG", "main")
    # Evaluated at each round's start and end only: evaluating VGG's 5,000 validation images is most of the time.
    common = ["--width", "0.0625", "--train_iterations", "8", "--eval_every", "8", "--rounds", "1", "--dense_dir",
              "none", "--batch_size", "16", "--quiet", "--device", "cpu", "--data_dir", str(tmp_path / "data")]  # fmt: skip
    main.main([*common, "--seed", "0", "1", "--output_dir", str(tmp_path / "batched"), "--batch"])
    for seed in ("0", "1"):
        main.run_one([*common, "--seed", seed, "--output_dir", str(tmp_path / "alone")])
    for reference in sorted((tmp_path / "alone").iterdir()):
        run = tmp_path / "batched" / reference.name
        assert (run / "batched.json").exists()
        a, b = read_csv_rows(reference / "curve.csv"), read_csv_rows(run / "curve.csv")
        assert [float(r["val_loss"]) for r in b] == pytest.approx([float(r["val_loss"]) for r in a], rel=1e-4)
        assert read_csv_rows(reference / "rounds.csv")[1]["weights_remaining_pct"] == read_csv_rows(
            run / "rounds.csv")[1]["weights_remaining_pct"]  # fmt: skip


def test_a_run_started_alone_is_continued_alone_when_its_line_joins_a_batch(tmp_path, capsys):
    from conftest import family_module, require_data, tiny_mnist

    tiny_mnist(tmp_path / "data", require_data("MNIST/raw"))
    common = ["--iterations", "30", "--eval_every", "15", "--quiet", "--device", "cpu", "--data_dir",
              str(tmp_path / "data"), "--output_dir", str(tmp_path / "runs")]  # fmt: skip

    main = family_module("Lenet-300-100", "main")
    main.run_one([*common, "--trial", "0", "--rounds", "1"])
    state = next((tmp_path / "runs").iterdir()) / "state.pt"
    (state.parent / "finished").unlink()  # as if stopped after its rounds: state saved, trained alone
    main.ENTRY.run_lines([[*common, "--trial", t, "--rounds", "1"] for t in ("0", "1", "2")])
    out = capsys.readouterr().out
    assert "started alone earlier; training it alone" in out and "training 2 runs batched" in out
    runs = sorted((tmp_path / "runs").iterdir())
    assert [(r / "batched.json").exists() for r in runs] == [False, True, True]
    assert all((r / "finished").exists() for r in runs)


def _run_fingerprint(run) -> dict:
    """What a run computed, byte for byte: its CSVs without the cost columns, its masks' files and the tensors of
    its saved state (initial, rewind and trained weights, mask)."""
    from imp_fixtures import csv_without_wall_time

    from lth.results import RunFiles

    files = RunFiles(run)
    state = files.load_state()
    tensors = {
        f"{key}.{name}": tensor.numpy().tobytes()
        for key in ("init", "trained", "dense_trained", "mask")
        for name, tensor in sorted((state[key] or {}).items())
    }
    masks = {path.name: path.read_bytes() for path in sorted((run / files.MASKS).glob("*.safetensors"))}
    return {
        "rounds": csv_without_wall_time(files.rounds_csv),
        "curve": csv_without_wall_time(files.curve_csv),
        "masks": masks,
        "tensors": tensors,
        "rows": len(state["rows"]),
    }


def test_lenet_replicates_are_bitwise_the_same_in_batches_of_one_two_and_three_and_after_a_kill(tmp_path):
    """A replicate's results do not depend on which runs share its batch, bit for bit on a CPU: the property that
    lets any batch resume a batched run. LeNet on real (tiny) MNIST, three runs: A in batches of one, two and
    three; then a batch of A and B killed inside round 1 (both keep a `failed` note), A resumed beside C (its round
    starts again: C holds no progress) and B resumed alone (from its saved progress): every CSV cell but the cost
    columns, every mask file and every saved tensor equal the uninterrupted batch of three."""
    import contextlib

    from conftest import family_module, require_data, tiny_mnist

    from lth.experiment import open_job

    tiny_mnist(tmp_path / "data", require_data("MNIST/raw"))
    entry = family_module("Lenet-300-100", "main").ENTRY
    common = ["--iterations", "40", "--eval_every", "10", "--checkpoint_every", "10", "--rounds", "2", "--quiet",
              "--device", "cpu", "--data_dir", str(tmp_path / "data")]  # fmt: skip
    # One condition (a batch holds only runs that differ in seed, trial, run type and mode).
    runs = {"A": ["--trial", "0"], "B": ["--trial", "1", "--mode", "oneshot"], "C": ["--trial", "2"]}

    def lines(names, out):
        return [[*runs[n], *common, "--output_dir", str(tmp_path / out)] for n in names]

    def run_path(name, out):
        settings = entry.parse_args(lines([name], out)[0])
        return tmp_path / out / settings.run_name()

    entry.run_lines(lines("A", "one"))
    entry.run_lines(lines("AB", "two"))
    entry.run_lines(lines("CAB", "three"))
    reference = {name: _run_fingerprint(run_path(name, "three")) for name in "ABC"}
    assert reference["A"]["rows"] == 3 and reference["A"]["tensors"] != reference["B"]["tensors"]
    assert _run_fingerprint(run_path("A", "one")) == reference["A"], "a batch of one"
    for name in "AB":
        assert _run_fingerprint(run_path(name, "two")) == reference[name], f"{name} in a batch of two"

    jobs = [entry.job(entry.parse_args(line), "cpu") for line in lines("AB", "killed")]
    calls = {"n": 0}
    with contextlib.ExitStack() as stack:
        replicates = [open_job(job, stack) for job in jobs]
        evaluate = replicates[0].recipe.evaluate

        def evaluate_then_die(model):
            calls["n"] += 1
            if calls["n"] == 8:  # round 1 at iteration 20, after its checkpoint at 10
                raise Interrupt
            return evaluate(model)

        replicates[0].recipe.evaluate = evaluate_then_die
        with pytest.raises(Interrupt):
            run_imp_batched(replicates, quiet=True)
    for name in "AB":
        assert (run_path(name, "killed") / "failed").read_text().startswith("Interrupt"), "a crashed batch says so"
        assert (run_path(name, "killed") / "progress.pt").exists()
    entry.run_lines(lines("AC", "killed"))
    entry.run_lines(lines("B", "killed"))
    for name in "ABC":
        path = run_path(name, "killed")
        assert not (path / "failed").exists() and (path / "finished").exists()
        assert _run_fingerprint(path) == reference[name], f"{name} after the kill"


@pytest.mark.slow
def test_lenet_batched_and_alone_agree_over_seeds_though_not_to_the_digit(tmp_path):
    """What holds between the engines (README, "How faithful"): LeNet-300-100 on real MNIST images, 5 seeds, two
    rounds of 300 iterations, each seed alone and all five in one batch. The seeds' mean test accuracy agrees within
    their spread in both rounds, no seed moves by more than 2 points, and most seeds prune the same mask."""
    import statistics

    from conftest import family_module, require_data, tiny_mnist

    from lth.mask_file import load_mask_file

    tiny_mnist(tmp_path / "data", require_data("MNIST/raw"))
    entry = family_module("Lenet-300-100", "main").ENTRY
    argv = ["--iterations", "300", "--eval_every", "300", "--rounds", "1", "--checkpoint_every", "0", "--quiet",
            "--device", "cpu", "--data_dir", str(tmp_path / "data")]  # fmt: skip
    seeds = [1, 2, 3, 4, 5]
    alone_runs = [entry.run_one([*argv, "--output_dir", str(tmp_path / "alone"), "--seed", str(s)]) for s in seeds]
    batched_runs = entry.run_lines(
        [[*argv, "--output_dir", str(tmp_path / "batched"), "--seed", str(s)] for s in seeds]
    )

    def accuracy(run, round_index):
        return float(read_csv_rows(run / "rounds.csv")[round_index]["test_accuracy_final"])

    for round_index in (0, 1):
        a = [accuracy(run, round_index) for run in alone_runs]
        b = [accuracy(run, round_index) for run in batched_runs]
        spread = statistics.stdev(a + b)
        assert abs(statistics.mean(a) - statistics.mean(b)) < spread, (round_index, a, b)
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 2.0, (round_index, a, b)
    same = [
        load_mask_file(x / "masks" / "round_01.safetensors")[0].equals(
            load_mask_file(y / "masks" / "round_01.safetensors")[0]
        )
        for x, y in zip(alone_runs, batched_runs, strict=True)
    ]
    assert sum(same) >= 3, same
