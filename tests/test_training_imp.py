"""The training loop and the IMP loop: masks hold, rewinding, controls, selection, determinism, resume."""

from __future__ import annotations

import json

import pytest
import torch
from imp_fixtures import DIGITS, FixtureSettings, csv_without_wall_time, digits_recipe

from lth.batches import ShuffledBatches
from lth.demo import DigitsMLP
from lth.imp import IMPSettings, round_mask_and_weights, run_imp
from lth.masks import Mask
from lth.pruning import magnitude_scores
from lth.results import RunDirectory
from lth.rewinding import fresh_initialization, rewind, snapshot
from lth.training import RoundSchedule, classification_loss, early_stop_summary, train_round


def half_pruned_mask(model) -> Mask:
    generator = torch.Generator().manual_seed(0)
    return Mask(
        {n: torch.rand(p.shape, generator=generator) < 0.5 for n, p in model.named_parameters() if n.endswith("weight")}
    )


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum_weight_decay"])
def test_pruned_weights_stay_exactly_zero_through_training(optimizer):
    torch.manual_seed(0)
    model = DigitsMLP()
    mask = half_pruned_mask(model)
    mask.apply(model)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    # A warm optimiser state with momentum pointing at the pruned entries: the worst case.
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    mask.apply(model)
    batches = ShuffledBatches(DIGITS.train_x, DIGITS.train_y, 32, seed=0)
    train_round(
        model,
        opt,
        batches,
        classification_loss,
        lambda m: {"val_loss": 0.0},
        RoundSchedule(30, 10),
        enforce_mask=mask.enforcer(model),
    )
    params = dict(model.named_parameters())
    for name, keep in mask.layers.items():
        assert (params[name][~keep] == 0).all()
        assert (params[name][keep] != 0).float().mean() > 0.99  # the survivors did train


def test_a_cpu_run_checkpoints_and_resumes_without_touching_cuda(monkeypatch):
    """On a GPU host a CPU run must not start a CUDA context (it would take memory on a GPU, and a forked process
    cannot start one): its checkpoints hold no CUDA generator state."""

    def no_cuda(*args, **kwargs):
        raise AssertionError("a CPU run touched the CUDA generator")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", no_cuda)
    monkeypatch.setattr(torch.cuda, "set_rng_state", no_cuda)
    torch.manual_seed(0)
    model = DigitsMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # Adam's step itself asks an available GPU for its stream
    batches = ShuffledBatches(DIGITS.train_x, DIGITS.train_y, 32, seed=0)
    saved = []
    schedule = RoundSchedule(20, 10, checkpoint_every=10)
    train_round(model, optimizer, batches, classification_loss, lambda m: {}, schedule, on_checkpoint=saved.append)
    assert saved and all(point["cuda_rng"] is None for point in saved)
    from_a_gpu_run = {**saved[0], "cuda_rng": torch.zeros(16, dtype=torch.uint8)}  # (a checkpoint moved to a CPU)
    train_round(model, optimizer, batches, classification_loss, lambda m: {}, schedule, resume=from_a_gpu_run)


def test_rewinding_restores_saved_tensors_on_survivors():
    torch.manual_seed(0)
    model = DigitsMLP()
    saved = snapshot(model)
    mask = half_pruned_mask(model)
    for p in model.parameters():
        p.data.add_(1.0)
    rewind(model, saved, mask)
    params = dict(model.named_parameters())
    for name, tensor in saved.items():
        if name in mask.layers:
            assert torch.equal(params[name][mask[name]], tensor[mask[name]])
            assert (params[name][~mask[name]] == 0).all()
        else:
            assert torch.equal(params[name], tensor)  # biases rewind too, and are never masked


def test_random_reinit_keeps_mask_changes_weights_and_is_seeded(tmp_path):
    recipe = digits_recipe(iterations=20, eval_every=20)
    settings = IMPSettings(rounds=2, seed=5, run_type="random_reinit")
    with RunDirectory(tmp_path, FixtureSettings(name="rr")) as run:
        run_imp(run, recipe, settings, quiet=True)
        state = run.load_state()
    ticket = IMPSettings(rounds=2, seed=5, run_type="winning_ticket")
    mask_rr, weights_rr = round_mask_and_weights(2, state, recipe, settings)
    mask_wt, weights_wt = round_mask_and_weights(2, state, recipe, ticket)
    assert mask_rr.equals(mask_wt), "the control uses the same mask"
    assert not torch.equal(weights_rr["layers.1.weight"], weights_wt["layers.1.weight"])
    assert weights_wt["layers.1.weight"].equal(state["init"]["layers.1.weight"])
    again = fresh_initialization(DigitsMLP, 123)
    assert torch.equal(again["layers.1.weight"], fresh_initialization(DigitsMLP, 123)["layers.1.weight"])
    # Same init distribution: Glorot normal's std for a 64->100 layer.
    assert weights_rr["layers.1.weight"].std().item() == pytest.approx((2 / (64 + 100)) ** 0.5, rel=0.15)


def test_iterative_pruning_ranks_weights_after_retraining(tmp_path):
    recipe = digits_recipe(iterations=40, eval_every=20)
    settings = IMPSettings(rounds=1, seed=0)
    with RunDirectory(tmp_path, FixtureSettings(name="wt")) as run:
        run_imp(run, recipe, settings, quiet=True)
        state = run.load_state()
    mask_next, _ = round_mask_and_weights(2, state, recipe, IMPSettings(rounds=2, seed=0))
    previous = Mask.from_state_dict(state["mask"])
    from_trained = recipe.policy.prune(magnitude_scores(state["trained"], previous), previous)
    from_stale = recipe.policy.prune(magnitude_scores(state["dense_trained"], previous), previous)
    assert mask_next.equals(from_trained)
    assert not mask_next.equals(from_stale), "round 1's retraining must change the ranking"


def test_early_stop_selects_on_validation_never_test():
    curve = [
        {"iteration": 0, "val_loss": 2.0, "val_accuracy": 10.0, "test_accuracy": 10.0},
        {"iteration": 100, "val_loss": 0.5, "val_accuracy": 90.0, "test_accuracy": 80.0},
        {"iteration": 200, "val_loss": 0.7, "val_accuracy": 88.0, "test_accuracy": 99.0},
        {"iteration": 300, "val_loss": 0.5, "val_accuracy": 91.0, "test_accuracy": 95.0},
    ]
    summary = early_stop_summary(curve)
    assert summary["early_stop_iteration"] == 100  # lowest validation loss, earliest on ties
    assert summary["test_accuracy_early_stop"] == 80.0
    assert summary["test_accuracy_final"] == 95.0


def test_late_rewinding_uses_weights_at_iteration_k(tmp_path):
    recipe = digits_recipe(iterations=40, eval_every=20)
    settings = IMPSettings(rounds=1, seed=0, rewind_iteration=10)
    with RunDirectory(tmp_path, FixtureSettings(name="late")) as run:
        run_imp(run, recipe, settings, quiet=True)
        state = run.load_state()
    # Replay the dense run's first 10 iterations by hand and compare with the saved rewind point.
    torch.manual_seed(0)
    model = DigitsMLP()
    model.load_state_dict(state["init"])
    optimizer = recipe.make_optimizer(model)
    train_round(
        model, optimizer, recipe.batches, classification_loss, lambda m: {"val_loss": 0.0}, RoundSchedule(10, 10)
    )
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state["rewind"][name])
    mask, weights = round_mask_and_weights(1, state, recipe, settings)
    assert weights is state["rewind"]
    curve = [line for line in (run.curve_csv).read_text().splitlines()[1:] if line.startswith("1,")]
    assert curve[0].split(",")[1] == "10", "after rewinding to k the round trains from iteration k"


def run_to_end(path, name, settings, recipe=None) -> RunDirectory:
    with RunDirectory(path, FixtureSettings(name=name)) as run:
        run_imp(run, recipe or digits_recipe(checkpoint_every=20), settings, quiet=True)
    return run


def test_same_seed_gives_identical_csvs(tmp_path):
    settings = IMPSettings(rounds=2, seed=3)
    a = run_to_end(tmp_path / "a", "run", settings)
    b = run_to_end(tmp_path / "b", "run", settings)
    assert csv_without_wall_time(a.rounds_csv) == csv_without_wall_time(b.rounds_csv)
    assert a.curve_csv.read_bytes() == b.curve_csv.read_bytes()


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("where", ["between_rounds", "inside_round"])
def test_interrupted_run_resumes_to_identical_results(tmp_path, where):
    settings = IMPSettings(rounds=3, seed=7, run_type="random_reinit")
    reference = run_to_end(tmp_path / "ref", "run", settings)

    recipe = digits_recipe(checkpoint_every=20)
    calls = {"n": 0}
    original_evaluate = recipe.evaluate

    def evaluate_then_die(model):
        calls["n"] += 1
        # 4 evaluations per round (0, 20, 40, 60): die in round 1 after its checkpoint at iteration 40,
        # or right after round 1's results were saved.
        if where == "inside_round" and calls["n"] == 7:
            raise Interrupt
        if where == "between_rounds" and calls["n"] == 9:
            raise Interrupt
        return original_evaluate(model)

    recipe.evaluate = evaluate_then_die
    with pytest.raises(Interrupt):
        run_to_end(tmp_path / "killed", "run", settings, recipe)
    assert not (tmp_path / "killed" / "run" / "finished").exists()
    resumed = run_to_end(tmp_path / "killed", "run", settings)
    assert csv_without_wall_time(resumed.rounds_csv) == csv_without_wall_time(reference.rounds_csv)
    assert resumed.curve_csv.read_bytes() == reference.curve_csv.read_bytes()


def test_finished_run_does_nothing_when_started_again(tmp_path, capsys):
    settings = IMPSettings(rounds=1, seed=0)
    run = run_to_end(tmp_path, "run", settings)
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    run_to_end(tmp_path, "run", settings)
    assert "nothing to do" in capsys.readouterr().out
    assert before == {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}


def test_settings_mismatch_is_refused(tmp_path):
    """A directory whose settings.json holds another run (e.g. copied or renamed by hand) is never resumed."""
    from lth.errors import UserError

    with RunDirectory(tmp_path, FixtureSettings(lr=0.1)) as run:
        pass
    saved = json.loads((run.path / "settings.json").read_text())
    (run.path / "settings.json").write_text(json.dumps({**saved, "lr": 0.2}))
    with pytest.raises(UserError, match="other settings.*lr"):
        RunDirectory(tmp_path, FixtureSettings(lr=0.1)).open()


def test_a_setting_added_later_with_its_default_keeps_names_and_resume(tmp_path):
    """A run saved before a setting existed (no key in settings.json) is the same run when the setting is at its
    default; operational settings (quiet, directories) may change between restarts."""
    with RunDirectory(tmp_path, FixtureSettings()) as run:
        pass
    assert run.name == "fixture_iterative_winning_ticket_seed0", "default settings add no hash"
    saved = json.loads((run.path / "settings.json").read_text())
    del saved["lr"]  # written before --lr existed
    (run.path / "settings.json").write_text(json.dumps(saved))
    with RunDirectory(tmp_path, FixtureSettings(quiet=False, checkpoint_every=7)) as again:
        assert again.path == run.path
    changed = FixtureSettings(lr=0.2)
    assert changed.run_name().startswith("fixture_iterative_winning_ticket_seed0_h")
    assert changed.run_name() != run.name


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    from lth.errors import RunLockedError

    first = RunDirectory(tmp_path, FixtureSettings()).open()
    with pytest.raises(RunLockedError, match="in use by pid"):
        RunDirectory(tmp_path, FixtureSettings()).open()
    first.close()
    RunDirectory(tmp_path, FixtureSettings()).open().close()


@pytest.mark.parametrize("masks_kept", [3, 2], ids=["next-round-started", "between-rounds"])
def test_a_run_whose_state_did_not_travel_continues_from_its_results_and_masks(tmp_path, masks_kept):
    """A results tree committed without state.pt (BERT's is hundreds of MB) resumes from its CSVs and kept masks:
    at the round whose mask it kept (rounds 0-1 finished, round 2 started), or by training its last finished round
    again (rounds 0-1 finished, round 2 not started); either way its CSVs and masks end as a run never moved."""
    import shutil

    from lth.mask_file import load_mask

    recipe = digits_recipe(iterations=20, eval_every=10)
    settings = IMPSettings(rounds=3, seed=3)
    with RunDirectory(tmp_path / "whole", FixtureSettings(name="wt")) as run:
        run_imp(run, recipe, settings, quiet=True)
        whole = run.path
    moved = tmp_path / "moved" / whole.name
    shutil.copytree(whole, moved, ignore=shutil.ignore_patterns("state.pt", "finished", ".lock"))
    for table, keep in (("rounds.csv", 2), ("curve.csv", None)):
        lines = (moved / table).read_text().splitlines()
        kept = [lines[0], *(line for line in lines[1:] if int(line.split(",")[0]) < 2)]
        (moved / table).write_text("\n".join(kept[: keep + 1] if keep else kept) + "\n")
    for number in range(masks_kept, 4):
        (moved / "masks" / f"round_{number:02d}.safetensors").unlink()
    from lth.cluster import run_status

    assert run_status(moved) == "interrupted (start it again: it continues from its results)"
    with RunDirectory(tmp_path / "moved", FixtureSettings(name="wt")) as run:
        rows = run_imp(run, recipe, settings, quiet=True)
    assert [row["round"] for row in rows] == [0, 1, 2, 3]
    before = {row["round"]: row["wall_time_s"] for row in load_rows(whole / "rounds.csv")}
    after = {row["round"]: row["wall_time_s"] for row in load_rows(moved / "rounds.csv")}
    not_trained_again = [r for r in range(4) if after[r] == before[r]]
    assert not_trained_again == ([0, 1] if masks_kept == 3 else [0]), "finished rounds are not trained again"
    for table in ("rounds.csv", "curve.csv"):
        assert csv_without_wall_time(moved / table) == csv_without_wall_time(whole / table), table
    for number in range(4):
        name = f"masks/round_{number:02d}.safetensors"
        assert load_mask(moved / name)[0].equals(load_mask(whole / name)[0]), name


def load_rows(path) -> list[dict]:
    import csv

    with open(path, newline="") as handle:
        return [{"round": int(row["round"]), "wall_time_s": row["wall_time_s"]} for row in csv.DictReader(handle)]
