"""LeNet-300-100 end to end: flags, bad input, and the paper's claims at a short schedule on real MNIST."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import REPO, family_module, require_data

LENET = REPO / "Lenet-300-100"


def run_main(*argv: str, cwd=LENET) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *argv], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_lenet_architecture_and_rates():
    models = family_module("Lenet-300-100", "models")
    pruning = family_module("Lenet-300-100", "pruning")
    model = models.LeNet300100()
    assert sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight")) == 266_200
    assert all((model.get_parameter(f"fc{i}.bias") == 0).all() for i in (1, 2, 3))
    policy = pruning.lenet_pruning(model)
    assert policy.rates == {"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.1}


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--mode", "sideways"], "--mode"),
        (["--fc_rate", "1.5"], "--fc_rate"),
        (["--output_rate", "-0.1"], "--output_rate"),
        (["--iterations", "0"], "--iterations"),
        (["--batch_size", "-4"], "--batch_size"),
        (["--random_reinit", "--random_prune"], "--random_prune"),
        (["--no_such_flag"], "--no_such_flag"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv, needle):
    result = run_main(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_offline_is_one_clear_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_main(
        "--data_dir", str(empty), "--output_dir", str(tmp_path / "out"), "--iterations", "10", "--rounds", "0"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(empty / "MNIST" / "raw") in result.stderr and "LTH_DATA_DIR" in result.stderr


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    result = run_main("--output_dir", str(target), "--iterations", "10", "--rounds", "0")
    assert result.returncode == 2 and "--output_dir" in result.stderr
    assert target.read_text() == "keep me"


def test_truncated_mnist_file_is_reported(tmp_path):
    root = require_data("MNIST/raw")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (root / "MNIST" / "raw").iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    import gzip

    images = raw / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(data[: len(data) // 2]))
    result = run_main(
        "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--iterations", "10", "--rounds", "0"
    )
    assert result.returncode == 2 and "t10k-images-idx3-ubyte.gz" in result.stderr and "truncated" in result.stderr


def test_mnist_loads_with_seeded_validation_split():
    root = require_data("MNIST/raw")
    data_module = family_module("Lenet-300-100", "data")
    a = data_module.load_data(str(root), "cpu", seed=42)
    b = data_module.load_data(str(root), "cpu", seed=42)
    c = data_module.load_data(str(root), "cpu", seed=43)
    assert (len(a.train_x), len(a.val_x), len(a.test_x)) == (55_000, 5_000, 10_000)
    assert torch.equal(a.val_y, b.val_y) and not torch.equal(a.val_y, c.val_y)
    assert abs(float(a.train_x.mean())) < 0.05 and abs(float(a.train_x.std()) - 1) < 0.05  # normalised once


def test_loads_share_device_tensors_while_held_and_reread_rewritten_files(tmp_path):
    """The runs of a batch that share a seed share one copy of their splits; every seed shares the test set."""
    import dataclasses
    import gc
    import gzip
    import os

    from conftest import tiny_mnist

    from lth.datasets import load_mnist

    tiny_mnist(tmp_path, require_data("MNIST/raw"))
    a, b, c = (load_mnist(tmp_path, "cpu", val_size=500, seed=s) for s in (1, 1, 2))
    assert all(getattr(a, f) is getattr(b, f) for f in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"))
    assert c.test_x is a.test_x and c.train_x is not a.train_x and not torch.equal(c.val_y, a.val_y)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.train_x = a.val_x  # a holder cannot swap a tensor under the runs sharing it
    kept = {f: getattr(a, f).clone() for f in ("train_x", "train_y", "val_x", "test_x")}
    del a, b, c
    gc.collect()
    again = load_mnist(tmp_path, "cpu", val_size=500, seed=1)  # nothing held: read afresh, the same split
    assert all(torch.equal(getattr(again, f), kept[f]) for f in kept)
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # the first test label changes
    labels.write_bytes(gzip.compress(bytes(raw)))
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 1_000_000))
    rewritten = load_mnist(tmp_path, "cpu", val_size=500, seed=1)
    assert rewritten.test_y is not again.test_y and rewritten.test_y[0] != again.test_y[0]


@pytest.mark.slow
def test_real_mnist_tickets_match_the_paper_at_a_short_schedule(tmp_path):
    """Dense >= 95%, the 21.1% ticket >= 95%, and the 7.0% ticket beats its random re-init (600 iterations a
    round: 96.25%, 97.09%, and 96.78% against 93.04% on this project's machine)."""
    root = require_data("MNIST/raw")
    main = family_module("Lenet-300-100", "main")
    common = [
        "--iterations",
        "600",
        "--eval_every",
        "300",
        "--rounds",
        "12",
        "--trial",
        "0",
        "--data_dir",
        str(root),
        "--output_dir",
        str(tmp_path),
        "--quiet",
        "--device",
        "cpu",
    ]
    main.main(common)
    main.main([*common, "--random_reinit"])
    rounds = pd.concat(pd.read_csv(p) for p in tmp_path.glob("*/rounds.csv"))
    ticket = rounds[rounds.run_type == "winning_ticket"].set_index("round")
    control = rounds[rounds.run_type == "random_reinit"].set_index("round")
    assert round(ticket.loc[7, "weights_remaining_pct"], 1) == 21.1
    assert round(ticket.loc[12, "weights_remaining_pct"], 1) == 7.0
    assert ticket.loc[0, "test_accuracy_early_stop"] >= 95.0
    assert ticket.loc[7, "test_accuracy_early_stop"] >= 95.0
    assert ticket.loc[12, "test_accuracy_early_stop"] > control.loc[12, "test_accuracy_early_stop"]

    plot = family_module("Lenet-300-100", "plot_results")
    plot.main(["--results_dir", str(tmp_path)])
    assert (tmp_path / "figure3_iterative.png").stat().st_size > 10_000
    assert (tmp_path / "figure4_iterative.png").stat().st_size > 10_000
