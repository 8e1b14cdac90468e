"""The one user-error handler every console script shares: one ``prog: error:`` line and an exit code.

Exit codes: 0 done; 2 a user error (a setting, a data file, a checkpoint: the message says the
fix); 4 an output could not be written (disk full, folder not writable). Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from segapp.errors import OutputWriteError, UserError
from segapp.io.errors import ReadError

EXIT_USER_ERROR = 2
EXIT_WRITE_ERROR = 4  # the same code segapp-predict uses for an output it cannot write
# Light imports only: segapp-predict shares this handler in the slim ONNX image (no torch there).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ReadError)
T = TypeVar("T")


def user_error(exc: BaseException | None) -> BaseException | None:
    """The user-facing error behind ``exc`` (jsonargparse wraps errors raised while instantiating)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, USER_ERRORS):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def fail(prog: str, message: object, code: int = EXIT_USER_ERROR) -> NoReturn:
    """Print ``prog: error: message`` on one line to stderr and exit with ``code``."""
    text = " ".join(str(message).split())
    print(f"{prog}: error: {text}", file=sys.stderr)
    sys.exit(code)


def run_console(prog: str, fn: Callable[[], T], also: tuple[type[BaseException], ...] = ()) -> T:
    """Run ``fn``; a user error ends with one line (exit 2, or 4 for an output that cannot be written).

    Args:
        prog: The console script's name, printed before ``error:``.
        fn: The work.
        also: Further exception types this script treats as user errors (e.g. ``ValueError`` from
            the format checks of ``segapp-eval``).
    """
    try:
        return fn()
    except Exception as e:
        err = user_error(e) or (e if isinstance(e, also) else None)
        if err is None:
            raise
        fail(prog, err, EXIT_WRITE_ERROR if isinstance(err, OutputWriteError) else EXIT_USER_ERROR)
