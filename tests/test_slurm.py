"""The cluster workflow on a real one-node SLURM (`.ci/slurm.sh`, started here where it is not up yet), used as a
user does: the ready-made scripts submitted with sbatch as the README says (with its overrides for a node without
GPUs), and a generated array (`lth sweep --submit slurm --yes`) whose runs equal the same lines run locally, one
task of which goes through the time-limit warning, `scontrol requeue` and a killed process, keeping every
allocation's log.

SLURM holds a requeued job for 121 s before it may start again; the tests release it at once
(`scontrol update JobId=... StartTime=now`), as an impatient user would. Every wait is bounded; every job these
tests submitted is cancelled at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA_ROOT, REPO
from imp_fixtures import csv_without_wall_time

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SLURM_SCRIPT = REPO / ".ci" / "slurm.sh"
NO_GPU = ["--gres=none", "--cpus-per-task=1", "--mem=2G"]  # the README's overrides for a node without GPUs
LEASE_TIMEOUT = 10  # the jobs' $LTH_LEASE_TIMEOUT, so a dead holder's lease goes stale within the test
LENET = "--iterations 200 --eval_every 100 --rounds 1"
# Long enough to meet the time-limit warning (--time=2 with USR1 55 s before it) and survive a requeue and a kill:
# the warning comes up to 65 s after the start, and three rounds of this line (--rounds 2) took 43 s on a free core
# of this project's machine, so six take about 85 s. A further warning in a later allocation only requeues it again
# (the waits release it).
LONG = "--iterations 3000 --eval_every 1500 --rounds 5 --checkpoint_every 100"
TIME_LIMIT = ["--time=2", "--signal=B:USR1@55"]


def slurm_answers() -> bool:
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and any(s in done.stdout for s in ("idle", "mixed", "alloc"))


class Slurm:
    """The jobs these tests submit, and bounded waits on their tasks."""

    def __init__(self, root: Path):
        self.root = root
        self.jobs: list[str] = []
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LSB_", "PYTEST_"))},
            "LTH_PYTHON": sys.executable,
            "LTH_DATA_DIR": str(DATA_ROOT),
            "LTH_ENERGY": "off",
            "LTH_LEASE_TIMEOUT": str(LEASE_TIMEOUT),
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        }

    def sbatch(self, script: str, folder: Path, *options: str, config: Path | None = None, args=()) -> str:
        env = {**self.env, **({"LTH_CONFIG": str(config)} if config else {})}
        done = subprocess.run(
            ["sbatch", "--parsable", *options, script, *args], cwd=folder, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"sbatch {script} refused: {done.stderr.strip()}"
        job = done.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job

    def lth(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "lth", *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def state(self, task: str) -> str:
        """e.g. 'RUNNING None', 'PENDING BeginTime', 'COMPLETED None'; '' once SLURM forgot the task."""
        done = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", task, "-o", "%T %r"], capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""

    def release(self, task: str) -> None:
        """Start a requeued task now instead of after SLURM's 121 s hold."""
        subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], capture_output=True, timeout=30)

    def wait(self, what: str, ready, timeout: float, log: Path | None = None, release: str | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = ready()
            if value:
                return value
            if release and self.state(release).startswith("PENDING BeginTime"):
                self.release(release)
            time.sleep(1)
        tail = log.read_text()[-3000:] if log and log.exists() else "(no log)"
        queue = subprocess.run(["squeue", "-t", "all"], capture_output=True, text=True).stdout
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\nsqueue:\n{queue}\nlog:\n{tail}")

    def wait_done(self, task: str, timeout: float, log: Path | None = None) -> str:
        ended = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")
        return self.wait(
            f"task {task} to end", lambda: (s := self.state(task)).startswith(ended) and s, timeout, log, task
        )

    def cancel_all(self) -> None:
        """Cancel every job these tests submitted, again while any is still queued (a task cancelled while it
        requeues itself comes back pending)."""
        for _ in range(15):
            if not self.jobs:
                return
            subprocess.run(["scancel", *self.jobs], capture_output=True, timeout=30)
            time.sleep(2)
            listed = subprocess.run(["squeue", "-h", "-j", ",".join(self.jobs), "-o", "%T"],
                                    capture_output=True, text=True, timeout=30).stdout.split()  # fmt: skip
            if not set(listed) & {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "SUSPENDED"}:
                return


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    started = False
    if not slurm_answers():
        if shutil.which("sbatch") is None and os.geteuid() != 0:
            pytest.skip("SLURM is not installed and only root can install it (.ci/slurm.sh start)")
        done = subprocess.run([str(SLURM_SCRIPT), "start"], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            if shutil.which("slurmctld") is None:
                pytest.skip(f"SLURM's Debian packages cannot be installed here: {done.stderr.strip()[-400:]}")
            pytest.fail(f".ci/slurm.sh start failed: {done.stdout}{done.stderr}")
        started = True
    cluster = Slurm(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.cancel_all()
        for job in cluster.jobs:  # the ready-made scripts' logs land in the repository's outputs/ folders
            for log in REPO.glob(f"*/outputs/*_{job}_*"):
                log.unlink()
        if started:
            subprocess.run([str(SLURM_SCRIPT), "stop"], capture_output=True, timeout=120)


def lenet_line(output: Path, trial: int, settings: str) -> str:
    return f"--trial {trial} {settings} --data_dir {DATA_ROOT} --output_dir {output} --device cpu --quiet"


def only_run(root: Path) -> Path:
    (run,) = {p.parent for p in root.rglob("settings.json")}
    return run


def assert_same_run(local: Path, cluster: Path) -> None:
    a, b = only_run(local), only_run(cluster)
    assert a.name == b.name
    assert (b / "finished").exists(), f"{b} did not finish"
    assert csv_without_wall_time(b / "rounds.csv") == csv_without_wall_time(a / "rounds.csv")
    assert (b / "curve.csv").read_bytes() == (a / "curve.csv").read_bytes()


@pytest.fixture(scope="module")
def array(slurm):
    """A generated array of two LeNet lines on the real MNIST, submitted, and the same lines started locally."""
    root = slurm.root
    config, local = root / "lenet.txt", root / "lenet_local.txt"
    config.write_text(
        f"{lenet_line(root / 'array' / 'quick', 0, LENET)}\n{lenet_line(root / 'array' / 'long', 1, LONG)}\n"
    )
    local.write_text(
        f"{lenet_line(root / 'local' / 'quick', 0, LENET)}\n{lenet_line(root / 'local' / 'long', 1, LONG)}\n"
    )
    script = str(REPO / "Lenet-300-100" / "main.py")
    done = slurm.lth("sweep", str(config), "--script", script, "--submit", "slurm", "--yes",
                     "--submit_options", " ".join(NO_GPU + TIME_LIMIT), "--max_parallel", "0")  # fmt: skip
    job = done.stdout.strip().splitlines()[-1].split()[-1]
    assert job.isdigit(), done.stdout
    slurm.jobs.append(job)
    shown = slurm.lth("status", "--config", str(config), "--script", script).stdout
    assert "missing" not in shown, f"a submitted line is queued or running, not missing:\n{shown}"
    ready = submit_ready_made(slurm)  # behind the array: they take the CPUs its tasks leave
    references = {}
    for name, number in (("quick", 1), ("long", 2)):  # the same lines, run here (one after the other)
        one = root / f"lenet_local_{name}.txt"
        one.write_text(local.read_text().splitlines()[number - 1] + "\n")
        references[name] = one
    reference = start_reference(slurm, references["quick"], script)
    state = {"job": job, "root": root, "config": config, "ready": ready, "references": references, "script": script}
    state["reference"] = reference
    try:
        yield state
    finally:
        if state["reference"].poll() is None:
            state["reference"].terminate()
            state["reference"].wait(timeout=60)


def start_reference(slurm, config: Path, script: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lth", "sweep", str(config), "--script", script],
        env=slurm.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def reference_done(array) -> None:
    reference = array["reference"]
    assert reference.wait(timeout=300) == 0, reference.stderr.read()


def test_generated_array_runs_equal_the_same_lines_run_locally(slurm, array):
    job, root = array["job"], array["root"]
    script = (root / "lenet.slurm.sh").read_text()
    for line in ("#SBATCH --gres=none", "#SBATCH --time=2", "#SBATCH --open-mode=append", f"--chdir={root}"):
        assert line in script
    assert "#SBATCH --gres=gpu:1" not in script and "--array=1-2\n" in script
    log = root / "outputs" / f"{root.name}_lenet_{job}_1.out"
    assert slurm.wait_done(f"{job}_1", 200, log).startswith("COMPLETED")
    reference_done(array)
    array["reference"] = start_reference(slurm, array["references"]["long"], array["script"])
    assert_same_run(root / "local" / "quick", root / "array" / "quick")
    provenance = [json.loads(line) for line in (only_run(root / "array" / "quick") / "provenance.jsonl").open()]
    assert {entry["job"] for entry in provenance} == {f"{job}_1"}, "named as the logs are: %A_%a"


def test_a_time_limit_leaving_no_room_after_the_warning_is_refused_before_submitting(slurm, array):
    before = job_ids()
    done = slurm.lth("sweep", str(array["config"]), "--script", str(REPO / "Lenet-300-100" / "main.py"),
                     "--submit", "slurm", "--yes", "--submit_options", "--gres=none --time=00:05:00",
                     check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "--time=00:05:00" in done.stderr
    more = slurm.lth("sweep", str(array["config"]), "--script", str(REPO / "Lenet-300-100" / "main.py"),
                     "--submit", "slurm", "--yes", "--submit_options", "--gres=none --cpus-per-task=64",
                     check=False)  # fmt: skip
    assert more.returncode == 2 and "no node can run this job" in more.stderr, "not left pending for ever"
    assert job_ids() <= before, "nothing was submitted"


def job_ids() -> set[str]:
    return set(subprocess.run(["squeue", "-h", "-t", "all", "-o", "%A"], capture_output=True, text=True).stdout.split())


def progress_of(run_root: Path):
    """(round, iteration) of the long run's saved progress, or None."""
    from lth.storage import load_checkpoint

    for path in run_root.rglob("progress.pt"):
        try:
            saved = load_checkpoint(path)
        except Exception:  # being replaced: read again at the next poll
            return None
        return saved["round"], saved["loop"]["iteration"]
    return None


def test_one_task_through_the_time_limit_a_requeue_and_a_killed_process_ends_identical(slurm, array):
    job, root = array["job"], array["root"]
    task = f"{job}_2"
    runs = root / "array" / "long"
    log = root / "outputs" / f"{root.name}_lenet_{job}_2.out"
    status = ["status", str(runs)]

    # 1. The time-limit warning: the run saves, the task requeues itself and `lth status` says so.
    slurm.wait("the warning's requeue", lambda: log.exists() and "requeued: scontrol requeue" in log.read_text(),
               150, log)  # fmt: skip
    slurm.wait("the requeued task pending", lambda: slurm.state(task).startswith("PENDING"), 60, log)
    shown = slurm.lth(*status).stdout
    assert f"requeued (SLURM task {task} PENDING" in shown, shown
    saved = progress_of(runs)
    assert saved is not None, "the warning saved the run's progress"

    # 2. `scontrol requeue` mid-round: SIGTERM, progress saved, pending again; started, it resumes.
    slurm.release(task)
    slurm.wait("progress in the second allocation", lambda: (p := progress_of(runs)) and p > saved, 120, log)
    subprocess.run(["scontrol", "requeue", task], check=True, timeout=30)
    slurm.wait("the requeued task pending", lambda: slurm.state(task).startswith("PENDING"), 60, log)
    saved = progress_of(runs)

    # 3. A killed process, as on a failed node: its lease left fresh-looking, of another host. The requeued task
    # waits for it to go stale (by the holder's timeout), takes it over and finishes the run.
    slurm.release(task)
    slurm.wait("progress in the third allocation", lambda: (p := progress_of(runs)) and p > saved, 120, log)
    lock = only_run(runs) / ".lock"
    record = json.loads(lock.read_text())
    os.kill(record["pid"], signal.SIGKILL)
    assert slurm.wait_done(task, 60, log).startswith("FAILED"), "the line's process was killed"
    subprocess.run(["scontrol", "requeue", task], check=True, timeout=30)
    slurm.wait("the requeued task pending", lambda: slurm.state(task).startswith("PENDING"), 60, log)
    # Fresh, as it died; its holder's own timeout (20 s) longer than the jobs' LTH_LEASE_TIMEOUT: the taker must
    # wait by the holder's.
    dead = {**record, "host": "failed-node", "heartbeat": time.time(), "timeout": 20.0, "interval": 20 / 6}
    lock.write_text(json.dumps(dead))
    assert slurm.wait_done(task, 200, log).startswith("COMPLETED")

    text = log.read_text() + log.with_suffix(".err").read_text()
    assert "stopped by SIGUSR1" in text and "stopped by SIGTERM" in text, "the earlier allocations' logs are kept"
    assert "waiting up to" in text and "taking over run directory" in text and "failed-node" in text
    assert text.count("line 2: main.py") >= 4, "one start per allocation, all in the one log"
    reference_done(array)
    assert_same_run(root / "local" / "long", runs)
    assert "finished" in slurm.lth(*status).stdout


def submit_ready_made(slurm) -> dict:
    """Each family's script, submitted from its folder with the README's overrides for a node without GPUs and a
    one-line config: LeNet-300-100 and BERT's lottery ticket train on the real data; Conv-2, VGG-19 (whose CIFAR-10
    evaluations alone take minutes on two CPUs) and BERT's few-shot transfer run their line's dry run in the job
    (header, folder and config handling under SLURM, the line parsed by the family's parser)."""
    root = slurm.root / "ready"
    root.mkdir()
    jobs = {"root": root}
    lenet = root / "lenet.txt"
    lenet.write_text(lenet_line(root / "lenet", 0, LENET) + "\n")
    jobs["Lenet-300-100"] = slurm.sbatch("run_experiments.sh", REPO / "Lenet-300-100", *NO_GPU, "--time=10",
                                         "--array=1-1", config=lenet)  # fmt: skip
    bert = root / "bert.txt"
    bert.write_text(
        f"--model_name_or_path minilm --task sst2 --subset 64 --epochs 1 --batch_size 32 --max_length 32 "
        f"--sparsity 0.2 --prune_rate 0.2 --checkpoint_every 0 --save_dir {root / 'models'} "
        f"--output_dir {root / 'bert'} --device cpu --quiet\n"
    )
    jobs["BERT"] = slurm.sbatch("run_lth_bert.sh", REPO / "BERT", *NO_GPU, "--time=10", "--array=1-1", config=bert)
    for family, line in [("CNN", "--arch Conv-2 --iterations 20 --rounds 1"), ("VGG", "--width 0.125 --rounds 1")]:
        config = root / f"{family}.txt"
        config.write_text(f"{line} --output_dir {root / family} --device cpu\n")
        jobs[family] = slurm.sbatch("run_experiments.sh", REPO / family, *NO_GPU, "--time=10", "--array=1-1",
                                    config=config, args=["--dry-run"])  # fmt: skip
    fewshot = root / "fewshot.txt"  # from a ticket like the one the BERT job makes
    fewshot.write_text(
        f"--checkpoint {root / 'models' / 'lottery_ticket_sst2.safetensors'} --target sst2 --fewshot_size 32 --epochs 1 "
        f"--output_dir {root / 'fewshot'} --device cpu --quiet\n"
    )
    jobs["fewshot"] = slurm.sbatch("run_fewshot.sh", REPO / "BERT", *NO_GPU, "--time=10", "--array=1-1",
                                   config=fewshot, args=["--dry-run"])  # fmt: skip
    return jobs


def log_of(folder: str, job: str, suffix: str = "err") -> Path | None:
    found = sorted((REPO / folder / "outputs").glob(f"*_{job}_1.{suffix}"))
    return found[0] if found else None


def test_ready_made_scripts_submitted_with_sbatch_as_the_readme_says(slurm, array):
    jobs = array["ready"]
    root = jobs["root"]
    for family in ("CNN", "VGG"):
        assert slurm.wait_done(f"{jobs[family]}_1", 400).startswith("COMPLETED"), family
        assert "would run line 1: main.py" in log_of(family, jobs[family], "out").read_text()
    for family in ("Lenet-300-100", "BERT"):
        ended = slurm.wait_done(f"{jobs[family]}_1", 240, log_of(family, jobs[family]))
        assert ended.startswith("COMPLETED"), log_of(family, jobs[family]).read_text()[-2000:]
    assert (only_run(root / "lenet") / "finished").exists()
    assert (only_run(root / "bert") / "finished").exists()

    assert len(list((root / "models").glob("lottery_ticket_sst2_*sparsity20*.safetensors"))) == 1, "its ticket is saved"
    assert slurm.wait_done(f"{jobs['fewshot']}_1", 400).startswith("COMPLETED")
    assert "would run line 1: few_shot_training.py" in log_of("BERT", jobs["fewshot"], "out").read_text()
