"""The base of every error the harness raises on purpose.

Such an error's message names the culprit (a file and line, a setting, a checkpoint) and
the fix; the `harness` command prints it as one line and exits 2, with the traceback only
under `--debug` (or HARNESS_DEBUG=1). An exception that is not one of these is a bug and
keeps its traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Raised on purpose, with a message that says what is wrong and what to do."""
