"""SIGKILL a run at seeded random moments, restart it each time, and let it finish.

Each life of the run is a forked child of the test process (no interpreter or torch start-up per
restart, so twenty kills stay cheap); a kill can land anywhere, file writes included.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable


def _life(target: Callable[[], None]) -> None:
    try:
        target()
    except SystemExit as done:
        os._exit(done.code if isinstance(done.code, int) else 1)
    os._exit(0)


def run_once(target: Callable[[], None]) -> float:
    """Run to completion in a child; returns its wall time."""
    context = multiprocessing.get_context("fork")
    started = time.perf_counter()
    child = context.Process(target=_life, args=(target,))
    child.start()
    child.join()
    assert child.exitcode == 0, f"run exited with {child.exitcode}"
    return time.perf_counter() - started


def kill_repeatedly(target: Callable[[], None], kills: int, seed: int, span: float) -> int:
    """Start `target` `kills` times, SIGKILL each life after a random delay in [0, span) unless it
    finished first, then run it to the end. Returns how many lives were actually killed."""
    context = multiprocessing.get_context("fork")
    rng = random.Random(seed)
    killed = 0
    for _ in range(kills):
        child = context.Process(target=_life, args=(target,))
        child.start()
        child.join(rng.uniform(0.0, span))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            killed += 1
        else:
            assert child.exitcode == 0, f"a life exited with {child.exitcode}"
    run_once(target)
    return killed


def stop_gracefully(
    target: Callable[[], None], ready: Callable[[], bool], sig: int = signal.SIGTERM
) -> tuple[int, float]:
    """Start `target` in a child, send `sig` once `ready()` holds (e.g. round 1 has started), and wait for the
    child to stop by itself. Returns (exit code, seconds from the signal to the exit)."""
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_life, args=(target,))
    child.start()
    deadline = time.monotonic() + 120
    while not ready():
        assert child.is_alive(), f"the run ended (exit {child.exitcode}) before the signal could be sent"
        assert time.monotonic() < deadline, "the run never became ready for the signal"
        time.sleep(0.02)
    sent = time.perf_counter()
    os.kill(child.pid, sig)
    child.join(60)
    assert not child.is_alive(), "the run did not stop within 60 s of the signal"
    return child.exitcode, time.perf_counter() - sent
