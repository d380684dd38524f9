"""The slow half of the cluster tests (split so that parallel workers share them): a stop signal in the middle of a
round of every family, SIGUSR1, and a sweep running lines side by side."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import family_module
from test_cluster import lenet_command, round_one_started, stop_then_resume
from test_resume_kill import random_cifar

from lth.stopping import EXIT_RESUME_LATER


@pytest.mark.slow
def test_lenet_sigusr1_is_the_cluster_warning_signal(tmp_path):
    stop_then_resume(lenet_command(tmp_path, "--random_reinit", "--control_mask", "own"), tmp_path, signal.SIGUSR1)


@pytest.mark.slow
def test_cnn_sigterm_mid_round_stops_and_resumes_identically(tmp_path, monkeypatch):
    random_cifar(tmp_path / "data", train=1000)
    main = family_module("CNN", "main")
    # 500 validation images, not 5,000: evaluations were most of this test's time, and resume does not depend on it.
    monkeypatch.setitem(main.load_data.__globals__, "VALIDATION_SIZE", 500)  # the data module main.py reads

    def command(output):
        argv = ["--arch", "Conv-2", "--iterations", "40", "--eval_every", "40", "--batch_size", "8",
                "--prune_iterations", "1", "--checkpoint_every", "0", "--eval_batch_size", "500",
                "--data_dir", str(tmp_path / "data"), "--output_dir", str(output), "--quiet", "--device", "cpu"]  # fmt: skip
        return lambda: main.main(argv)

    stop_then_resume(command, tmp_path)


@pytest.mark.slow
def test_vgg_sigterm_mid_round_stops_and_resumes_identically(tmp_path):
    random_cifar(tmp_path / "data")
    main = family_module("VGG", "main")

    def command(output):
        argv = ["--width", "0.0625", "--train_iterations", "60", "--eval_every", "60", "--rounds", "1",
                "--checkpoint_every", "0", "--rewind_iteration", "3", "--dense_dir", "none", "--batch_size", "16",
                "--data_dir", str(tmp_path / "data"), "--output_dir", str(output), "--quiet", "--device", "cpu"]  # fmt: skip
        return lambda: main.main(argv)

    stop_then_resume(command, tmp_path)


@pytest.mark.slow
def test_bert_sigterm_mid_round_stops_and_resumes_identically(tmp_path):
    from test_bert_support import bert_module, make_tiny_glue, make_tiny_model, tiny_lth_argv

    model = make_tiny_model(tmp_path / "model")
    data = make_tiny_glue(tmp_path / "data")
    script = bert_module("lottery_ticket_bert")

    def command(output):
        def run():
            script.main(
                tiny_lth_argv(model, data, output, "--sparsity", "0.2", "--checkpoint_every", "0", "--epochs", "12")
            )

        return run

    stop_then_resume(command, tmp_path, after=0.05)


@pytest.mark.slow
def test_sweep_runs_lines_side_by_side_and_a_stop_signal_stops_all_of_them_to_resume_later(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    lenet_command(tmp_path)  # builds the tiny MNIST data root
    config = tmp_path / "configs.txt"
    common = f"--iterations 400 --eval_every 200 --rounds 1 --checkpoint_every 0 --quiet --device cpu --data_dir {tmp_path / 'data'} --output_dir {tmp_path / 'runs'}"
    config.write_text(f"--trial 0 {common}\n--trial 1 {common}\n--trial 2 {common}\n")
    command = [sys.executable, "-m", "lth", "sweep", str(config), "--script", str(REPO / "Lenet-300-100" / "main.py"),
               "--per_device", "2"]  # fmt: skip
    cpu_only = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # one device: two lines at once, the third waits
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cpu_only)
    ready = round_one_started(tmp_path / "runs", after=0.3)
    deadline = time.monotonic() + 120
    while not ready():
        assert sweep.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    sweep.send_signal(signal.SIGTERM)
    output, _ = sweep.communicate(timeout=60)
    assert sweep.returncode == EXIT_RESUME_LATER, output
    assert "1 line(s) not started" in output, "the third line waited for a free slot"
    running_at_stop = list((tmp_path / "runs").rglob("progress.pt"))
    assert running_at_stop, "the lines running side by side saved their progress"
    assert not list((tmp_path / "runs").rglob(".lock"))
    subprocess.run(command, check=True, capture_output=True, timeout=600, env=cpu_only)
    assert len(list((tmp_path / "runs").rglob("finished"))) == 3
