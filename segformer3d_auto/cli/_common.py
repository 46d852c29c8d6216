"""What every command shares: turning bad input into one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a command's ``main`` and map user errors to a one-line message and exit status 2.

    ``InputError`` (and ``FileNotFoundError``, whose message names the file) is the user's problem: one line,
    no traceback. Anything else is a bug and keeps its traceback.
    """
    from segformer3d_auto.errors import InputError

    try:
        return int(main(argv) or 0)
    except (InputError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
