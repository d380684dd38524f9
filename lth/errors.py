"""User-facing errors: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input (a flag, a file, the data root) that they can fix.

    The message must name the flag or file and say what is expected.
    """


class RunLockedError(UserError):
    """Another live process holds the run directory."""


def report_and_exit(message: str, code: int = EXIT_USER_ERROR) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def user_facing(main: F) -> F:
    """Decorate an entry point so `UserError` becomes one line on stderr and exit status 2.

    Stop signals (SIGTERM, SIGINT, SIGUSR1) stop the run at its next step with its progress saved and
    exit EXIT_RESUME_LATER (75); a second Ctrl-C exits 130 at once; anything else is a bug and keeps its
    traceback.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        from lth.stopping import EXIT_RESUME_LATER, StopRequested, graceful_stop

        try:
            with graceful_stop():
                return main(*args, **kwargs)
        except StopRequested as stop:
            print(f"{stop}; run the same command again to resume", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_RESUME_LATER) from None
        except UserError as error:
            report_and_exit(str(error))
        except KeyboardInterrupt:
            print("interrupted; run the same command again to resume", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
