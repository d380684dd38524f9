"""Settings declared once: run names are pinned, earlier flags keep their meaning, and no figure or summary of
any family pools runs that differ in anything but the seed."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import family_module

from lth.errors import UserError
from lth.results import RunDirectory
from lth.settings import ImageFamilySettings


def settings_module(folder: str):
    return family_module(folder, "settings")


# --- names: a regression test, as OpenLTH's test_desc.py ---------------------------------------------
@pytest.mark.parametrize(
    "folder, cls, argv, name",
    [
        ("Lenet-300-100", "LenetSettings", [], "lenet300-100-iterative_winning_ticket_trial0"),
        (
            "Lenet-300-100",
            "LenetSettings",
            ["--mode", "oneshot", "--random_reinit", "--control_mask", "own", "--trial", "3"],
            "lenet300-100-oneshot_random_reinit_trial3",
        ),
        (
            "Lenet-300-100",
            "LenetSettings",
            ["--mode", "oneshot", "--random_reinit", "--trial", "3"],
            "lenet300-100-oneshot_random_reinit-of-ticket_trial3",
        ),
        (
            "CNN",
            "ConvSettings",
            ["--arch", "Conv-2", "--random_prune"],
            "Conv-2_random_prune-of-ticket_d0_lr0p0002_it20000_seed1",
        ),
        (
            "VGG",
            "VGGSettings",
            ["--pruning", "random", "--control_mask", "own"],
            "vgg19-w1_random_prune_rewind0_seed42",
        ),
        (
            "Lenet-300-100",
            "LenetSettings",
            ["--iterations", "5000", "--trial", "1"],
            "lenet300-100-iterative_winning_ticket_trial1_h8f60cde2",
        ),
        ("CNN", "ConvSettings", ["--arch", "Conv-2", "--seed", "1"], "Conv-2_winning_ticket_d0_lr0p0002_it20000_seed1"),
        (
            "CNN",
            "ConvSettings",
            [
                "--arch",
                "Conv-2",
                "--iterations",
                "1000",
                "--prune_iterations",
                "5",
                "--eval_every",
                "500",
                "--seed",
                "2",
            ],
            "Conv-2_winning_ticket_d0_lr0p0002_it1000_seed2_h2e403e41",
        ),
        (
            "VGG",
            "VGGSettings",
            ["--seed", "0", "--rewind_iteration", "2000"],
            "vgg19-w1_winning_ticket_rewind2000_seed0",
        ),
        ("VGG", "DenseSettings", ["--seed", "0"], "vgg19-w1_dense_seed0"),
    ],
)
def test_run_names_are_pinned(folder, cls, argv, name):
    assert getattr(settings_module(folder), cls).from_argv(argv).run_name() == name


def test_bert_ticket_names_keep_the_earlier_names_for_the_earlier_settings_and_carry_every_other_setting():
    settings = settings_module("BERT").LotterySettings
    default = settings.from_argv(["--task", "sst2", "--sparsity", "0.6", "--seed", "42"])
    assert default.ticket_path(0.6).name == "lottery_ticket_sst2_sparsity60_seed42.safetensors"
    assert default.ticket_path(0.0).name == "lottery_ticket_sst2_sparsity0_seed42.safetensors"
    minilm = settings.from_argv(["--model_name_or_path", "minilm", "--subset", "4000", "--epochs", "1"])
    assert minilm.ticket_path(0.6).name.startswith("lottery_ticket_sst2_minilm_sparsity60_subset4000_seed42_h")
    names = {
        settings.from_argv(argv).ticket_path(0.6).name
        for argv in (
            [],
            ["--model_name_or_path", "minilm"],
            ["--rewind_to", "warmup"],
            ["--subset", "100"],
            ["--keep_pooler"],
            ["--lr", "1e-4"],
            ["--seed", "1"],
        )
    }
    assert len(names) == 7, "tickets of different settings never share a file"


# --- one flag per concept; earlier names keep their meaning ---------------------------------------------
def test_earlier_flags_are_aliases_with_their_earlier_meaning():
    lenet = settings_module("Lenet-300-100").LenetSettings.from_argv(
        ["--mode", "oneshot", "--trial", "2", "--iterations", "10", "--fc_rate", "0.3", "--random_reinit"]
    )
    assert (lenet.imp_mode, lenet.seed, lenet.train_iterations, lenet.fc_prune_rate, lenet.run_type) == (
        "oneshot",
        44,
        10,
        0.3,
        "random_reinit",
    )
    cnn = settings_module("CNN").ConvSettings.from_argv(
        ["--prune_iterations", "7", "--iterations", "9", "--random_prune"]
    )
    assert (cnn.rounds, cnn.train_iterations, cnn.run_type) == (7, 9, "random_prune")
    vgg = settings_module("VGG").VGGSettings.from_argv(
        ["--prune_iterations", "20", "--iterations", "500", "--prunning", "random", "--wd", "5e-4", "--bs", "32"]
    )
    assert (vgg.rounds, vgg.rewind_iteration, vgg.run_type, vgg.weight_decay, vgg.batch_size) == (
        19,
        500,
        "random_prune",
        5e-4,
        32,
    )
    bert = settings_module("BERT")
    lottery = bert.LotterySettings.from_argv(["--prune_rate", "0.2", "--save_dir", "x"])
    assert (lottery.prune_step_of_original, lottery.ticket_dir) == (0.2, "x")
    fewshot = bert.FewShotSettings.from_argv(
        ["--checkpoint", "t.pt", "--target", "qqp", "--mode", "full", "--save_dir", "y"]
    )
    assert (fewshot.finetune, fewshot.output_dir) == ("full", "y")


def test_help_shows_each_earlier_name_beside_its_canonical_flag():
    text = " ".join(settings_module("VGG").VGGSettings.build_parser().format_help().split())
    assert "--weight_decay WEIGHT_DECAY, --wd WEIGHT_DECAY" in text
    assert "--prune_iterations PRUNE_ITERATIONS" in text and "rounds INCLUDING the dense round 0" in text


IMAGE_FAMILIES = [("Lenet-300-100", "LenetSettings"), ("CNN", "ConvSettings"), ("VGG", "VGGSettings")]


@pytest.mark.parametrize("folder, cls", IMAGE_FAMILIES)
def test_an_image_family_declares_only_its_own_settings_and_changed_defaults(folder, cls):
    """The shared settings are declared once (lth.settings.ImageFamilySettings); a family's class body may add
    settings or change a shared one's default, aliases or help, never repeat one unchanged."""
    family = getattr(settings_module(folder), cls)
    shared = {f.name: f for f in dataclasses.fields(ImageFamilySettings)}
    own = [
        name
        for klass in family.__mro__
        if klass.__module__ == family.__module__
        for name in vars(klass).get("__annotations__", {})
    ]
    assert own, "the family declares its own settings"
    for name in own:
        if name in shared:
            mine, base = family.__dataclass_fields__[name], shared[name]
            assert (mine.default, mine.metadata["aliases"], mine.metadata["help"]) != (
                base.default,
                base.metadata["aliases"],
                base.metadata["help"],
            ), f"{cls}.{name} repeats the shared declaration"
    identity = family().identity()
    for name in ("run_type", "imp_mode", "seed", "init_seed", "rounds", "rewind_iteration", "control_mask", "lr"):
        assert name in identity  # every image family's runs carry the shared identity columns


@pytest.mark.parametrize("folder, cls", IMAGE_FAMILIES)
def test_rewinding_past_the_round_is_refused_in_every_image_family(folder, cls):
    settings = getattr(settings_module(folder), cls)
    with pytest.raises(UserError, match="--rewind_iteration 500 must be below the 500 training iterations"):
        settings.from_argv(["--train_iterations", "500", "--rewind_iteration", "500"])


def test_an_alias_contradicting_the_canonical_flag_is_one_clear_error():
    with pytest.raises(UserError, match="--random_reinit.*--run_type"):
        settings_module("Lenet-300-100").LenetSettings.from_argv(["--run_type", "random_prune", "--random_reinit"])


def test_a_flag_that_changes_nothing_is_not_identity_and_never_blocks_resume(tmp_path):
    lenet = settings_module("Lenet-300-100").LenetSettings
    plain = lenet.from_argv(["--output_dir", str(tmp_path)])
    fast = lenet.from_argv(["--output_dir", str(tmp_path), "--fast_mode", "--quiet", "--checkpoint_every", "7"])
    assert plain.run_name() == fast.run_name() and plain.identity() == fast.identity()
    with RunDirectory(tmp_path, plain):
        pass
    with RunDirectory(tmp_path, fast) as run:  # accepted: the same run
        assert run.path.name == plain.run_name()


def test_settings_json_of_the_earlier_format_is_read_through_the_aliases():
    lenet = settings_module("Lenet-300-100").LenetSettings
    earlier = {
        "mode": "iterative",
        "random_reinit": True,
        "random_prune": False,
        "trial": 0,
        "seed": 42,
        "iterations": 5000,
        "rounds": 20,
        "fc_rate": 0.2,
        "output_rate": 0.1,
        "batch_size": 60,
        "lr": 0.0012,
        "eval_every": 100,
        "checkpoint_every": 5000,
        "fast_mode": False,
    }
    now = lenet.from_argv(["--random_reinit", "--control_mask", "own", "--iterations", "5000"])
    assert now.differences(earlier) == []
    # A control saved before --control_mask existed pruned its own weights: not the ticket's definition.
    assert lenet.from_argv(["--random_reinit", "--iterations", "5000"]).differences(earlier) == ["control_mask"]
    assert now.differences({**earlier, "fc_rate": 0.3}) == ["fc_prune_rate"]
