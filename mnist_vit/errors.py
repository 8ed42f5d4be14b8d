"""User-facing errors: the one exception for a mistake the user can fix, and how a command line shows it.

Code anywhere in the package raises `UserError` with one sentence naming the problem and the fix;
each entry point's `main` runs through `exit_status`, which prints that sentence as `error: ...` (no
traceback) and turns it into the exit status. The demo shows the same sentence in the page (`gr.Error`).
"""

import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2  # argparse's status for a bad command line


class UserError(Exception):
    """A mistake in the command line or the files it names: printed as one sentence, no traceback."""


def exit_status(main: Callable[[], int | None]) -> int:
    """Run an entry point's `main`; a `UserError` becomes `error: <sentence>` on stderr and status 2."""
    try:
        return main() or 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
