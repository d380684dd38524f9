"""Bad input across the entry points: one line naming the flag or file, exit 2, no traceback, and every
result file already on disk left byte-identical."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import pytest
from conftest import REPO, family_module, require_data, tiny_mnist

LENET_TINY = ["--iterations", "20", "--eval_every", "10", "--rounds", "1", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny MNIST root and a finished LeNet run whose files must survive every bad call."""
    root = tmp_path_factory.mktemp("bad_input")
    tiny_mnist(root / "data", require_data("MNIST/raw"))
    main = family_module("Lenet-300-100", "main")
    main.main([*LENET_TINY, "--data_dir", str(root / "data"), "--output_dir", str(root / "results")])
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def call(entry, argv, capsys) -> str:
    """Run an entry point in-process; it must exit 2 with exactly one `error:` line on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured.err
    lines = [line for line in captured.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), captured.err
    return lines[0]


LENET_CASES = [
    (["--mode", "sideways"], "--mode"),
    (["--fc_rate", "1.0"], "--fc_rate"),
    (["--fc_rate", "abc"], "--fc_rate"),
    (["--output_rate", "-0.1"], "--output_rate"),
    (["--iterations", "0"], "--iterations"),
    (["--iterations", "-5"], "--iterations"),
    (["--batch_size", "0"], "--batch_size"),
    (["--eval_every", "0"], "--eval_every"),
    (["--lr", "-1"], "--lr"),
    (["--trial", "-1"], "--trial"),
    (["--random_reinit", "--random_prune"], "--random_prune"),
    (["--unknown_flag", "3"], "--unknown_flag"),
    (["--device", "tpu"], "--device"),
]


@pytest.mark.parametrize("argv, needle", LENET_CASES)
def test_lenet_bad_flags(workspace, capsys, argv, needle):
    main = family_module("Lenet-300-100", "main")
    before = snapshot(workspace / "results")
    line = call(
        main.main,
        [*LENET_TINY, "--data_dir", str(workspace / "data"), "--output_dir", str(workspace / "results"), *argv],
        capsys,
    )
    assert needle in line
    assert snapshot(workspace / "results") == before


def test_lenet_bad_files(workspace, capsys, tmp_path):
    main = family_module("Lenet-300-100", "main")
    before = snapshot(workspace / "results")
    base = [*LENET_TINY, "--output_dir", str(workspace / "results")]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert str(empty / "MNIST" / "raw") in call(main.main, [*base, "--trial", "3", "--data_dir", str(empty)], capsys)

    truncated = tmp_path / "truncated"
    shutil.copytree(workspace / "data", truncated)
    labels = truncated / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:100]))
    assert "train-labels-idx1-ubyte.gz" in call(
        main.main, [*base, "--trial", "3", "--data_dir", str(truncated)], capsys
    )

    # Other settings are another run (another directory), never mixed into the finished one.
    finished = main.run_directory(main.parse_args([*base, "--data_dir", str(workspace / "data")]))
    other = main.run_directory(main.parse_args([*base, "--data_dir", str(workspace / "data"), "--lr", "0.01"]))
    assert other != finished and other.name.startswith("lenet300-100-iterative_winning_ticket_trial0_h")

    a_file = tmp_path / "results.csv"
    a_file.write_text("precious\n")
    assert "--output_dir" in call(
        main.main, [*LENET_TINY, "--data_dir", str(workspace / "data"), "--output_dir", str(a_file)], capsys
    )
    assert a_file.read_text() == "precious\n"
    assert snapshot(workspace / "results") == before


def test_corrupt_checkpoint_is_reported_not_loaded(workspace, capsys, tmp_path):
    main = family_module("Lenet-300-100", "main")
    args = [*LENET_TINY, "--data_dir", str(workspace / "data"), "--output_dir", str(tmp_path), "--rounds", "2"]
    main.main(args)
    capsys.readouterr()  # the good run's progress output
    run = next(tmp_path.iterdir())
    (run / "finished").unlink()
    state = run / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 3])
    before = snapshot(tmp_path)
    line = call(main.main, args, capsys)
    assert str(state) in line and "corrupt or truncated" in line
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before, "every existing file is untouched"
    assert set(after) - set(before) == {f"{run.name}/failed"}, "only a note for `lth status` is added"


def test_live_lock_holder_is_named(workspace, capsys, tmp_path):
    import os
    import socket

    main = family_module("Lenet-300-100", "main")
    args = [*LENET_TINY, "--data_dir", str(workspace / "data"), "--output_dir", str(tmp_path)]
    run = main.run_directory(main.parse_args(args))
    run.mkdir()
    (run / ".lock").write_text(f"{socket.gethostname()} {os.getppid()}")  # a live process: our parent
    line = call(main.main, args, capsys)
    assert f"pid {os.getppid()}" in line and socket.gethostname() in line
    # A lock whose process is gone is stale and taken over.
    (run / ".lock").write_text(f"{socket.gethostname()} 999999999")
    main.main(args)
    assert (run / "finished").exists() and not (run / ".lock").exists()


def write_config(tmp_path, text: str) -> Path:
    config = tmp_path / "configs.txt"
    config.write_text(text)
    return config


def test_lth_cli_bad_input(workspace, capsys, tmp_path, monkeypatch):
    from lth.cli import main as lth

    script = str(REPO / "Lenet-300-100" / "main.py")
    config = write_config(tmp_path, "# comment\n--trial 0 --iterations 10\n\n--trial 1 --iterations 10 --bogus 1\n")
    line = call(lth, ["sweep", str(config), "--script", script, "--dry-run"], capsys)
    assert "line 4" in line and "--bogus" in line
    config = write_config(tmp_path, '--trial 0 --data_dir "unclosed\n')
    assert "line 1" in call(lth, ["sweep", str(config), "--script", script], capsys)
    assert "no_such.txt" in call(lth, ["sweep", str(tmp_path / "no_such.txt"), "--script", script], capsys)
    config = write_config(tmp_path, "--trial 0\n--trial 1\n")
    monkeypatch.setenv("LSB_JOBINDEX", "3")
    line = call(lth, ["sweep", str(config), "--script", script, "--dry-run"], capsys)
    assert "array index 3" in line and "1..2" in line
    monkeypatch.delenv("LSB_JOBINDEX")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "x")
    assert "SLURM_ARRAY_TASK_ID" in call(lth, ["sweep", str(config), "--script", script, "--dry-run"], capsys)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    assert "no_script.py" in call(lth, ["sweep", str(config), "--script", str(tmp_path / "no_script.py")], capsys)
    assert "does not exist" in call(lth, ["status", str(tmp_path / "nowhere")], capsys)
    assert "--need" in call(lth, ["env", "--need", "gpu9000"], capsys)
    assert "no rounds.csv" in call(lth, ["summarize", str(tmp_path)], capsys)
    assert "--value" in call(lth, ["summarize", str(workspace / "results"), "--value", "nope"], capsys)
    assert "invalid choice" in call(lth, ["frobnicate"], capsys)


def test_cifar_batch_of_the_wrong_shape(capsys, tmp_path):
    main = family_module("VGG", "main")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    import numpy as np

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": np.zeros((10, 1024), dtype=np.uint8), b"labels": [0] * 10}, handle)
    line = call(
        main.main,
        [
            "--width",
            "0.125",
            "--train_iterations",
            "10",
            "--data_dir",
            str(tmp_path),
            "--output_dir",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--quiet",
        ],
        capsys,
    )
    assert "data_batch_1" in line and "3072" in line


VGG_CASES = [
    (["--width", "0"], "--width"),
    (["--pruning", "magnitude"], "--pruning"),
    (["--rewind_iteration", "-3"], "--rewind_iteration"),
    (["--prune_rate", "1.2"], "--prune_rate"),
    (["--bs", "0"], "--bs"),
    (["--random_reinit", "--pruning", "random"], "--random_reinit"),
]


@pytest.mark.parametrize("argv, needle", VGG_CASES)
def test_vgg_bad_flags(capsys, tmp_path, argv, needle):
    main = family_module("VGG", "main")
    line = call(main.main, ["--output_dir", str(tmp_path), *argv], capsys)
    assert needle in line or needle.replace("--", "") in line


CNN_CASES = [
    (["--arch", "Conv-9"], "--arch"),
    (["--conv_prune_rate", "1.5"], "--conv_prune_rate"),
    (["--run_type", "lucky_ticket"], "--run_type"),
    (["--dropout_rate", "1.0"], "--dropout_rate"),
    (["--batch_size", "0"], "--batch_size"),
    (["--iterations", "0"], "--iterations"),
    (["--mode", "evaluate"], "--mode"),
]


@pytest.mark.parametrize("argv, needle", CNN_CASES)
def test_cnn_bad_flags(capsys, tmp_path, argv, needle):
    main = family_module("CNN", "main")
    assert needle in call(main.main, ["--output_dir", str(tmp_path), *argv], capsys)


@pytest.fixture(scope="module")
def bert_workspace(tmp_path_factory):
    """A tiny BERT, tiny GLUE files and a finished ticket whose files must survive bad calls."""
    from test_bert_support import bert_module, make_tiny_glue, make_tiny_model, tiny_lth_argv

    root = tmp_path_factory.mktemp("bert_bad_input")
    model = make_tiny_model(root / "model")
    data = make_tiny_glue(root / "data")
    script = bert_module("lottery_ticket_bert")
    script.main(tiny_lth_argv(model, data, root / "out", "--sparsity", "0.2"))
    return {"root": root, "model": model, "data": data, "argv": tiny_lth_argv}


def bert_call(name, argv, capsys) -> str:
    from test_bert_support import bert_module

    script = bert_module(name)
    return call(script.main, argv, capsys)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--task", "mnli"], "--task"),
        (["--sparsity", "1.0"], "--sparsity"),
        (["--sparsity", "-0.2"], "--sparsity"),
        (["--batch_size", "0"], "--batch_size"),
        (["--subset", "-5"], "--subset"),
    ],
)
def test_bert_bad_flags(bert_workspace, capsys, extra, needle):
    w = bert_workspace
    before = snapshot(w["root"] / "out")
    argv = w["argv"](w["model"], w["data"], w["root"] / "out", *extra)
    assert needle in bert_call("lottery_ticket_bert", argv, capsys)
    assert snapshot(w["root"] / "out") == before


def test_bert_bad_files(bert_workspace, capsys, tmp_path):
    w = bert_workspace
    before = snapshot(w["root"] / "out")
    (ticket,) = [p for p in (w["root"] / "out" / "models").glob("lottery_ticket_*sparsity20*.safetensors")]

    broken_glue = tmp_path / "glue_data"
    shutil.copytree(w["data"], broken_glue)
    train = broken_glue / "glue" / "SST-2" / "train.tsv"
    train.write_text(train.read_text().replace("sentence\tlabel", "text\tlabel", 1))
    argv = w["argv"](w["model"], broken_glue, tmp_path / "out", "--sparsity", "0.2")
    line = bert_call("lottery_ticket_bert", argv, capsys)
    assert "train.tsv" in line and "sentence" in line

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ticket.read_bytes()[:1000])
    line = bert_call(
        "few_shot_training",
        [
            "--checkpoint",
            str(truncated),
            "--target",
            "sst2",
            "--data_dir",
            str(w["data"]),
            "--save_dir",
            str(tmp_path / "fs"),
        ],
        capsys,
    )
    assert "truncated.pt" in line
    missing = tmp_path / "no_ticket.pt"
    assert "no_ticket.pt" in bert_call("few_shot_training", ["--checkpoint", str(missing), "--target", "qqp"], capsys)
    assert "--mode" in bert_call(
        "few_shot_training", ["--checkpoint", str(ticket), "--target", "qqp", "--mode", "half"], capsys
    )
    assert "--ticket_b" in bert_call("create_ensemble_tickets", ["--ticket_a", str(ticket)], capsys)
    line = bert_call(
        "create_ensemble_tickets",
        ["--ticket_a", str(ticket), "--ticket_b", str(truncated), "--save_dir", str(tmp_path / "ens")],
        capsys,
    )
    assert "truncated.pt" in line

    from lth.cli import main as lth

    assert "truncated.pt" in call(lth, ["ticket", str(truncated)], capsys)
    assert snapshot(w["root"] / "out") == before
