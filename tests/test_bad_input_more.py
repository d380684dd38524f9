"""More bad input: every case is one `error:` line naming the flag or file, exit status 2, no traceback, and
nothing left behind (no run directory, no settings.json, no partial ticket or CSV)."""

from __future__ import annotations

import json
import time

import pytest
from conftest import family_module
from test_bad_input import call
from test_bert_support import bert_module, make_tiny_glue, tiny_glue, tiny_model  # noqa: F401


def leaves_nothing(folder) -> bool:
    return not folder.exists() or not any(folder.rglob("*"))


@pytest.mark.parametrize(
    "folder, script, argv, named",
    [
        ("VGG", "main", ["--momentum", "-1"], "--momentum"),
        ("VGG", "main", ["--momentum", "1"], "--momentum"),
        ("VGG", "main", ["--weight_decay", "-1"], "--weight_decay"),
        ("VGG", "main", ["--wd", "-0.5"], "--wd"),
        ("VGG", "main", ["--train_iterations", "100", "--warmup_iterations", "100"], "--warmup_iterations"),
        ("VGG", "main", ["--schedule", "80", "--milestones", "100"], "--schedule"),
        ("VGG", "train", ["--train_iterations", "100", "--save_iterations", "100"], "--save_iterations"),
        ("Lenet-300-100", "main", ["--train_iterations", "100", "--rewind_iteration", "100"], "--rewind_iteration"),
        ("Lenet-300-100", "main", ["--carbon_intensity", "-5"], "--carbon_intensity"),
        ("Lenet-300-100", "main", ["--report_to", "wandb"], "--report_to"),
        ("Lenet-300-100", "main", ["--run_type", "random_prune", "--random_reinit"], "--random_reinit"),
        ("CNN", "main", ["--batch_size", "50000", "--epochs", "1"], "--batch_size"),
        ("CNN", "main", ["--lr", "0"], "--lr"),
        ("BERT", "lottery_ticket_bert", ["--prune_step_of_original", "0"], "--prune_step_of_original"),
        ("BERT", "lottery_ticket_bert", ["--rewind_to", "warmup", "--warmup", "0"], "--warmup"),
        ("BERT", "lottery_ticket_bert", ["--weight_decay", "-1"], "--weight_decay"),
        ("BERT", "few_shot_training", ["--checkpoint", "t.pt"], "--target"),
    ],
)
def test_bad_settings_are_one_line_and_leave_nothing(folder, script, argv, named, tmp_path, capsys):
    module = bert_module(script) if folder == "BERT" else family_module(folder, script)
    out = ["--output_dir", str(tmp_path / "runs")]
    line = call(module.main, [*argv, *out], capsys)
    assert named in line
    assert leaves_nothing(tmp_path / "runs")


def test_lease_timeout_must_be_seconds(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LTH_LEASE_TIMEOUT", "soon")
    main = family_module("Lenet-300-100", "main")
    line = call(main.main, ["--output_dir", str(tmp_path / "runs")], capsys)
    assert "LTH_LEASE_TIMEOUT" in line and leaves_nothing(tmp_path / "runs")


def test_bert_missing_data_offline_fails_at_once_in_one_line(tmp_path, capsys, monkeypatch, request, tiny_model):  # noqa: F811
    import socket

    from lth.environment import hub_offline

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")

    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # an unreachable hub alone must suffice
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    hub_offline.cache_clear()  # probed afresh here, and again by whichever test asks next
    request.addfinalizer(hub_offline.cache_clear)
    lth = bert_module("lottery_ticket_bert")
    started = time.perf_counter()
    line = call(
        lth.main,
        [
            "--model_name_or_path",
            str(tiny_model),
            "--data_dir",
            str(tmp_path / "nowhere"),
            "--output_dir",
            str(tmp_path / "runs"),
            "--save_dir",
            str(tmp_path / "models"),
        ],  # fmt: skip
        capsys,
    )
    assert "glue/SST-2/train.tsv" in line and time.perf_counter() - started < 15
    assert hub_offline(), "found offline by the probe alone"
    assert leaves_nothing(tmp_path / "runs") and leaves_nothing(tmp_path / "models")


def test_bert_unknown_model_offline_fails_at_once_in_one_line(tmp_path, capsys, tiny_glue):  # noqa: F811
    lth = bert_module("lottery_ticket_bert")
    started = time.perf_counter()
    line = call(
        lth.main,
        [
            "--model_name_or_path",
            "no-such-org/no-such-bert",
            "--data_dir",
            str(tiny_glue),
            "--output_dir",
            str(tmp_path / "runs"),
            "--save_dir",
            str(tmp_path / "models"),
        ],  # fmt: skip
        capsys,
    )
    assert "--model_name_or_path no-such-org/no-such-bert" in line and time.perf_counter() - started < 15
    assert leaves_nothing(tmp_path / "runs")


def test_a_text_file_as_ticket_is_not_a_ticket_file_and_writes_nothing(tmp_path, capsys, tiny_glue):  # noqa: F811
    notes = tmp_path / "notes.pt"
    notes.write_text("my notes, not a ticket\n")
    fewshot = bert_module("few_shot_training")
    line = call(
        fewshot.main,
        [
            "--checkpoint",
            str(notes),
            "--target",
            "sst2",
            "--data_dir",
            str(tiny_glue),
            "--output_dir",
            str(tmp_path / "fewshot"),
        ],  # fmt: skip
        capsys,
    )
    assert "not a ticket file" in line and "delete" not in line
    assert notes.read_text() == "my notes, not a ticket\n", "the user's file is untouched"
    assert leaves_nothing(tmp_path / "fewshot")


def test_an_oversized_fewshot_size_is_refused_naming_the_flag(tmp_path, capsys, tiny_model, tiny_glue):  # noqa: F811
    lth = bert_module("lottery_ticket_bert")
    common = ["--model_name_or_path", str(tiny_model), "--data_dir", str(tiny_glue), "--quiet", "--device", "cpu"]
    lth.main([*common, "--sparsity", "0.1", "--epochs", "1", "--output_dir", str(tmp_path / "runs"),
              "--save_dir", str(tmp_path / "models")])  # fmt: skip
    (ticket,) = (tmp_path / "models").glob("*sparsity10*.safetensors")
    fewshot = bert_module("few_shot_training")
    line = call(
        fewshot.main,
        [
            *common,
            "--checkpoint",
            str(ticket),
            "--target",
            "sst2",
            "--fewshot_size",
            "1000000",
            "--output_dir",
            str(tmp_path / "fewshot"),
        ],  # fmt: skip
        capsys,
    )
    assert "--fewshot_size 1000000 is larger than" in line
    assert leaves_nothing(tmp_path / "fewshot")


def test_lsb_jobindex_zero_runs_every_line_and_says_so(tmp_path, capsys, monkeypatch):
    from lth.cli import main as lth

    config = tmp_path / "configs.txt"
    config.write_text("--trial 0 --output_dir runs\n--trial 1 --output_dir runs\n")
    monkeypatch.setenv("LSB_JOBINDEX", "0")
    script = family_module("Lenet-300-100", "main").__file__
    with pytest.raises(SystemExit) as done:
        lth(["sweep", str(config), "--script", script, "--dry-run"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "LSB_JOBINDEX=0: not an array job; running every unfinished line" in out
    assert "would run line 1" in out and "would run line 2" in out


def test_ready_made_array_scripts_work_from_a_fresh_clone_and_requeue():
    from conftest import REPO

    for script in REPO.glob("*/run_*.sh"):
        text = script.read_text()
        for header in ("#SBATCH --output=outputs/", "#BSUB -o outputs/"):
            assert header in text, script
        tracked = (script.parent / "outputs" / ".gitkeep").exists()
        assert tracked, f"{script.parent}/outputs must exist in a clone: SLURM and LSF do not create log folders"
        for line in ("#SBATCH --signal=B:USR1@300", "#SBATCH --requeue", "#BSUB -wa USR1", "#BSUB -wt 5", "#BSUB -r"):
            assert line in text, (script, line)
        assert 'exec "${LTH_PYTHON:-python}" -m lth sweep' in text or 'exec "$PYTHON" -m lth sweep' in text


@pytest.mark.parametrize("system", ["lsf", "slurm"])
def test_generated_array_headers_carry_the_warning_signal_and_requeue(tmp_path, system):
    from lth.cluster import array_job_script

    config = tmp_path / "configs.txt"
    config.write_text("--trial 0\n")
    text = array_job_script(system, config, tmp_path / "main.py", runs=1)
    expected = ["#BSUB -wa USR1", "#BSUB -wt 5", "#BSUB -r"] if system == "lsf" else [
        "#SBATCH --signal=B:USR1@300", "#SBATCH --requeue"]  # fmt: skip
    for line in expected:
        assert line in text


def test_requeue_command_names_this_array_task(monkeypatch):
    from lth.cluster import requeue_command

    for variable in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "LSB_JOBID", "LSB_JOBINDEX"):
        monkeypatch.delenv(variable, raising=False)
    assert requeue_command() is None
    monkeypatch.setenv("SLURM_JOB_ID", "101")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "100")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert requeue_command() == ["scontrol", "requeue", "100_7"]
    for variable in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(variable)
    monkeypatch.setenv("LSB_JOBID", "55")
    monkeypatch.setenv("LSB_JOBINDEX", "3")
    assert requeue_command() == ["brequeue", "55[3]"]
    assert json.dumps(requeue_command())
