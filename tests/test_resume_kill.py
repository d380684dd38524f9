"""Runs killed with SIGKILL at random moments and restarted end bitwise identical to uninterrupted runs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import family_module, require_data, tiny_mnist
from imp_fixtures import csv_without_wall_time
from kill_harness import kill_repeatedly, run_once


def assert_kills_change_nothing(command, tmp_path, seed: int, runs: str = "") -> None:
    """Run once uninterrupted, then again through twenty SIGKILLs and restarts; the CSVs must match."""
    duration = run_once(command(tmp_path / "reference"))
    # Each life gets a random slice of up to a tenth of the run: kills land in start-up, training,
    # checkpoint writes and round ends alike, and progress still accumulates across lives.
    killed = kill_repeatedly(command(tmp_path / "killed"), kills=20, seed=seed, span=duration / 10)
    assert killed >= 15, "most lives should have been cut short"
    (reference,) = (p for p in (tmp_path / "reference" / runs).iterdir() if (p / "rounds.csv").exists())
    resumed = tmp_path / "killed" / runs / reference.name
    assert csv_without_wall_time(resumed / "rounds.csv") == csv_without_wall_time(reference / "rounds.csv")
    assert (resumed / "curve.csv").read_bytes() == (reference / "curve.csv").read_bytes()
    assert not list(resumed.glob(".*.tmp")), "no temporary files left behind"


def test_a_life_forked_while_another_thread_holds_the_progress_bar_lock_still_makes_bars():
    """Every tqdm bar, even a disabled one, takes tqdm's lock, and a thread of the test process (tqdm's monitor)
    may hold it at the moment a life is forked: the life's copy would stay taken for good, and the life would hang
    at its first bar. (The lock tqdm shares across fork, which a killed life could leave taken, conftest turns off.)"""
    import threading

    from tqdm.auto import tqdm

    holding, done = threading.Event(), threading.Event()

    def hold_the_lock():
        with tqdm.get_lock():
            holding.set()
            done.wait(60)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(10)
    try:
        run_once(lambda: tqdm(range(3), disable=True).close(), timeout=20)
    finally:
        done.set()
        holder.join()


@pytest.mark.slow
def test_lenet_survives_twenty_kills(tmp_path):
    source = require_data("MNIST/raw")
    tiny_mnist(tmp_path / "data", source)
    main = family_module("Lenet-300-100", "main")

    def command(output):
        return lambda: main.main(
            [
                "--iterations",
                "90",
                "--eval_every",
                "30",
                "--rounds",
                "3",
                "--checkpoint_every",
                "20",
                "--random_reinit",
                "--control_mask",
                "own",
                "--data_dir",
                str(tmp_path / "data"),
                "--output_dir",
                str(output),
                "--quiet",
                "--device",
                "cpu",
            ]
        )

    assert_kills_change_nothing(command, tmp_path, seed=2026)


def random_cifar(root, train: int = 5200, test: int = 200) -> None:
    """A CIFAR-10-shaped data root of random images: enough for VGG's 5,000-image validation split."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_batch = train // 5
    for name, count in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        with open(folder / name, "wb") as handle:
            pickle.dump(
                {
                    b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                    b"labels": rng.integers(0, 10, count).tolist(),
                },
                handle,
            )


@pytest.mark.slow
def test_vgg_survives_twenty_kills(tmp_path):
    random_cifar(tmp_path / "data")
    main = family_module("VGG", "main")

    def command(output):
        return lambda: main.main(
            [
                "--width",
                "0.0625",
                "--train_iterations",
                "12",
                "--eval_every",
                "12",
                "--rounds",
                "1",
                "--checkpoint_every",
                "3",
                "--rewind_iteration",
                "3",
                "--dense_dir",
                "none",
                "--data_dir",
                str(tmp_path / "data"),
                "--output_dir",
                str(output),
                "--quiet",
                "--device",
                "cpu",
                "--seed",
                "1",
            ]
        )

    assert_kills_change_nothing(command, tmp_path, seed=7)


@pytest.mark.slow
def test_bert_survives_twenty_kills(tmp_path):
    from test_bert_support import bert_module, make_tiny_glue, make_tiny_model, tiny_lth_argv

    model = make_tiny_model(tmp_path / "model")
    data = make_tiny_glue(tmp_path / "data")
    script = bert_module("lottery_ticket_bert")

    def command(output):
        def run():
            script.main(
                tiny_lth_argv(model, data, output, "--sparsity", "0.3", "--checkpoint_every", "2", "--epochs", "1")
            )

        return run

    assert_kills_change_nothing(command, tmp_path, seed=11, runs="runs")
    tickets = sorted(p.name for p in (tmp_path / "reference" / "models").glob("*.safetensors"))
    assert tickets and tickets == sorted(p.name for p in (tmp_path / "killed" / "models").glob("*.safetensors"))


@pytest.mark.slow
def test_cnn_survives_twenty_kills(tmp_path):
    import dataclasses

    import torch

    from lth.datasets import ImageData

    main = family_module("CNN", "main")
    # Small random images stand in for CIFAR-10 (the main path, run directory and resume are CNN's own):
    # full-width Conv-2 evaluating 5,000 validation images would make twenty lives take minutes.
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(400, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (400,), generator=generator)
    tiny = ImageData(images[:240], labels[:240], images[240:320], labels[240:320], images[320:], labels[320:], 10)
    entry = dataclasses.replace(main.ENTRY, load_data=lambda data_dir, device, seed: tiny)  # CNN's entry, tiny data

    def command(output):
        return lambda: entry.main(
            [
                "--arch",
                "Conv-2",
                "--iterations",
                "6",
                "--eval_every",
                "3",
                "--prune_iterations",
                "2",
                "--batch_size",
                "20",
                "--checkpoint_every",
                "2",
                "--dropout_rate",
                "0.5",
                "--output_dir",
                str(output),
                "--quiet",
                "--device",
                "cpu",
            ]
        )

    assert_kills_change_nothing(command, tmp_path, seed=5)
