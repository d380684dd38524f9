"""Runs that survive a cluster: a stop signal checkpoints at the next step and exits 'resume later'; leases of
dead or frozen holders (any host) are taken over; a live lease is refused before any data loads."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import socket
import time

import pytest
from conftest import family_module, require_data, tiny_mnist
from imp_fixtures import FixtureSettings, csv_without_wall_time
from kill_harness import run_once, stop_gracefully

from lth.errors import RunLockedError
from lth.results import RunDirectory
from lth.stopping import EXIT_RESUME_LATER
from lth.storage import DirectoryLock, load_checkpoint


def assert_same_results(reference_root, resumed_root) -> None:
    (reference,) = {p.parent for p in reference_root.rglob("rounds.csv")}
    resumed = resumed_root / reference.relative_to(reference_root)
    assert csv_without_wall_time(resumed / "rounds.csv") == csv_without_wall_time(reference / "rounds.csv")
    assert (resumed / "curve.csv").read_bytes() == (reference / "curve.csv").read_bytes()


def round_one_started(root, after: float = 0.7):
    """Round 0 is saved (state.pt) and round 1 has been training for `after` seconds."""
    seen = []

    def ready() -> bool:
        if not seen and any(load_checkpoint(p).get("next_round", 0) >= 1 for p in root.rglob("state.pt")):
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] > after

    return ready


def stop_then_resume(command, tmp_path, sig=signal.SIGTERM, after: float = 0.7) -> None:
    """Uninterrupted reference; then a run stopped by `sig` in round 1 and started again: identical CSVs."""
    run_once(command(tmp_path / "reference"))
    stopped = tmp_path / "stopped"
    code, seconds = stop_gracefully(command(stopped), round_one_started(stopped, after), sig)
    assert code == EXIT_RESUME_LATER, f"exit status {code}"
    assert seconds < 10, f"took {seconds:.1f} s to stop"
    (progress,) = stopped.rglob("progress.pt")  # --checkpoint_every 0: only the stop saved progress
    saved = load_checkpoint(progress)
    assert saved["round"] == 1, "stopped inside round 1, its steps so far saved"
    assert not list(stopped.rglob(".lock")), "the lease was released"
    run_once(command(stopped))
    assert_same_results(tmp_path / "reference", stopped)


def lenet_command(tmp_path, *extra):
    source = require_data("MNIST/raw")
    if not (tmp_path / "data").exists():
        tiny_mnist(tmp_path / "data", source)
    main = family_module("Lenet-300-100", "main")

    def command(output):
        argv = ["--iterations", "800", "--eval_every", "400", "--rounds", "1", "--checkpoint_every", "0",
                "--data_dir", str(tmp_path / "data"), "--output_dir", str(output), "--quiet", "--device", "cpu",
                *extra]  # fmt: skip
        return lambda: main.main(argv)

    return command


def test_lenet_sigterm_mid_round_stops_and_resumes_identically(tmp_path):
    stop_then_resume(lenet_command(tmp_path), tmp_path)


# --- leases -------------------------------------------------------------------------------------------
def other_host_lease(run_dir, age: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"host": "node-elsewhere", "pid": 4242, "heartbeat": time.time() - age, "token": "theirs"}
    (run_dir / ".lock").write_text(json.dumps(record))


def test_stale_lease_of_another_host_is_taken_over_and_the_run_resumes_identically(tmp_path, capsys):
    command = lenet_command(tmp_path)
    run_once(command(tmp_path / "reference"))
    stopped = tmp_path / "stopped"
    code, _ = stop_gracefully(command(stopped), round_one_started(stopped))
    assert code == EXIT_RESUME_LATER
    (run_dir,) = {p.parent for p in stopped.rglob("settings.json")}
    other_host_lease(run_dir, age=3600)  # its node died an hour ago
    from lth.cluster import run_status

    assert run_status(run_dir).startswith("interrupted (stale lease of host node-elsewhere")
    command(stopped)()
    assert "taking over run directory" in capsys.readouterr().out
    assert_same_results(tmp_path / "reference", stopped)


def test_fresh_lease_of_another_host_is_refused_before_any_data_loads(tmp_path, capsys):
    main = family_module("Lenet-300-100", "main")
    argv = ["--output_dir", str(tmp_path / "runs"), "--data_dir", str(tmp_path / "no-data-here")]
    run_dir = main.run_directory(main.parse_args(argv))
    other_host_lease(run_dir, age=5)
    started = time.perf_counter()
    with pytest.raises(SystemExit) as stop:
        main.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1
    assert "in use by pid 4242 on host node-elsewhere" in err[0], "the lease is checked before the (missing) data"
    assert time.perf_counter() - started < 2.0


def test_a_new_run_with_missing_data_leaves_no_directory(tmp_path, capsys):
    main = family_module("Lenet-300-100", "main")
    with pytest.raises(SystemExit):
        main.main(["--output_dir", str(tmp_path / "runs"), "--data_dir", str(tmp_path / "no-data-here")])
    assert "MNIST" in capsys.readouterr().err
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_heartbeat_keeps_a_lease_alive_past_its_timeout(tmp_path):
    lease = DirectoryLock(tmp_path, timeout=0.6).acquire()
    first = json.loads(lease.path.read_text())["heartbeat"]
    time.sleep(1.5)  # several timeouts: only the heartbeat keeps it fresh for other hosts
    last = json.loads(lease.path.read_text())["heartbeat"]
    assert last - first > 0.6, "renewed after its first timeout had passed"
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        DirectoryLock(tmp_path, timeout=0.6).acquire()
    lease.release()
    assert not lease.path.exists()
    DirectoryLock(tmp_path, timeout=0.6).acquire().release()


def _race(directory, barrier, results) -> None:
    barrier.wait(30)
    try:
        lease = DirectoryLock(directory).acquire()
        results.put(os.getpid())
        time.sleep(1.0)  # hold it while the others try
        lease.release()
    except RunLockedError:
        results.put(None)


@pytest.mark.parametrize("stale", [False, True])
def test_processes_racing_for_one_directory_leave_exactly_one_writer(tmp_path, stale):
    if stale:
        other_host_lease(tmp_path, age=3600)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    workers = [context.Process(target=_race, args=(tmp_path, barrier, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    winners = [pid for pid in (results.get(timeout=5) for _ in workers) if pid is not None]
    assert len(winners) == 1


def test_a_lease_file_appears_whole_and_an_unreadable_one_is_taken_over(tmp_path, monkeypatch, capsys):
    """The record is hard-linked into place, so racing processes never read an empty lease; a file that stays
    unreadable (not a lease's record, not even text) is taken over, saying so; without hard links an exclusive
    create serves."""
    real_open = os.open

    def no_exclusive_create(path, flags, *args):
        assert not flags & os.O_EXCL, "the lease was created by hard link, not by an exclusive create"
        return real_open(path, flags, *args)

    with monkeypatch.context() as patched:
        patched.setattr(os, "open", no_exclusive_create)
        lease = DirectoryLock(tmp_path).acquire()
    assert json.loads(lease.path.read_text())["token"] == lease._token
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"], "no draft left behind"
    lease.release()
    lease.path.write_bytes(b"\xff\xfenot a lease")
    DirectoryLock(tmp_path).acquire().release()
    assert "its lease file was unreadable ('\ufffd\ufffdnot a lease')" in capsys.readouterr().out

    def no_hard_links(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    lease = DirectoryLock(tmp_path).acquire()
    assert json.loads(lease.path.read_text())["token"] == lease._token
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        DirectoryLock(tmp_path).acquire()
    lease.release()
    assert list(tmp_path.iterdir()) == []


def test_attempts_of_one_process_racing_for_a_directory_leave_one_holder_whose_record_it_holds(tmp_path):
    """Each attempt writes its record to a draft of its own (named by its token), so attempts that share a host
    name and a pid (threads, or containers with pid namespaces of their own) never write over each other's."""
    import threading

    for trial in range(30):
        directory, start, held = tmp_path / str(trial), threading.Barrier(4), []

        def attempt(directory=directory, start=start, held=held):
            lease = DirectoryLock(directory)
            start.wait(10)
            with contextlib.suppress(RunLockedError):
                held.append(lease.acquire())

        threads = [threading.Thread(target=attempt) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(held) == 1, f"trial {trial}: {len(held)} holders"
        assert json.loads((directory / ".lock").read_text())["token"] == held[0]._token
        held[0].release()


def test_a_lease_lost_to_another_process_refuses_further_writes(tmp_path):
    run = RunDirectory(tmp_path, FixtureSettings()).open()
    record = json.loads(run.lock.path.read_text())
    run.lock.path.write_text(json.dumps({**record, "host": socket.gethostname(), "token": "someone else"}))
    assert not run.lock.renew() and run.lock.lost
    with pytest.raises(RunLockedError, match="taken over"):
        run.save_state({"next_round": 0})
    run.close()
    assert run.lock.path.exists(), "the other process's lease is left alone"


def test_a_sweep_line_runs_in_its_own_process_group_inside_the_sweeps_session(tmp_path):
    """Its own group: a signal reaches it once (forwarded by the sweep). The sweep's session: on Linux it shares
    the sweep's scheduling autogroup, so `nice lth sweep` lowers the runs' priority too."""
    from lth.sweep import ConfigLine, start_line

    script, out = tmp_path / "probe.py", tmp_path / "ids.txt"
    script.write_text(
        f"import os\nopen({str(out)!r}, 'w').write(f'{{os.getpid()}} {{os.getpgrp()}} {{os.getsid(0)}}')\n"
    )
    child = start_line(script, ConfigLine(1, []))
    assert child.wait(timeout=30) == 0
    pid, group, session = map(int, out.read_text().split())
    assert pid == child.pid and group == child.pid, "a process group of its own"
    assert session == os.getsid(0), "the sweep's session"


def test_status_shows_rounds_out_of_the_total_and_the_run_time_left(tmp_path, capsys):
    """`lth status` on a study in progress: each run's rounds out of its total, and the run time still needed at
    the pace of its rounds so far."""
    from lth.cli import main as lth

    main = family_module("Lenet-300-100", "main")

    def run(trial: int, rounds_done: int, seconds: float) -> None:
        settings = main.parse_args(["--trial", str(trial), "--rounds", "3", "--output_dir", str(tmp_path)])
        rows = [{"round": r, "wall_time_s": seconds, "rounds": 3} for r in range(rounds_done)]
        with RunDirectory(tmp_path, settings) as directory:
            directory.write_results(rows, [])
            if rounds_done == 4:
                (directory.path / "finished").write_text("done\n")

    run(0, 4, 600.0)  # finished: 4 rounds of 10 minutes
    run(1, 1, 1200.0)  # 1 of 4 rounds done, at 20 minutes a round
    run(2, 0, 0.0)  # no round finished yet
    lth(["status", str(tmp_path)])
    out = capsys.readouterr().out
    assert "4/4 rounds" in out and "1/4 rounds, ~60 min left" in out
    assert "the unfinished runs with rounds need ~60 min more run time" in out
    assert "1 run has no finished round yet; a finished run took 40 min on average" in out


def test_round_progress_reads_odd_rounds_csv_files_without_failing(tmp_path):
    """Hand-edited or foreign rounds.csv files: unreadable times are skipped, a short row gives no total."""
    from lth.cluster import round_progress

    (tmp_path / "rounds.csv").write_text("round,wall_time_s,rounds\n0,NaN,3\n1,None,3\n2,inf,3\n3,120\n")
    progress = round_progress(tmp_path)
    assert (progress.done, progress.total, progress.seconds_per_round) == (4, None, 120.0)
    assert str(progress) == "4 rounds"
    (tmp_path / "rounds.csv").write_text("round,wall_time_s,rounds\n0,nan,3\n")
    assert str(round_progress(tmp_path)) == "1/4 rounds"


def test_lines_run_side_by_side_share_out_the_cores(tmp_path, monkeypatch):
    """`lth sweep --per_device N`: each line gets cores // N intra-op threads, unless OMP_NUM_THREADS is set."""
    from lth.sweep import ConfigLine, run_lines

    script = tmp_path / "script.py"
    script.write_text("import os, sys\nopen(sys.argv[1], 'w').write(os.environ.get('OMP_NUM_THREADS', 'unset'))\n")
    todo = [(ConfigLine(i, [str(tmp_path / f"threads{i}")]), tmp_path / f"run{i}") for i in (1, 2, 3)]

    def threads_seen(parallel: int) -> set[str]:
        assert run_lines(script, todo, tmp_path / "configs.txt", parallel=parallel) == 0
        return {(tmp_path / f"threads{i}").read_text() for i in (1, 2, 3)}

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: the lines share the one device
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert threads_seen(parallel=2) == {"4"}
    assert threads_seen(parallel=3) == {"2"}
    assert threads_seen(parallel=1) == {"unset"}  # one line at a time: torch's own choice (lth caps it at the cores)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_seen(parallel=2) == {"3"}


def test_lines_are_spread_over_the_visible_gpus_per_device_at_a_time(tmp_path, monkeypatch, capsys):
    """With several GPUs, `--per_device N` runs N lines on each, every line's process seeing only its own GPU."""
    import json

    from lth.sweep import ConfigLine, run_lines

    script = tmp_path / "script.py"
    script.write_text(
        "import json, os, sys, time\n"
        "start = time.time(); time.sleep(0.4)\n"
        "record = {k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', 'OMP_NUM_THREADS')}\n"
        "open(sys.argv[1], 'w').write(json.dumps({**record, 'start': start, 'end': time.time()}))\n"
    )
    todo = [(ConfigLine(i, [str(tmp_path / f"line{i}.json")]), tmp_path / f"run{i}") for i in range(1, 6)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert run_lines(script, todo, tmp_path / "configs.txt", parallel=1) == 0
    seen = [json.loads((tmp_path / f"line{i}.json").read_text()) for i in range(1, 6)]
    assert {r["CUDA_VISIBLE_DEVICES"] for r in seen} == {"3", "5"} and {r["OMP_NUM_THREADS"] for r in seen} == {"4"}
    for gpu in ("3", "5"):  # one line at a time on each GPU
        spans = sorted((r["start"], r["end"]) for r in seen if r["CUDA_VISIBLE_DEVICES"] == gpu)
        assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))
    assert "1 line(s) at once on each of the GPUs 3, 5" in capsys.readouterr().out
