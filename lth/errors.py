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

    Ctrl-C exits 130 quietly; anything else is a bug and keeps its traceback.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            report_and_exit(str(error))
        except KeyboardInterrupt:
            print("interrupted; run the same command again to resume", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
