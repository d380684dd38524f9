"""SIGKILL a run at seeded random moments, restart it each time, and let it finish.

Each life of the run is a forked child of the test process (no interpreter or torch start-up per
restart, so twenty kills stay cheap); a kill can land anywhere, file writes included. Every wait is bounded: a
life that hangs fails its test instead of stalling the suite.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable

LIFE_TIMEOUT_S = 300.0  # far above any life in the suite (seconds at most)


def _own_progress_bar_lock() -> None:
    """tqdm guards every bar, even a disabled one, with a lock. A life forked while another thread of the test
    process (tqdm's monitor) held it would keep a copy taken for good and hang at its first bar; a life takes a
    lock of its own instead. (tqdm's lock shared across fork, which a SIGKILLed life could leave taken for every
    process, conftest turns off.)"""
    import tqdm
    import tqdm.auto

    lock = threading.RLock()
    for bar_class in {tqdm.tqdm, tqdm.auto.tqdm}:
        bar_class.set_lock(lock)


def _life(target: Callable[[], None]) -> None:
    _own_progress_bar_lock()
    try:
        target()
    except SystemExit as done:
        os._exit(done.code if isinstance(done.code, int) else 1)
    os._exit(0)


def start_life(target: Callable[[], None]):
    """One life of `target`: a forked child, started."""
    child = multiprocessing.get_context("fork").Process(target=_life, args=(target,))
    child.start()
    return child


def run_once(target: Callable[[], None], timeout: float = LIFE_TIMEOUT_S) -> float:
    """Run to completion in a child; returns its wall time."""
    started = time.perf_counter()
    child = start_life(target)
    try:
        child.join(timeout)
        assert not child.is_alive(), f"a life was still running after {timeout:.0f} s (killed)"
    finally:  # no life outlives a failed or interrupted test
        _kill(child)
    assert child.exitcode == 0, f"run exited with {child.exitcode}"
    return time.perf_counter() - started


def _kill(child) -> None:
    if child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
    child.join()


def kill_repeatedly(target: Callable[[], None], kills: int, seed: int, span: float) -> int:
    """Start `target` `kills` times, SIGKILL each life after a random delay in [0, span) unless it
    finished first, then run it to the end. Returns how many lives were actually killed."""
    rng = random.Random(seed)
    killed = 0
    for _ in range(kills):
        child = start_life(target)
        try:
            child.join(rng.uniform(0.0, span))
        finally:  # (also when the test is interrupted here)
            was_running = child.is_alive()
            _kill(child)
        if was_running:
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
    child = start_life(target)
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert child.is_alive(), f"the run ended (exit {child.exitcode}) before the signal could be sent"
            assert time.monotonic() < deadline, "the run never became ready for the signal"
            time.sleep(0.02)
        sent = time.perf_counter()
        os.kill(child.pid, sig)
        child.join(60)
        assert not child.is_alive(), "the run did not stop within 60 s of the signal (killed)"
        return child.exitcode, time.perf_counter() - sent
    finally:  # no life outlives a failed or interrupted test
        _kill(child)
