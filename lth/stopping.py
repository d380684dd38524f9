"""Graceful stop: SIGTERM, SIGINT and SIGUSR1 ask a run to stop at its next step boundary.

Clusters send SIGTERM (or the warning signal set in the job header, here SIGUSR1) some minutes before
they kill a job at its time limit or pre-empt it. The training loop checks `stop_requested()` before
every step: it then saves the round's progress, the run releases its lease, and the process exits with
EXIT_RESUME_LATER, which sweeps and the array scripts treat as "resume later", not as a failure.
A second Ctrl-C stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import signal

EXIT_RESUME_LATER = 75  # EX_TEMPFAIL: stopped on request, progress saved; start the same command again
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

_requested: str | None = None


class StopRequested(Exception):
    """Raised at a step boundary after the progress was saved."""

    def __init__(self, signal_name: str, where: str = ""):
        super().__init__(f"stopped by {signal_name}{' ' + where if where else ''}")
        self.signal_name = signal_name


class EvaluationInterrupted(Exception):
    """An evaluation stopped between its batches by a stop request (the loop then saves and stops)."""


def check_during_evaluation() -> None:
    """Called between evaluation batches: a long evaluation need not finish before a run stops."""
    if _requested is not None:
        raise EvaluationInterrupted


def stop_requested() -> str | None:
    """The name of the signal that asked to stop, or None."""
    return _requested


def request_stop(signal_name: str) -> None:
    global _requested
    _requested = signal_name


def _handle(signum, frame) -> None:
    name = signal.Signals(signum).name
    if _requested == "SIGINT" and name == "SIGINT":
        raise KeyboardInterrupt  # a second Ctrl-C: stop now
    request_stop(name)


@contextlib.contextmanager
def graceful_stop():
    """Within this block the stop signals set the request flag instead of killing the process."""
    global _requested
    _requested = None
    previous = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, _handle)
    except ValueError:  # not the main thread: leave the default handlers
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
